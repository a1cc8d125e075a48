package piwik

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

func TestFailures_writeVerificationFailuresMapToUpstreamStatuses(t *testing.T) {
	for _, tc := range []struct {
		fault  standin.Fault
		status int
	}{
		{standin.Fault{Kind: standin.FaultRateLimit, RetryAfter: 90}, http.StatusTooManyRequests},
		{standin.Fault{Kind: standin.FaultHang}, http.StatusGatewayTimeout},
		{standin.Fault{Kind: standin.FaultServerError}, http.StatusBadGateway},
		{standin.Fault{Kind: standin.FaultNoLicense}, http.StatusBadGateway},
	} {
		t.Run(string(tc.fault.Kind), func(t *testing.T) {
			e := newEnv(t)
			e.writeConfig(map[string]any{"request_timeout": "1s", "max_retries": 0})
			e.piwik.SetFault(tc.fault)
			for _, w := range []struct {
				path string
				data map[string]any
			}{
				{"config", map[string]any{"client_secret": testClientSecret}},
				{"roles/r", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret}},
			} {
				status, msg := statusOf(e.do(logical.UpdateOperation, w.path, w.data))
				if status != tc.status || !strings.Contains(msg, "nothing was stored") {
					t.Errorf("%s: %d %q, want %d", w.path, status, msg, tc.status)
				}
			}
		})
	}
	e := newEnv(t)
	e.writeConfig(nil)
	if status, _ := statusOf(e.do(logical.UpdateOperation, "roles/r", map[string]any{"client_id": roleClientID, "client_secret": "wrong"})); status != http.StatusBadRequest {
		t.Errorf("rejected role credentials: %d, want 400 (the caller's own bad input)", status)
	}
}
