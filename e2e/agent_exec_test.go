package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAgentExecRestartsAppWithFreshToken runs the process-supervisor
// example (examples/agent/agent-exec.hcl: env_template and exec) with
// AppRole auto-auth and the reporting-reader policy, against a stand-in
// that issues 30-second tokens. The application is a shell script that
// records its pid and the token in its environment, then sleeps. The agent
// must start it with a working token and restart it twice, each time as a
// new process with a new, working token, before the old token expires, and
// stop the old process.
func TestAgentExecRestartsAppWithFreshToken(t *testing.T) {
	requireBinaries(t)
	requireTools(t, "sh", "sleep")
	const (
		lifetime = 30
		restarts = 2
	)
	dir := testDir(t)
	// A server of its own: the short token lifetime must not reach the
	// other tests.
	env := newDevEnv(t, dir, t.Cleanup)
	roleID, secretID := env.vault.approleForReader(t)
	env.standin.setLifetime(t, lifetime)

	confDir := mkdir(t, filepath.Join(dir, "etc"))
	appDir := mkdir(t, filepath.Join(dir, "app"))
	writeFile(t, filepath.Join(confDir, "role-id"), roleID)
	writeFile(t, filepath.Join(confDir, "secret-id"), secretID)
	starts := filepath.Join(appDir, "starts")
	app := writeStartRecorder(t, filepath.Join(appDir, "piwik-reporting"), starts)
	configPath := installAgentExecExample(t, confDir, app)

	agent, err := startProcess("vault agent (exec)", filepath.Join(dir, "agent.log"), dir,
		[]string{"VAULT_ADDR=" + env.vault.addr, "HOME=" + mkdir(t, filepath.Join(dir, "home"))},
		suite.vaultBin, "agent", "-log-level=debug", "-config="+configPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agent.stop)

	prev := waitForAppStart(t, agent, starts, 1, 60*time.Second)
	if left := time.Until(prev.tokenExp); left > (lifetime+5)*time.Second {
		t.Fatalf("the first token is valid for %s more: the stand-in ignored the %ds lifetime", left, lifetime)
	}
	env.standin.requireTokenWorks(t, "the token of the application's first start", prev.token)

	for n := 2; n <= restarts+1; n++ {
		next := waitForAppStart(t, agent, starts, n, time.Until(prev.tokenExp)+15*time.Second)
		if next.pid == prev.pid {
			t.Fatalf("start %d has the pid of start %d (%d): the application was not restarted", n, n-1, prev.pid)
		}
		if next.token == prev.token {
			t.Fatalf("start %d got the token of start %d", n, n-1)
		}
		if !next.seen.Before(prev.tokenExp) {
			t.Fatalf("the application was restarted %s after its old token expired", next.seen.Sub(prev.tokenExp))
		}
		t.Logf("start %d: pid %d, %s before the old token expired", n, next.pid, prev.tokenExp.Sub(next.seen).Round(100*time.Millisecond))
		env.standin.requireTokenWorks(t, fmt.Sprintf("the token of the application's start %d", n), next.token)
		requireProcessGone(t, agent, prev.pid, 35*time.Second)
		prev = next
	}
	// Still exactly one application process per start: no start more than
	// the rotations seen.
	if got := len(readAppStarts(t, starts)); got != restarts+1 {
		t.Errorf("%s records %d starts, want %d", starts, got, restarts+1)
	}
}

// appStart is one start of the recording application: its pid, the token
// and expiry the agent gave it, and when the test saw the record.
type appStart struct {
	pid       int
	expiresAt time.Time // PIWIK_TOKEN_EXPIRES_AT
	token     string    // PIWIK_ACCESS_TOKEN
	tokenExp  time.Time // the token's own exp claim
	seen      time.Time
}

// writeStartRecorder writes, at path, a shell script that stands in for an
// application: it appends its pid, PIWIK_TOKEN_EXPIRES_AT and
// PIWIK_ACCESS_TOKEN as one line to starts, then sleeps until it is
// stopped (exec, so that the agent's SIGTERM reaches the sleep). It returns
// path.
func writeStartRecorder(t *testing.T, path, starts string) string {
	t.Helper()
	script := fmt.Sprintf("#!/bin/sh\nprintf '%%s %%s %%s\\n' \"$$\" \"$PIWIK_TOKEN_EXPIRES_AT\" \"$PIWIK_ACCESS_TOKEN\" >>%q\nexec sleep 3600\n", starts)
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

// installAgentExecExample copies examples/agent/agent-exec.hcl into
// confDir with its /etc/vault-agent/piwik/ paths pointed at confDir and its
// command replaced by command, and returns the config's path. It fails when
// the example no longer has the text it rewrites.
func installAgentExecExample(t *testing.T, confDir, command string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(examplesDir(t), "agent", "agent-exec.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	config := string(data)
	for from, to := range map[string]string{
		"/etc/vault-agent/piwik/":          confDir + "/",
		`"/usr/local/bin/piwik-reporting"`: strconv.Quote(command),
	} {
		if !strings.Contains(config, from) {
			t.Fatalf("examples/agent/agent-exec.hcl no longer has %s; update this test", from)
		}
		config = strings.ReplaceAll(config, from, to)
	}
	path := filepath.Join(confDir, "agent-exec.hcl")
	writeFile(t, path, config)
	return path
}

// readAppStarts returns the complete lines of the starts file, parsed.
func readAppStarts(t *testing.T, path string) []appStart {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		t.Fatal(err)
	}
	text := string(data)
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		text = text[:i] // a line still being written is left for later
	} else {
		return nil
	}
	var out []appStart
	for i, line := range strings.Split(text, "\n") {
		fields := strings.Fields(line)
		if len(fields) != 3 {
			t.Fatalf("%s line %d has %d fields, want pid, PIWIK_TOKEN_EXPIRES_AT and PIWIK_ACCESS_TOKEN: the agent left a variable empty", path, i+1, len(fields))
		}
		rememberSecret(t, "access token the agent put in the application's environment", fields[2])
		pid, err := strconv.Atoi(fields[0])
		if err != nil {
			t.Fatalf("%s line %d: pid %q: %v", path, i+1, fields[0], err)
		}
		expiresAt, err := time.Parse(time.RFC3339, fields[1])
		if err != nil {
			t.Fatalf("%s line %d: PIWIK_TOKEN_EXPIRES_AT %q: %v", path, i+1, fields[1], err)
		}
		out = append(out, appStart{pid: pid, expiresAt: expiresAt, token: fields[2], tokenExp: jwtExpiry(t, fields[2])})
	}
	return out
}

// waitForAppStart waits until the starts file records start n (1, 2, …)
// and returns it. Its PIWIK_TOKEN_EXPIRES_AT must be the expires_at of its
// own token: both variables come from one read.
func waitForAppStart(t *testing.T, agent *process, path string, n int, timeout time.Duration) appStart {
	t.Helper()
	var found appStart
	err := waitFor(timeout, 50*time.Millisecond, agent, func() (bool, error) {
		all := readAppStarts(t, path)
		if len(all) < n {
			return false, nil
		}
		found = all[n-1]
		found.seen = time.Now()
		return true, nil
	})
	if err != nil {
		t.Fatal(agent.failure(fmt.Sprintf("no start %d of the application in %s: %v", n, path, err)))
	}
	// expires_at is the earlier of exp and the request's start plus
	// expires_in, truncated to the second: at most a second or two before
	// exp, never after it.
	if found.expiresAt.After(found.tokenExp) || found.tokenExp.Sub(found.expiresAt) > 2*time.Second {
		t.Errorf("start %d: PIWIK_TOKEN_EXPIRES_AT is %s but the token expires at %s: the variables come from different reads",
			n, found.expiresAt.UTC().Format(time.RFC3339), found.tokenExp.UTC().Format(time.RFC3339))
	}
	return found
}

// requireProcessGone fails t unless process pid has ended (and was reaped
// by its parent) within timeout.
func requireProcessGone(t *testing.T, agent *process, pid int, timeout time.Duration) {
	t.Helper()
	err := waitFor(timeout, 100*time.Millisecond, agent, func() (bool, error) {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH), nil
	})
	if err != nil {
		t.Fatal(agent.failure(fmt.Sprintf("the application's old process %d still runs after its restart: %v", pid, err)))
	}
}
