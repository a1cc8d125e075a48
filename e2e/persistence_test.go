package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
)

// TestConfigAndRolesSurviveRestart runs a real (non-dev) server with file
// storage, sets the plugin up, restarts the server, and checks that config
// and roles were persisted and creds still work.
func TestConfigAndRolesSurviveRestart(t *testing.T) {
	requireBinaries(t)
	dir := testDir(t)
	st := startStandin(t, dir, "standin", t.Cleanup)

	v := &vaultServer{name: "vault", dir: dir, pluginDir: filepath.Join(dir, "plugins")}
	copyPlugin(t, v.pluginDir, pluginName)
	home := mkdir(t, filepath.Join(dir, "home"))
	configPath := filepath.Join(dir, "vault.hcl")
	start := func() {
		t.Helper()
		startWithRetry(t, v, t.Cleanup, func(port int) []string {
			storage := fmt.Sprintf("storage \"file\" {\n  path = %q\n}\n", filepath.Join(dir, "data"))
			writeFile(t, configPath, serverConfig(storage, port, v.pluginDir))
			return []string{"server", "-log-level=debug", "-config=" + configPath}
		}, []string{"HOME=" + home})
	}
	start()

	var initOut struct {
		Keys      []string `json:"unseal_keys_b64"`
		RootToken string   `json:"root_token"`
	}
	decode(t, "vault operator init", v.vaultAs(t, "", "", "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json"), &initOut)
	if len(initOut.Keys) != 1 || initOut.RootToken == "" {
		t.Fatal("vault operator init returned no unseal key or root token")
	}
	unsealKey := initOut.Keys[0]
	v.token = initOut.RootToken
	rememberSecret(t, "unseal key", unsealKey)
	v.unseal(t, unsealKey)

	version := v.builtVersion(t)
	v.registerPlugin(t, pluginName, version)
	v.mountPiwik(t, "piwik", version, st)
	v.vault(t, "write", "piwik/roles/short", "ttl=5m", "token_reuse=true")
	st.requireTokenWorks(t, "token before the restart", v.readCreds(t, v.token, "piwik/creds/reporting").accessToken)

	v.proc.stop()
	start()
	v.unseal(t, unsealKey)

	cfg := v.readSecret(t, v.token, "piwik/config")
	if got := cfg.Data["url"]; got != st.url {
		t.Errorf("after the restart piwik/config url = %v, want %s", got, st.url)
	}
	var roles []string
	decode(t, "vault list piwik/roles", v.vault(t, "list", "-format=json", "piwik/roles"), &roles)
	if !slices.Equal(roles, []string{"reporting", "short"}) {
		t.Errorf("after the restart piwik/roles = %v, want [reporting short]", roles)
	}
	short := v.readSecret(t, v.token, "piwik/roles/short")
	if got := fmt.Sprint(short.Data["ttl"]); got != "300" {
		t.Errorf("after the restart piwik/roles/short ttl = %s, want 300", got)
	}
	if got := short.Data["token_reuse"]; got != true {
		t.Errorf("after the restart piwik/roles/short token_reuse = %v, want true", got)
	}
	if got := v.mounts(t)["piwik/"].RunningPluginVersion; got != version {
		t.Errorf("after the restart piwik/ runs %q, want %q", got, version)
	}
	c := v.readCreds(t, v.token, "piwik/creds/reporting")
	st.requireTokenWorks(t, "token after the restart", c.accessToken)
}

// unseal unseals v with key and waits until it is active.
func (v *vaultServer) unseal(t *testing.T, key string) {
	t.Helper()
	if _, err := v.client(t, "").Sys().Unseal(key); err != nil {
		t.Fatal(v.proc.failure("unseal: " + err.Error()))
	}
	v.waitActive(t)
}
