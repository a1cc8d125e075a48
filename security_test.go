package piwik

import (
	"maps"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

// TestSecrets_appearInNoResponseErrorWarningOrLog drives every path under
// every upstream failure mode and checks that no client secret and no token
// shows up anywhere but in the access_token field of the creds read that
// issued it. The env's cleanup also scans everything the backend logged at
// trace level, and the stand-in reports every token it issued, including
// those minted only to verify credentials.
func TestSecrets_appearInNoResponseErrorWarningOrLog(t *testing.T) {
	faults := []standin.FaultKind{
		standin.FaultNone, standin.FaultRateLimit, standin.FaultNoLicense, standin.FaultServerError,
		standin.FaultBadGateway, standin.FaultUnavailable, standin.FaultGatewayTimeout,
		standin.FaultCloseConnection, standin.FaultHang, standin.FaultSlow, standin.FaultTrickle,
		standin.FaultHuge, standin.FaultHTML, standin.FaultTruncated, standin.FaultNoAccessToken,
		standin.FaultZeroExpiry, standin.FaultNegativeExpiry, standin.FaultAbsurdExpiry,
		standin.FaultWrongTokenType, standin.FaultExpiredJWT, standin.FaultShortJWT, standin.FaultBadJWT,
	}
	for _, kind := range faults {
		t.Run(string(kind)+"_", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.writeConfig(map[string]any{"request_timeout": "1s", "max_retries": 1})
			e.mustDo(logical.CreateOperation, "roles/own", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
			e.mustDo(logical.CreateOperation, "roles/shared", map[string]any{"token_reuse": true})
			e.piwik.SetFault(standin.Fault{Kind: kind, Delay: 400 * time.Millisecond, RetryAfter: 30})

			requests := []struct {
				op   logical.Operation
				path string
				data map[string]any
			}{
				{logical.ReadOperation, "creds/own", nil},
				{logical.ReadOperation, "creds/shared", nil},
				{logical.ReadOperation, "creds/shared", nil},
				{logical.UpdateOperation, "config", map[string]any{"client_secret": testClientSecret}},
				{logical.UpdateOperation, "roles/own", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret + "-new"}},
				{logical.ReadOperation, "check", nil},
				{logical.ReadOperation, "metrics", nil},
				{logical.ReadOperation, "config", nil},
				{logical.ReadOperation, "roles/own", nil},
				{logical.ListOperation, "roles/", nil},
			}
			e.rememberSecret(roleClientSecret + "-new")
			for _, r := range requests {
				resp, err := e.do(r.op, r.path, r.data)
				e.assertNoSecret(string(r.op)+" "+r.path, responseText(t, withoutIssuedToken(resp), err))
			}
		})
	}
}

// withoutIssuedToken returns resp without the one field that is meant to
// carry a token.
func withoutIssuedToken(resp *logical.Response) *logical.Response {
	if resp == nil || resp.Data == nil {
		return resp
	}
	copied := *resp
	copied.Data = maps.Clone(resp.Data)
	delete(copied.Data, "access_token")
	return &copied
}
