package e2e

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAgentRewritesTokenBeforeExpiry runs the example Vault Agent config
// (examples/agent) with AppRole auto-auth and the reporting-reader policy,
// against a stand-in that issues short-lived tokens, and checks that the
// agent writes a new, working token before the old one expires: first on
// the leased reporting role, then with the role switched to leased=false
// and token_reuse, where the agent sees a static secret.
func TestAgentRewritesTokenBeforeExpiry(t *testing.T) {
	requireBinaries(t)
	dir := testDir(t)
	// A server of its own: the short token lifetime must not reach the
	// other tests.
	env := newDevEnv(t, dir, t.Cleanup)
	v := env.vault
	roleID, secretID := v.approleForReader(t)

	t.Run("leased", func(t *testing.T) {
		const lifetime = 20
		env.standin.setLifetime(t, lifetime)
		a := startExampleAgent(t, env, filepath.Join(dir, "leased"), roleID, secretID, nil)

		first := waitForFileToken(t, a.proc, a.tokenFile, "", 60*time.Second)
		firstExp := jwtExpiry(t, first)
		if left := time.Until(firstExp); left > (lifetime+5)*time.Second {
			t.Fatalf("the first token is valid for %s more: the stand-in ignored the %ds lifetime", left, lifetime)
		}
		env.standin.requireTokenWorks(t, "first token the agent rendered", first)
		waitForEnvToken(t, a.proc, a.envFile, first)
		requireMode(t, a.tokenFile, 0o600)
		requireMode(t, a.envFile, 0o600)

		second := a.requireReplacedBeforeExpiry(t, first)
		if !jwtExpiry(t, second).After(firstExp) {
			t.Error("the new token does not expire after the old one")
		}
		env.standin.requireTokenWorks(t, "second token the agent rendered", second)
		waitForEnvToken(t, a.proc, a.envFile, second)
	})

	// Without a lease the agent reads the secret again every
	// lease_renewal_threshold (0.75, give or take 0.05) of the example's
	// static_secret_render_interval, here made 2s to fit 10-second tokens.
	// token_reuse hands it the cached token while half its life is left, so
	// most reads change nothing, and a new token replaces the old one while
	// the old one still has about 3 s or more (half its life, less one
	// re-read period).
	t.Run("unleased", func(t *testing.T) {
		const lifetime = 10
		const rotations = 3
		env.standin.setLifetime(t, lifetime)
		v.vault(t, "write", "piwik/roles/reporting", "leased=false", "token_reuse=true")
		s := v.readSecret(t, v.token, "piwik/creds/reporting")
		if s.LeaseID != "" || s.LeaseDuration != 0 || s.Data["ttl"] == nil {
			t.Fatalf("the role still reads with a lease (lease_id %q, lease_duration %d, ttl %v)", s.LeaseID, s.LeaseDuration, s.Data["ttl"])
		}
		rememberSecret(t, "access token read by "+t.Name(), stringField(s.Data, "access_token"))
		hitsBefore := reuseHits(t, v, "piwik")

		a := startExampleAgent(t, env, filepath.Join(dir, "unleased"), roleID, secretID,
			map[string]string{`static_secret_render_interval = "5m"`: `static_secret_render_interval = "2s"`})
		token := waitForFileToken(t, a.proc, a.tokenFile, "", 60*time.Second)
		env.standin.requireTokenWorks(t, "first token the agent rendered", token)
		for i := 1; i <= rotations; i++ {
			next := a.requireReplacedBeforeExpiry(t, token)
			env.standin.requireTokenWorks(t, fmt.Sprintf("token %d the agent rendered", i+1), next)
			waitForEnvToken(t, a.proc, a.envFile, next)
			token = next
		}
		if hits := reuseHits(t, v, "piwik") - hitsBefore; hits == 0 {
			t.Error("the agent's reads never got the cached token: token_reuse did not apply")
		} else {
			t.Logf("%d of the agent's reads got the cached token", hits)
		}
	})
}

// exampleAgent is a running Vault Agent with the example config, and the
// files it renders.
type exampleAgent struct {
	proc               *process
	tokenFile, envFile string
}

// startExampleAgent runs the example Agent config, with the AppRole
// credentials roleID and secretID, in dir; rewrite replaces text of the
// config (see installAgentExample). The agent stops when t ends.
func startExampleAgent(t *testing.T, env *devEnv, dir, roleID, secretID string, rewrite map[string]string) *exampleAgent {
	t.Helper()
	confDir := mkdir(t, filepath.Join(dir, "etc"))
	outDir := mkdir(t, filepath.Join(dir, "run"))
	writeFile(t, filepath.Join(confDir, "role-id"), roleID)
	writeFile(t, filepath.Join(confDir, "secret-id"), secretID)
	configPath := installAgentExample(t, confDir, outDir, rewrite)

	p, err := startProcess("vault agent", filepath.Join(dir, "agent.log"), dir,
		[]string{"VAULT_ADDR=" + env.vault.addr, "HOME=" + mkdir(t, filepath.Join(dir, "home"))},
		suite.vaultBin, "agent", "-log-level=debug", "-config="+configPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	return &exampleAgent{proc: p, tokenFile: filepath.Join(outDir, "token"), envFile: filepath.Join(outDir, "piwik.env")}
}

// requireReplacedBeforeExpiry waits until the agent writes a token other
// than old to the token file, fails t unless that happened before old
// expired, and returns the new token.
func (a *exampleAgent) requireReplacedBeforeExpiry(t *testing.T, old string) string {
	t.Helper()
	oldExp := jwtExpiry(t, old)
	next := waitForFileToken(t, a.proc, a.tokenFile, old, time.Until(oldExp)+10*time.Second)
	seen := time.Now()
	if !seen.Before(oldExp) {
		t.Fatalf("the agent wrote a new token %s after the old one expired", seen.Sub(oldExp))
	}
	t.Logf("the agent replaced the token %s before the old one expired", oldExp.Sub(seen).Round(100*time.Millisecond))
	return next
}

// reuseHits reads reuse_hits from mount's metrics.
func reuseHits(t *testing.T, v *vaultServer, mount string) int64 {
	t.Helper()
	var m struct {
		Data struct {
			ReuseHits int64 `json:"reuse_hits"`
		} `json:"data"`
	}
	decode(t, "vault read "+mount+"/metrics", v.vault(t, "read", "-format=json", mount+"/metrics"), &m)
	return m.Data.ReuseHits
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
// pointed at confDir and outDir and each key of rewrite in the config
// replaced by its value, and returns the config's path. It fails when the
// example no longer has the text it rewrites, so the test cannot drift away
// from the example.
func installAgentExample(t *testing.T, confDir, outDir string, rewrite map[string]string) string {
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
	replace := map[string]string{
		"/etc/vault-agent/piwik/": confDir + "/",
		"/run/vault-agent/piwik/": outDir + "/",
	}
	maps.Copy(replace, rewrite)
	for from, to := range replace {
		if !strings.Contains(config, from) {
			t.Fatalf("examples/agent/agent.hcl no longer has %s; update this test", from)
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
