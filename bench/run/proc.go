package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a process the harness started, in a process group of its own so
// that stopping it also stops the plugin processes Vault started.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

// procs are every process started, for stopAll.
var (
	procsMu sync.Mutex
	procs   []*proc
)

// startProc starts bin with args, its output going to logPath.
func startProc(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the process group politely, then firmly after 10s.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	step("stopping %s (pid %d)", p.name, p.pid())
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
	// Plugin processes may outlive Vault for a moment.
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
}

// stopAll stops every process started, newest first.
func stopAll() {
	procsMu.Lock()
	all := append([]*proc(nil), procs...)
	procsMu.Unlock()
	for i := len(all) - 1; i >= 0; i-- {
		all[i].stop()
	}
}

// failure describes a process that did not do what was expected, with the
// tail of its log.
func (p *proc) failure(what string) error {
	data, _ := os.ReadFile(p.logPath)
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	state := "running"
	if p.exited() {
		state = fmt.Sprintf("exited: %v", p.err)
	}
	return fmt.Errorf("%s: %s (%s); end of %s:\n%s", p.name, what, state, p.logPath, data)
}

// waitFor polls check every interval until it returns true, an error, or
// timeout passes; it gives up early when p (if any) exits.
func waitFor(timeout, interval time.Duration, p *proc, check func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := check()
		switch {
		case err != nil:
			return err
		case ok:
			return nil
		case p != nil && p.exited():
			return p.failure("exited")
		case time.Now().After(deadline):
			return fmt.Errorf("gave up after %s", timeout)
		}
		time.Sleep(interval)
	}
}

// freePortPair returns a loopback port that is free, and the one after it
// (Vault listens for its cluster on port+1).
func freePortPair() (int, error) {
	for range 100 {
		l1, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l1.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		l1.Close()
		if err == nil {
			l2.Close()
			return port, nil
		}
	}
	return 0, errors.New("found no free pair of loopback ports")
}

// --- /proc ---------------------------------------------------------------

// clkTck is the kernel's clock tick; Linux has used 100 on every platform Go
// supports for years.
const clkTck = 100

// cpuTime is the CPU time, user and system, pid has used; 0 when it is gone.
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clkTck
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// memStatus returns a /proc/<pid>/status memory field (VmRSS, VmHWM,
// RssAnon, ...) in bytes; 0 when unknown.
func memStatus(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		return kb << 10
	}
	return 0
}

// resetPeak restarts pid's VmHWM from its current RSS ("5" to clear_refs),
// so that a peak belongs to what ran after it.
func resetPeak(pid int) {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// children returns the pids whose parent is pid and whose executable path
// starts with prefix.
func children(pid int, prefix string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(data, ')')
		fields := strings.Fields(string(data[i+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(pid) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.HasPrefix(string(cmdline), prefix) {
			out = append(out, child)
		}
	}
	return out
}

// fileSize is the size of path; 0 when it does not exist.
func fileSize(path string) int64 {
	info, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return info.Size()
}
