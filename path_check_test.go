package piwik

import (
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/standin"
)

func TestCheck_reportsEachCredentialWithoutTokens(t *testing.T) {
	e := newEnvWithRole(t, "reporting", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
	e.mustDo(logical.CreateOperation, "roles/plain", nil)

	resp := e.mustDo(logical.ReadOperation, "check", nil)
	if resp.Data["ok"] != true {
		t.Fatalf("check = %v, want ok", resp.Data)
	}
	roles := resp.Data["roles"].(map[string]any)
	if got := roles["plain"].(map[string]any)["credentials"]; got != "config" {
		t.Errorf("plain role credentials = %v, want config", got)
	}
	if got := roles["reporting"].(map[string]any)["credentials"]; got != "role" {
		t.Errorf("reporting role credentials = %v, want role", got)
	}
	if strings.Contains(responseText(t, resp, nil), ".ey") {
		t.Errorf("check response contains something JWT-shaped")
	}

	// The role's credential is deleted in Piwik PRO: the check says which.
	e.piwik.AddCredential(standin.Credential{ClientID: roleClientID, ClientSecret: "replaced-in-the-ui"})
	resp = e.mustDo(logical.ReadOperation, "check", nil)
	roles = resp.Data["roles"].(map[string]any)
	failed := roles["reporting"].(map[string]any)
	if resp.Data["ok"] != false || failed["ok"] != false || !strings.Contains(failed["error"].(string), "invalid_client") {
		t.Errorf("check after the credential changed = %v", resp.Data)
	}
	if roles["plain"].(map[string]any)["ok"] != true {
		t.Errorf("a role on the config's credentials failed: %v", roles["plain"])
	}
}

func TestMetrics_countRequestsAndFailures(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"max_retries": 1})
	e.mustDo(logical.CreateOperation, "roles/r", nil)
	e.piwik.FailNext(1, standin.Fault{Kind: standin.FaultUnavailable})
	e.mustDo(logical.ReadOperation, "creds/r", nil)

	snap := e.mustDo(logical.ReadOperation, "metrics", nil).Data
	// The config write's verification, then a 503 and its retry.
	if snap["upstream_requests"] != uint64(3) || snap["tokens_minted"] != uint64(2) || snap["upstream_failures"] != uint64(1) {
		t.Errorf("metrics = %v", snap)
	}
	if got := snap["failures_by_kind"].(map[string]any)["server_error"]; got != uint64(1) {
		t.Errorf("failures_by_kind = %v, want one server_error", snap["failures_by_kind"])
	}
	if !strings.Contains(e.logs.String(), `Piwik PRO token request: role=r status=503`) {
		t.Errorf("no debug line for the failed upstream call in:\n%s", e.logs.String())
	}
}
