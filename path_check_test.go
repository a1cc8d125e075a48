package piwik

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
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

	// The role's credential is deleted in Piwik PRO: the check says which,
	// with a status a probe sees.
	e.piwik.AddCredential(standin.Credential{ClientID: roleClientID, ClientSecret: "replaced-in-the-ui"})
	status, report := e.check()
	roles = report["roles"].(map[string]any)
	failed := roles["reporting"].(map[string]any)
	if status != http.StatusBadGateway || report["ok"] != false || failed["ok"] != false || !strings.Contains(failed["error"].(string), "invalid_client") {
		t.Errorf("check after the credential changed = %d %v", status, report)
	}
	if roles["plain"].(map[string]any)["ok"] != true {
		t.Errorf("a role on the config's credentials failed: %v", roles["plain"])
	}
}

// check reads piwik/check and returns its HTTP status and report, from a
// plain response (200) or the raw one Vault sends for another status.
func (e *env) check() (int, map[string]any) {
	e.t.Helper()
	resp, err := e.do(logical.ReadOperation, "check", nil)
	if err != nil || resp == nil {
		e.t.Fatalf("check: err=%v resp=%v", err, resp)
	}
	raw, isRaw := resp.Data[logical.HTTPRawBody].(string)
	if !isRaw {
		if resp.IsError() {
			e.t.Fatalf("check: %v", resp.Error())
		}
		return http.StatusOK, resp.Data
	}
	var body struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal([]byte(raw), &body); err != nil {
		e.t.Fatalf("check: raw body is not a Vault response: %v", err)
	}
	return resp.Data[logical.HTTPStatusCode].(int), body.Data
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
