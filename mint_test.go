package piwik

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

func TestMint_failureLogsOnceAtWarnWithoutSecrets(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"max_retries": 1})
	e.mustDo(logical.CreateOperation, "roles/r", nil)
	e.piwik.SetFault(standin.Fault{Kind: standin.FaultUnavailable})
	if status, _ := statusOf(e.do(logical.ReadOperation, "creds/r", nil)); status != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", status)
	}
	logs := e.logs.String()
	warnings := strings.Count(logs, "[WARN]  piwik: Piwik PRO did not issue a token:")
	if warnings != 1 || !strings.Contains(logs, "role=r kind=server_error") || !strings.Contains(logs, "status=503 attempts=2") {
		t.Errorf("%d warn lines for one failed mint of two attempts, want 1 with role, kind, status and attempts:\n%s", warnings, logs)
	}
	// Two failures in a row opened a backoff window: the next read sends
	// nothing and is not logged at warn level again.
	if status, msg := statusOf(e.do(logical.ReadOperation, "creds/r", nil)); status != http.StatusBadGateway || !strings.Contains(msg, "no request sent") {
		t.Fatalf("read inside the backoff window: %d %q", status, msg)
	}
	if n := strings.Count(e.logs.String(), "[WARN]"); n != 1 {
		t.Errorf("%d warn lines after a read the gate refused, want still 1", n)
	}
}
