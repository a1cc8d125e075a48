package e2e

import (
	"fmt"
	"testing"

	"github.com/hashicorp/vault/api"
)

// warmRoles is how many token_reuse roles the restart tests keep warm.
const warmRoles = 100

// TestReloadServesStoredTokens pins that a plugin reload (what an upgrade,
// a Vault restart or a leader change does to the plugin) costs Piwik PRO
// nothing: 100 warm token_reuse roles are read once each after the reload
// with no token request and no failure, and again after a second reload
// while Piwik PRO is down. Writes that change nothing of a credential (a
// role's ttl, the config's max_retries) keep the tokens too.
func TestReloadServesStoredTokens(t *testing.T) {
	const mount = "piwik-warm"
	v, st := mountPrivately(t, mount)
	client := v.client(t, v.token)
	roles := make([]string, warmRoles)
	for i := range roles {
		roles[i] = fmt.Sprintf("warm-%03d", i)
		if _, err := client.Logical().Write(mount+"/roles/"+roles[i], map[string]any{"token_reuse": true}); err != nil {
			t.Fatalf("write role %s: %v", roles[i], err)
		}
	}
	tokens := readEach(t, client, mount, roles)

	// The CLI's -mounts needs a -type it then refuses (Vault v1.21.0);
	// the API reloads the mount as the CLI would.
	reload := func() {
		t.Helper()
		if _, err := client.Sys().ReloadPlugin(&api.ReloadPluginInput{Mounts: []string{mount + "/"}}); err != nil {
			t.Fatalf("reload %s/: %v", mount, err)
		}
	}
	// readAll reads every role once and fails t when a read failed or
	// got another token than before; it returns the token requests
	// Piwik PRO received meanwhile.
	readAll := func(when string) int64 {
		t.Helper()
		before := st.stats(t).TokenRequests
		got := readEach(t, client, mount, roles)
		failed, other := 0, 0
		for _, role := range roles {
			switch got[role] {
			case "":
				failed++
			case tokens[role]:
			default:
				other++
			}
		}
		if failed > 0 || other > 0 {
			t.Errorf("%s: %d of %d reads failed and %d got another token than before, want none", when, failed, len(roles), other)
		}
		return st.stats(t).TokenRequests - before
	}

	reload()
	if n := readAll("after a reload"); n != 0 {
		t.Errorf("after a reload, %d reads made %d token requests, want 0", len(roles), n)
	}
	var metrics struct {
		Data struct {
			TokensLoaded int64 `json:"tokens_loaded"`
		} `json:"data"`
	}
	decode(t, "vault read "+mount+"/metrics", v.vault(t, "read", "-format=json", mount+"/metrics"), &metrics)
	if metrics.Data.TokensLoaded != warmRoles {
		t.Errorf("metrics: tokens_loaded = %d after the reload, want %d", metrics.Data.TokensLoaded, warmRoles)
	}

	reload()
	st.control(t, "fault", map[string]any{"kind": "server_error"})
	readAll("after a reload, during an outage")
	st.control(t, "fault", map[string]any{"kind": ""})

	v.vault(t, "patch", mount+"/roles/"+roles[0], "ttl=10m")
	v.vault(t, "write", mount+"/config", "max_retries=2")
	// The same credential written again (a secret rotation that was not).
	v.vaultAs(t, v.token, fmt.Sprintf(`{"client_secret": %q}`, st.clientSecret), "write", mount+"/config", "-")
	if n := readAll("after a ttl patch, a max_retries write and the same secret written again"); n != 0 {
		t.Errorf("after writes that change nothing of the credential, %d token requests, want 0", n)
	}
}

// readEach reads mount/creds/<role> once for each role through the API and
// returns the tokens by role; a failed read leaves its role out.
func readEach(t *testing.T, client *api.Client, mount string, roles []string) map[string]string {
	t.Helper()
	tokens := make(map[string]string, len(roles))
	for _, role := range roles {
		secret, err := client.Logical().Read(mount + "/creds/" + role)
		if err != nil || secret == nil {
			t.Logf("read %s: %v", role, redact(fmt.Sprint(err)))
			continue
		}
		tok, _ := secret.Data["access_token"].(string)
		rememberSecret(t, "access token of "+role, tok)
		tokens[role] = tok
	}
	return tokens
}
