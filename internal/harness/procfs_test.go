package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestReadersSeeThisProcess reads this test process from outside, as the
// soak reads the plugin: memory, threads, open files and a connection.
func TestReadersSeeThisProcess(t *testing.T) {
	pid := os.Getpid()
	if rss, err := Status(pid, "VmRSS"); err != nil || rss <= 0 {
		t.Errorf("VmRSS = %d kB, %v", rss, err)
	}
	if threads, err := Status(pid, "Threads"); err != nil || threads < 1 {
		t.Errorf("Threads = %d, %v", threads, err)
	}
	if _, err := Status(pid, "NoSuchField"); err == nil {
		t.Error("a missing field reads without an error")
	}
	if CPUTime(pid) <= 0 && SelfCPU() <= 0 {
		t.Error("no CPU time for this process")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	filesBefore, err := OpenFiles(pid)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	url := "http://" + ln.Addr().String()
	if n, err := ConnectionsTo(pid, url); err != nil || n != 1 {
		t.Errorf("ConnectionsTo(%s) = %d, %v; want the one connection", url, n, err)
	}
	if files, _ := OpenFiles(pid); files <= filesBefore {
		t.Errorf("open files %d → %d with a connection more", filesBefore, files)
	}
}

// TestChildrenRunningFindsAChildByItsExecutable starts sleep and finds it
// among this process's children by its executable, as the soak and the
// benchmark find the plugin among Vault's.
func TestChildrenRunningFindsAChildByItsExecutable(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot run sleep: %v", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var found []int
	_ = WaitFor(5*time.Second, 10*time.Millisecond, nil, func() (bool, error) {
		found = ChildrenRunning(os.Getpid(), exe)
		return len(found) == 1, nil
	})
	if len(found) != 1 || found[0] != cmd.Process.Pid {
		t.Errorf("ChildrenRunning(%s) = %v, want [%d]", exe, found, cmd.Process.Pid)
	}
	if other := ChildrenRunning(os.Getpid(), exe+"-other"); len(other) != 0 {
		t.Errorf("ChildrenRunning of another executable = %v", other)
	}
}

// TestServerConfigSetsTheLogLevelOnlyWhenAsked pins the HCL around a
// storage block.
func TestServerConfigSetsTheLogLevelOnlyWhenAsked(t *testing.T) {
	plain := ServerConfig("storage \"inmem\" {}\n", 18200, "/plugins", "")
	for _, want := range []string{`address         = "127.0.0.1:18200"`, `cluster_address = "127.0.0.1:18201"`, `plugin_directory = "/plugins"`} {
		if !strings.Contains(plain, want) {
			t.Errorf("config lacks %s:\n%s", want, plain)
		}
	}
	if strings.Contains(plain, "log_level") {
		t.Error("a config without a log level sets one")
	}
	if debug := ServerConfig("", 18200, "/plugins", "debug"); !strings.Contains(debug, `log_level        = "debug"`) {
		t.Errorf("config lacks the log level:\n%s", debug)
	}
}
