package harness

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// What /proc says about a process, read from outside it: CPU time, memory,
// threads, open descriptors and connections, children. Every reader here
// works on any process of the same user; none needs the process's help.

// clkTck is the kernel's clock tick; Linux has used 100 on every platform Go
// supports for years.
const clkTck = 100

// statFields are the fields of /proc/<pid>/stat after the command name
// (state, ppid, pgrp, ...); nil when the process is gone. The command
// name, in parentheses, may hold spaces, so the fields are taken after its
// closing parenthesis.
func statFields(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(data[i+1:]))
}

// CPUTime is the CPU time, user and system, pid has used; 0 when it is gone.
func CPUTime(pid int) time.Duration {
	f := statFields(pid)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clkTck
}

// SelfCPU is the CPU time this process has used.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Status reads a numeric field of /proc/<pid>/status: a count (Threads)
// or a size in kB (VmRSS, VmHWM, RssAnon).
func Status(pid int, field string) (int64, error) {
	return statusFile(fmt.Sprintf("/proc/%d/status", pid), field)
}

// MemTotal is the machine's memory in bytes; 0 when unknown.
func MemTotal() int64 {
	kb, _ := statusFile("/proc/meminfo", "MemTotal")
	return kb << 10
}

// statusFile reads a "Name: N" or "Name: N kB" line of a /proc file.
func statusFile(path, field string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in %s", field, path)
}

// ResetPeak restarts pid's VmHWM from its current RSS ("5" to clear_refs),
// so that a peak belongs to what ran after it.
func ResetPeak(pid int) {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// OpenFiles is how many file descriptors pid has open.
func OpenFiles(pid int) (int, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(fds), err
}

// Children returns the processes whose parent is pid.
func Children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	parent := strconv.Itoa(pid)
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(child); len(f) > 1 && f[1] == parent {
			out = append(out, child)
		}
	}
	return out
}

// ChildrenRunning returns the children of pid that run the executable
// exe (an absolute path).
func ChildrenRunning(pid int, exe string) []int {
	var out []int
	for _, child := range Children(pid) {
		if got, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", child)); err == nil && got == exe {
			out = append(out, child)
		}
	}
	return out
}

// ConnectionsTo counts the established TCP connections of process pid to
// the host and port of base (an http URL on 127.0.0.1).
func ConnectionsTo(pid int, base string) (int, error) {
	u, err := url.Parse(base)
	if err != nil {
		return 0, err
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return 0, fmt.Errorf("port of %s: %w", base, err)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	sockets := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if inode, ok := strings.CutPrefix(target, "socket:["); err == nil && ok {
			sockets[strings.TrimSuffix(inode, "]")] = true
		}
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return 0, err
	}
	wantRemote := fmt.Sprintf(":%04X", port)
	n := 0
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		// sl local_address rem_address st ... inode (the 10th field)
		if len(f) > 9 && strings.HasSuffix(f[2], wantRemote) && f[3] == "01" && sockets[f[9]] {
			n++
		}
	}
	return n, nil
}

// LoadAverage is the machine's load average over 1, 5 and 15 minutes.
func LoadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// VaultVersion is the version the vault binary bin reports ("v1.21.0"), or
// "unknown".
func VaultVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "unknown"
	}
	// "Vault v1.21.0, built <date> (cgo)"
	if f := strings.Fields(string(out)); len(f) >= 2 {
		return strings.TrimSuffix(f[1], ",")
	}
	return "unknown"
}
