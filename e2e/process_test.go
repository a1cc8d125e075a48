package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// process is a long-running child (Vault server, Agent, stand-in) with its
// output going to a log file. It runs in its own process group, so that
// stopping it also stops the plugin processes Vault started.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	exitErr error         // valid once done is closed
}

// startProcess starts bin with args in dir, its output appended to
// logPath, with env added to a copy of this process's environment from
// which every VAULT_* variable was removed.
func startProcess(name, logPath, dir string, env []string, bin string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own copy
	rememberLog(logPath)

	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(baseEnv(), env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// If the test binary dies (a timeout panic), take the child along.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.exitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// baseEnv is this process's environment without VAULT_* variables, so that
// a developer's own Vault settings cannot leak into the tests, and without
// the Piwik PRO account of the acceptance test, which no child needs.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "VAULT_"):
		case name == "PIWIK_URL", name == "PIWIK_CLIENT_ID", name == "PIWIK_CLIENT_SECRET":
		default:
			env = append(env, kv)
		}
	}
	return env
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the process group: SIGTERM, then SIGKILL after a grace period.
// Stopping a process that already exited is fine.
func (p *process) stop() {
	pgid := p.cmd.Process.Pid
	if !p.exited() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			fmt.Printf("e2e: %s did not stop on SIGTERM within 15s; killing it\n", p.name)
		}
	}
	// Whatever is left of the group (plugin processes) goes too.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
}

// logTail returns the end of the process's log, secrets redacted, for
// failure messages.
func (p *process) logTail() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	const max = 4000
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return redact(string(data))
}

// failure describes why the process is not usable, with its log's end.
func (p *process) failure(what string) string {
	state := "still running"
	if p.exited() {
		state = fmt.Sprintf("exited: %v", p.exitErr)
	}
	return fmt.Sprintf("%s: %s (%s); log %s ends with:\n%s", p.name, what, state, p.logPath, p.logTail())
}

// errGaveUp is returned by waitFor when the deadline passed.
var errGaveUp = errors.New("condition not met before the deadline")

// waitFor calls check every interval until it returns true, an error, or
// timeout passes. When p is not nil and exits, waiting stops early.
func waitFor(timeout, interval time.Duration, p *process, check func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := check()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited: %v", p.name, p.exitErr)
		}
		if time.Now().After(deadline) {
			return errGaveUp
		}
		time.Sleep(interval)
	}
}

// freePortPair returns a loopback port that is free along with the port
// after it, for a Vault listener and its cluster listener. Another process
// may take them before Vault binds; callers retry on "address already in
// use".
func freePortPair(t *testing.T) int {
	t.Helper()
	for range 50 {
		l1, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l1.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		l1.Close()
		if err == nil {
			l2.Close()
			return port
		}
	}
	t.Fatal("no free pair of loopback ports found")
	return 0
}
