package e2e

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAgentRewritesTokenBeforeExpiry runs the example Vault Agent config
// (examples/agent) with AppRole auto-auth and the reporting-reader policy,
// against a stand-in that issues 20-second tokens, and checks that the
// agent writes a new, working token before the old one expires.
func TestAgentRewritesTokenBeforeExpiry(t *testing.T) {
	requireBinaries(t)
	dir := testDir(t)
	// A server of its own: the short token lifetime must not reach the
	// other tests.
	env := newDevEnv(t, dir, t.Cleanup)
	v, st := env.vault, env.standin
	const lifetime = 20
	st.setLifetime(t, lifetime)

	confDir := mkdir(t, filepath.Join(dir, "etc"))
	outDir := mkdir(t, filepath.Join(dir, "run"))
	roleID, secretID := v.approleForReader(t)
	writeFile(t, filepath.Join(confDir, "role-id"), roleID)
	writeFile(t, filepath.Join(confDir, "secret-id"), secretID)
	configPath := installAgentExample(t, confDir, outDir)

	agent, err := startProcess("vault agent", filepath.Join(dir, "agent.log"), dir,
		[]string{"VAULT_ADDR=" + v.addr, "HOME=" + filepath.Join(dir, "home")},
		suite.vaultBin, "agent", "-log-level=debug", "-config="+configPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agent.stop)

	tokenFile := filepath.Join(outDir, "token")
	envFile := filepath.Join(outDir, "piwik.env")
	first := waitForFileToken(t, agent, tokenFile, "", 60*time.Second)
	firstExp := jwtExpiry(t, first)
	if left := time.Until(firstExp); left > (lifetime+5)*time.Second {
		t.Fatalf("the first token is valid for %s more: the stand-in ignored the %ds lifetime", left, lifetime)
	}
	st.requireTokenWorks(t, "first token the agent rendered", first)
	waitForEnvToken(t, agent, envFile, first)
	requireMode(t, tokenFile, 0o600)
	requireMode(t, envFile, 0o600)

	second := waitForFileToken(t, agent, tokenFile, first, time.Until(firstExp)+10*time.Second)
	seen := time.Now()
	if !seen.Before(firstExp) {
		t.Fatalf("the agent wrote a new token %s after the old one expired", seen.Sub(firstExp))
	}
	t.Logf("the agent replaced the token %s before the old one expired", firstExp.Sub(seen).Round(100*time.Millisecond))
	if !jwtExpiry(t, second).After(firstExp) {
		t.Error("the new token does not expire after the old one")
	}
	st.requireTokenWorks(t, "second token the agent rendered", second)
	waitForEnvToken(t, agent, envFile, second)
}

// approleForReader enables AppRole with a role that carries the example
// reporting-reader policy, and returns its role ID and a secret ID.
func (v *vaultServer) approleForReader(t *testing.T) (roleID, secretID string) {
	t.Helper()
	v.vault(t, "policy", "write", "reporting-reader", filepath.Join(examplesDir(t), "policies", "reporting-reader.hcl"))
	return v.approle(t, "reporting-reader")
}

// approle enables AppRole at auth/approle with a role piwik-reporting that
// carries policies, and returns its role ID and a secret ID.
func (v *vaultServer) approle(t *testing.T, policies ...string) (roleID, secretID string) {
	t.Helper()
	v.vault(t, "auth", "enable", "approle")
	v.vault(t, "write", "auth/approle/role/piwik-reporting",
		"token_policies="+strings.Join(policies, ","), "token_ttl=10m", "token_max_ttl=30m", "secret_id_ttl=30m")
	var role struct {
		Data struct {
			RoleID string `json:"role_id"`
		} `json:"data"`
	}
	decode(t, "role-id", v.vault(t, "read", "-format=json", "auth/approle/role/piwik-reporting/role-id"), &role)
	var secret struct {
		Data struct {
			SecretID string `json:"secret_id"`
		} `json:"data"`
	}
	decode(t, "secret-id", v.vault(t, "write", "-format=json", "-f", "auth/approle/role/piwik-reporting/secret-id"), &secret)
	if role.Data.RoleID == "" || secret.Data.SecretID == "" {
		t.Fatal("AppRole returned an empty role_id or secret_id")
	}
	rememberSecret(t, "AppRole secret_id", secret.Data.SecretID)
	return role.Data.RoleID, secret.Data.SecretID
}

// installAgentExample copies examples/agent into confDir, with the
// example's /etc/vault-agent/piwik/ and /run/vault-agent/piwik/ paths
// pointed at confDir and outDir, and returns the config's path. It fails
// when the example no longer has the paths it rewrites, so the test cannot
// drift away from the example.
func installAgentExample(t *testing.T, confDir, outDir string) string {
	t.Helper()
	src := filepath.Join(examplesDir(t), "agent")
	for _, name := range []string{"piwik-token.ctmpl", "piwik.env.ctmpl"} {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(confDir, name), string(data))
	}
	data, err := os.ReadFile(filepath.Join(src, "agent.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	config := string(data)
	for from, to := range map[string]string{
		"/etc/vault-agent/piwik/": confDir + "/",
		"/run/vault-agent/piwik/": outDir + "/",
	} {
		if !strings.Contains(config, from) {
			t.Fatalf("examples/agent/agent.hcl no longer mentions %s; update this test", from)
		}
		config = strings.ReplaceAll(config, from, to)
	}
	path := filepath.Join(confDir, "agent.hcl")
	writeFile(t, path, config)
	return path
}

// waitForFileToken waits until path holds a token other than old, and
// returns it (remembered for the log scan).
func waitForFileToken(t *testing.T, agent *process, path, old string, timeout time.Duration) string {
	t.Helper()
	var token string
	err := waitFor(timeout, 50*time.Millisecond, agent, func() (bool, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return false, nil
		}
		token = strings.TrimSpace(string(data))
		return token != "" && token != old, nil
	})
	if err != nil {
		what := "a token"
		if old != "" {
			what = "a new token"
		}
		t.Fatal(agent.failure("no " + what + " in " + path + ": " + err.Error()))
	}
	rememberSecret(t, "access token rendered by Vault Agent", token)
	return token
}

// waitForEnvToken waits until the env file sets PIWIK_ACCESS_TOKEN to
// token.
func waitForEnvToken(t *testing.T, agent *process, path, token string) {
	t.Helper()
	err := waitFor(10*time.Second, 50*time.Millisecond, agent, func() (bool, error) {
		f, err := os.Open(path)
		if err != nil {
			return false, nil
		}
		defer f.Close()
		var lines []string
		for sc := bufio.NewScanner(f); sc.Scan(); {
			lines = append(lines, sc.Text())
		}
		return len(lines) == 1 && lines[0] == "PIWIK_ACCESS_TOKEN="+token, nil
	})
	if err != nil {
		t.Fatal(agent.failure(path + " does not hold exactly PIWIK_ACCESS_TOKEN=<the token in the token file>: " + err.Error()))
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func requireMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != want {
		t.Errorf("%s has mode %o, want %o", path, got, want)
	}
}
