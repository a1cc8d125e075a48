// Package harness starts and stops what the end-to-end tests and the load
// benchmark run against: the real Vault binary as a dev server or a raft
// cluster, the Piwik PRO stand-in, and any other child process, each in a
// process group of its own with its output in a log file. It also reads
// what /proc says about those processes and scans their logs for secrets.
//
// Its functions return errors rather than fail a test, so that e2e (which
// wraps them for *testing.T) and bench/run (a command) share them.
package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StopGrace is how long Stop waits after SIGTERM before it kills.
const StopGrace = 15 * time.Second

// Lab is what every process the harness starts shares: the binaries under
// test, the environment children start from, where progress is told, and
// the record of secrets and log files. Its zero value starts children with
// an empty environment and records nothing.
type Lab struct {
	VaultBin   string
	StandinBin string

	// BaseEnv is every child's environment before what its start adds.
	BaseEnv []string
	// Logf, when set, is told each server the lab starts and stops.
	Logf func(format string, args ...any)
	// Secrets, when set, learns every log file and every secret (client
	// secrets, root tokens, unseal keys) the lab makes, and redacts the
	// log text that failure messages quote.
	Secrets *Secrets

	mu      sync.Mutex
	started []*Process
}

func (l *Lab) logf(format string, args ...any) {
	if l.Logf != nil {
		l.Logf(format, args...)
	}
}

func (l *Lab) remember(label, value string) {
	if l.Secrets != nil {
		l.Secrets.Remember(label, value)
	}
}

func (l *Lab) redact(s string) string {
	if l.Secrets != nil {
		return l.Secrets.Redact(s)
	}
	return s
}

// Spec is a process to start.
type Spec struct {
	Name    string // for messages: "vault node1", "stand-in"
	Bin     string
	Args    []string
	Dir     string   // working directory; empty for this process's
	Env     []string // added to the lab's BaseEnv
	LogPath string   // stdout and stderr are appended here
}

// Process is a running child. It runs in its own process group, so that
// stopping it also stops the plugin processes Vault started.
type Process struct {
	Name    string
	LogPath string
	Cmd     *exec.Cmd

	lab  *Lab
	done chan struct{} // closed when the process has exited
	err  error         // valid once done is closed
}

// Start starts s. The child is killed if this process dies first.
func (l *Lab) Start(s Spec) (*Process, error) {
	logFile, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own copy
	if l.Secrets != nil {
		l.Secrets.AddLog(s.LogPath)
	}
	cmd := exec.Command(s.Bin, s.Args...)
	cmd.Dir = s.Dir
	cmd.Env = append(append([]string(nil), l.BaseEnv...), s.Env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	p := &Process{Name: s.Name, LogPath: s.LogPath, Cmd: cmd, lab: l, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	l.started = append(l.started, p)
	l.mu.Unlock()
	return p, nil
}

// StopAll stops every process the lab started, newest first.
func (l *Lab) StopAll() {
	l.mu.Lock()
	all := slices.Clone(l.started)
	l.mu.Unlock()
	for i := len(all) - 1; i >= 0; i-- {
		all[i].Stop()
	}
}

// PID is the process's id, and its process group's.
func (p *Process) PID() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process ended (nil for exit status 0); valid once Done is
// closed.
func (p *Process) Err() error { return p.err }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop ends the process group: SIGTERM, then SIGKILL after StopGrace.
// Stopping a process that already exited is fine.
func (p *Process) Stop() {
	if !p.Exited() {
		p.lab.logf("stopping %s (pid %d)", p.Name, p.PID())
		_ = syscall.Kill(-p.PID(), syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(StopGrace):
			fmt.Printf("harness: %s did not stop on SIGTERM within %s; killing it\n", p.Name, StopGrace)
		}
	}
	// Whatever is left of the group (plugin processes) goes too.
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	<-p.done
}

// Kill kills the process group at once, as a power cut would: no
// shutdown, no step-down, no seal.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	<-p.done
}

// LogTail is the end of the process's log, secrets redacted.
func (p *Process) LogTail() string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return err.Error()
	}
	const max = 4000
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return p.lab.redact(string(data))
}

// Failure describes why the process is not usable, with its log's end.
func (p *Process) Failure(what string) error {
	state := "still running"
	if p.Exited() {
		state = fmt.Sprintf("exited: %v", p.err)
	}
	return fmt.Errorf("%s: %s (%s); log %s ends with:\n%s", p.Name, what, state, p.LogPath, p.LogTail())
}

// ErrGaveUp is what WaitFor returns when the deadline passed.
var ErrGaveUp = errors.New("condition not met before the deadline")

// WaitFor calls check every interval until it returns true, an error, or
// timeout passes. When p is not nil and exits, waiting stops early.
func WaitFor(timeout, interval time.Duration, p *Process, check func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := check()
		switch {
		case err != nil:
			return err
		case ok:
			return nil
		case p != nil && p.Exited():
			return fmt.Errorf("%s exited: %v", p.Name, p.err)
		case time.Now().After(deadline):
			return ErrGaveUp
		}
		time.Sleep(interval)
	}
}

// CleanEnv is this process's environment without VAULT_* variables, so
// that a developer's own Vault settings cannot leak into a child, and
// without the Piwik PRO account of the acceptance test, which no child
// needs.
func CleanEnv() []string {
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
