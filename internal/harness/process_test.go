package harness

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// shell starts sh -c script in a lab of its own, logging to the test's
// directory.
func shell(t *testing.T, script string) *Process {
	t.Helper()
	lab := &Lab{BaseEnv: []string{"PATH=" + os.Getenv("PATH")}}
	p, err := lab.Start(Spec{Name: "sh", Bin: "/bin/sh", Args: []string{"-c", script}, Dir: t.TempDir(),
		LogPath: filepath.Join(t.TempDir(), "sh.log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// TestStopEndsTheWholeGroup stops a shell whose child sleeps: the child,
// a stand-in for the plugin processes Vault starts, goes too.
func TestStopEndsTheWholeGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	p := shell(t, "sleep 300 & echo $! > "+pidFile+"; wait")
	var child int
	err := WaitFor(10*time.Second, 10*time.Millisecond, p, func() (bool, error) {
		data, err := os.ReadFile(pidFile)
		if err != nil || !strings.HasSuffix(string(data), "\n") {
			return false, nil
		}
		child, err = strconv.Atoi(strings.TrimSpace(string(data)))
		return err == nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Exited() {
		t.Fatal("the shell exited before it was stopped")
	}
	p.Stop()
	if !p.Exited() {
		t.Error("Stop returned with the shell still running")
	}
	err = WaitFor(5*time.Second, 10*time.Millisecond, nil, func() (bool, error) {
		f := statFields(child)
		return f == nil || f[0] == "Z", nil // gone, or dead and not yet reaped
	})
	if err != nil {
		t.Errorf("the shell's child %d outlived Stop: %v", child, err)
	}
}

// TestWaitForStopsWhenTheProcessExits checks that a wait on a process that
// dies ends at once with its exit, not at the deadline.
func TestWaitForStopsWhenTheProcessExits(t *testing.T) {
	p := shell(t, "exit 3")
	start := time.Now()
	err := WaitFor(time.Minute, 10*time.Millisecond, p, func() (bool, error) { return false, nil })
	if err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("WaitFor = %v, want the exit status 3", err)
	}
	if waited := time.Since(start); waited > 30*time.Second {
		t.Errorf("WaitFor waited %s for a process that exited at once", waited)
	}
	if f := p.Failure("did not answer").Error(); !strings.Contains(f, "exited: exit status 3") || !strings.Contains(f, "sh.log") {
		t.Errorf("Failure = %q, want the exit status and the log's path", f)
	}
}

// TestWaitForGivesUpAndPassesErrorsOn checks the two other ways a wait
// ends: the deadline, and an error from the check.
func TestWaitForGivesUpAndPassesErrorsOn(t *testing.T) {
	calls := 0
	err := WaitFor(50*time.Millisecond, 10*time.Millisecond, nil, func() (bool, error) { calls++; return false, nil })
	if !errors.Is(err, ErrGaveUp) || calls < 2 {
		t.Errorf("WaitFor = %v after %d checks, want ErrGaveUp after several", err, calls)
	}
	boom := errors.New("boom")
	if err := WaitFor(time.Minute, 10*time.Millisecond, nil, func() (bool, error) { return false, boom }); !errors.Is(err, boom) {
		t.Errorf("WaitFor = %v, want the check's error", err)
	}
}

// TestCleanEnvDropsVaultAndPiwikSettings checks that a child never sees a
// developer's Vault address or token, nor the acceptance test's account.
func TestCleanEnvDropsVaultAndPiwikSettings(t *testing.T) {
	t.Setenv("VAULT_TOKEN", "developer-token")
	t.Setenv("PIWIK_CLIENT_SECRET", "account-secret")
	t.Setenv("HARNESS_TEST_KEPT", "yes")
	env := strings.Join(CleanEnv(), "\n")
	if strings.Contains(env, "VAULT_TOKEN") || strings.Contains(env, "PIWIK_CLIENT_SECRET") {
		t.Error("CleanEnv keeps VAULT_TOKEN or PIWIK_CLIENT_SECRET")
	}
	if !strings.Contains(env, "HARNESS_TEST_KEPT=yes") {
		t.Error("CleanEnv drops other variables")
	}
}

// TestPortPairsAreFree checks that both ports of a pair can be listened on.
func TestPortPairsAreFree(t *testing.T) {
	for name, pick := range map[string]func() (int, error){"FreePortPair": FreePortPair, "StablePortPair": StablePortPair} {
		port, err := pick()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range []int{port, port + 1} {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				t.Errorf("%s: port %d of the pair is taken: %v", name, p, err)
				continue
			}
			l.Close()
		}
	}
}
