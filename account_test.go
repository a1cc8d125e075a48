package piwik

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

func TestAccount_roleSecretIsBoundToItsURL(t *testing.T) {
	e := newEnvWithRole(t, "reporting", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret, "token_reuse": true})
	e.mustDo(logical.ReadOperation, "creds/reporting", nil)

	// The config moves to another account, with its own secret.
	other := standin.New(standin.Options{Credentials: []standin.Credential{{ClientID: "other-admin", ClientSecret: "other-admin-secret-1"}}})
	otherSrv := httptest.NewServer(recordSecrets(other, e))
	t.Cleanup(otherSrv.Close)
	e.rememberSecret("other-admin-secret-1")
	e.mustDo(logical.UpdateOperation, "config", map[string]any{"url": otherSrv.URL, "client_id": "other-admin", "client_secret": "other-admin-secret-1"})
	before := other.TokenRequests()

	status, msg := statusOf(e.do(logical.ReadOperation, "creds/reporting", nil))
	if status != http.StatusConflict || !strings.Contains(msg, "client_secret again") || !strings.Contains(msg, e.server.URL) {
		t.Errorf("creds after the url changed = %d %q, want 409 telling to write the role's client_secret again", status, msg)
	}
	if got := other.TokenRequests() - before; got != 0 {
		t.Errorf("the new url received %d token requests for the role; its secret was given for the old one", got)
	}
	code, report := e.check()
	role := report["roles"].(map[string]any)["reporting"].(map[string]any)
	if code != http.StatusConflict || role["ok"] != false || !strings.Contains(role["error"].(string), "client_secret again") {
		t.Errorf("check = %d %v, want the role reported as bound elsewhere", code, role)
	}
	if got := other.TokenRequests() - before; got != 1 {
		t.Errorf("check made %d token requests at the new url, want 1 (the config's own)", got)
	}

	// Rotating the role's secret alone, for the new url, rebinds it.
	other.AddCredential(standin.Credential{ClientID: roleClientID, ClientSecret: "reporting-secret-rotated", UserID: "7d3a2b10-reporting"})
	e.rememberSecret("reporting-secret-rotated")
	e.mustDo(logical.PatchOperation, "roles/reporting", map[string]any{"client_secret": "reporting-secret-rotated"})
	resp := e.mustDo(logical.ReadOperation, "creds/reporting", nil)
	if resp.Data["sub"] != "7d3a2b10-reporting" || !other.TokenValid(resp.Data["access_token"].(string)) {
		t.Errorf("after rotating the secret: sub %v, want a token of the new account for the role's user", resp.Data["sub"])
	}
	if got := e.mustDo(logical.ReadOperation, "roles/reporting", nil).Data["credentials_url"]; got != otherSrv.URL {
		t.Errorf("credentials_url = %v, want the new url", got)
	}
}

// recordSecrets serves s and remembers every token it issues in e.
func recordSecrets(s http.Handler, e *env) http.Handler {
	return recordTokens(s, e.rememberSecret)
}

// Config delete and recreate at another url: roles with their own secret
// stay bound to the old url and send nothing; back at the old url they
// work again (the secret was given for it).
func TestAccount_configRecreatedElsewhereKeepsRoleSecretsHome(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	e.mustDo(logical.CreateOperation, "roles/own", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret, "token_reuse": true})
	e.mustDo(logical.ReadOperation, "creds/own", nil)

	var leaked atomic.Int64
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if secret, _ := requestSecret(r); secret == roleClientSecret {
			leaked.Add(1)
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(evil.Close)
	e.mustDo(logical.DeleteOperation, "config", nil)
	e.mustDo(logical.UpdateOperation, "config", map[string]any{"url": evil.URL, "client_id": "x", "client_secret": "y", "verify_credentials": false})
	if code, _ := statusOf(e.do(logical.ReadOperation, "creds/own", nil)); code != http.StatusConflict {
		t.Errorf("creds/own against the new url: %d, want 409", code)
	}
	if _, report := e.check(); report["roles"].(map[string]any)["own"].(map[string]any)["status"] != float64(http.StatusConflict) {
		t.Errorf("check against the new url: role own = %v, want 409", report["roles"])
	}
	// Re-enable verification: a PATCH of anything else must not rebind.
	e.mustDo(logical.PatchOperation, "roles/own", map[string]any{"ttl": 60, "client_id": roleClientID})
	if code, _ := statusOf(e.do(logical.ReadOperation, "creds/own", nil)); code != http.StatusConflict {
		t.Errorf("patching other role fields rebound the secret: %d", code)
	}
	if leaked.Load() != 0 {
		t.Errorf("the role's secret was sent to the new url %d times", leaked.Load())
	}
	e.mustDo(logical.UpdateOperation, "config", map[string]any{"url": e.server.URL, "client_id": testClientID, "client_secret": testClientSecret})
	e.mustDo(logical.ReadOperation, "creds/own", nil)
}
