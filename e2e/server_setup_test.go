package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestRaftServerRequiresMlockChoice checks what README's "Vault server
// setup" says of the Vault release under test: a server on integrated
// storage (raft) whose config has no disable_mlock refuses to start where
// mlock is supported (Linux), and starts once the choice is made, in the
// config or with VAULT_DISABLE_MLOCK in the environment.
func TestRaftServerRequiresMlockChoice(t *testing.T) {
	requireBinaries(t)
	if runtime.GOOS != "linux" {
		t.Skip("Vault enforces the choice only where it can mlock; checked on Linux")
	}
	dir := testDir(t)
	port := freePortPair(t)
	config := func(mlockLine string) string {
		return fmt.Sprintf(`storage "raft" {
  path    = %q
  node_id = "mlock-check"
}

listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}

api_addr     = "http://127.0.0.1:%d"
cluster_addr = "https://127.0.0.1:%d"
%s`, mkdir(t, filepath.Join(dir, "raft")), port, port+1, port, port+1, mlockLine)
	}

	silent := filepath.Join(dir, "no-choice.hcl")
	writeFile(t, silent, config(""))
	out, code := runVaultServerBriefly(t, dir, silent)
	if code != 1 || !strings.Contains(out, "disable_mlock must be configured 'true' or 'false'") {
		t.Fatalf("a raft server without disable_mlock: exit %d, want 1 with the disable_mlock error; output:\n%s", code, redact(out))
	}

	for _, c := range []struct {
		name, mlockLine string
		env             []string
	}{
		{"in the config", "disable_mlock = true\n", nil},
		{"in the environment", "", []string{"VAULT_DISABLE_MLOCK=true"}},
	} {
		path := filepath.Join(dir, "choice-"+strings.ReplaceAll(c.name, " ", "-")+".hcl")
		writeFile(t, path, config(c.mlockLine))
		p, err := startProcess("vault server (mlock choice "+c.name+")", path+".log", dir, c.env,
			suite.vaultBin, "server", "-config="+path)
		if err != nil {
			t.Fatal(err)
		}
		err = waitFor(30*time.Second, 100*time.Millisecond, p, func() (bool, error) {
			log, err := os.ReadFile(path + ".log")
			return err == nil && strings.Contains(string(log), "Vault server started!"), nil
		})
		p.stop()
		if err != nil {
			t.Errorf("with the choice made %s, the server did not start: %s", c.name, p.failure(err.Error()))
		}
	}
}

// runVaultServerBriefly runs `vault server -config=config` and returns its
// output and exit code; a server still running after 30 seconds is stopped
// and reported as exit code -1.
func runVaultServerBriefly(t *testing.T, dir, config string) (string, int) {
	t.Helper()
	cmd := exec.Command(suite.vaultBin, "server", "-config="+config)
	cmd.Dir = dir
	cmd.Env = baseEnv()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
		return out.String(), cmd.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), -1
	}
}
