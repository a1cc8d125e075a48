package piwik

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

func TestCreds_leaseMatchesExpiresIn(t *testing.T) {
	for _, lifetime := range []time.Duration{30 * time.Minute, 10 * time.Minute} {
		t.Run(lifetime.String(), func(t *testing.T) {
			e := newEnv(t)
			e.piwik.SetLifetime(lifetime)
			e.writeConfig(nil)
			e.mustDo(logical.CreateOperation, "roles/reporting", nil)

			resp := e.mustDo(logical.ReadOperation, "creds/reporting", nil)
			// Truncated, never rounded up: a second of it has begun to pass.
			if resp.Secret.TTL != lifetime && resp.Secret.TTL != lifetime-time.Second {
				t.Errorf("lease TTL = %s, want expires_in %s or a second less", resp.Secret.TTL, lifetime)
			}
			if resp.Secret.Renewable {
				t.Errorf("lease is renewable; Piwik PRO tokens cannot be extended")
			}
			if len(resp.Warnings) != 0 {
				t.Errorf("unexpected warnings: %v", resp.Warnings)
			}
			if !e.piwik.TokenValid(resp.Data["access_token"].(string)) {
				t.Errorf("access_token is not a live token of the stand-in")
			}
			expiresAt, err := time.Parse(time.RFC3339, resp.Data["expires_at"].(string))
			if err != nil || expiresAt.Location() != time.UTC {
				t.Fatalf("expires_at %q is not RFC 3339 UTC: %v", resp.Data["expires_at"], err)
			}
			if d := time.Until(expiresAt); d < lifetime-5*time.Second || d > lifetime {
				t.Errorf("expires_at is %s away, want about %s", d, lifetime)
			}
		})
	}
}

func TestCreds_dataNamesTheIdentity(t *testing.T) {
	e := newEnvWithRole(t, "r", nil)
	resp := e.mustDo(logical.ReadOperation, "creds/r", nil)

	for field, want := range map[string]any{
		"token_type": "Bearer",
		"sub":        "0f9b8e1c-admin",
		"org":        "default",
		"aud":        "Client-Name-" + testClientID,
	} {
		if got := resp.Data[field]; got != want {
			t.Errorf("%s = %v, want %v", field, got, want)
		}
	}
	if resp.Secret.InternalData["secret_type"] != secretTypeToken {
		t.Errorf("secret type = %v, want %s", resp.Secret.InternalData["secret_type"], secretTypeToken)
	}
	if _, ok := resp.Secret.InternalData["access_token"]; ok {
		t.Errorf("the token is kept in the lease's internal data")
	}
}

func TestCreds_roleCredentialsOverrideConfig(t *testing.T) {
	e := newEnvWithRole(t, "reporting", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
	resp := e.mustDo(logical.ReadOperation, "creds/reporting", nil)
	if got := resp.Data["sub"]; got != "7d3a2b10-reporting" {
		t.Errorf("token acts for %v, want the role's user 7d3a2b10-reporting", got)
	}
}

func TestCreds_leaseFollowsShorterJWTExp(t *testing.T) {
	e := newEnvWithRole(t, "r", nil)
	e.piwik.SetFault(standin.Fault{Kind: standin.FaultShortJWT})

	resp := e.mustDo(logical.ReadOperation, "creds/r", nil)
	if ttl := resp.Secret.TTL; ttl > 300*time.Second || ttl < 295*time.Second {
		t.Errorf("lease TTL = %s, want the JWT's exp (~300s), not expires_in", ttl)
	}
	if !containsWarning(resp, "exp") {
		t.Errorf("no warning about exp: %v", resp.Warnings)
	}
}

func TestCreds_capsWithWarnings(t *testing.T) {
	t.Run("role ttl", func(t *testing.T) {
		e := newEnvWithRole(t, "r", map[string]any{"ttl": "10m"})
		resp := e.mustDo(logical.ReadOperation, "creds/r", nil)
		if resp.Secret.TTL != 10*time.Minute || !containsWarning(resp, "role's ttl") {
			t.Errorf("TTL = %s warnings = %v; want 10m and a role ttl warning", resp.Secret.TTL, resp.Warnings)
		}
	})
	t.Run("mount max", func(t *testing.T) {
		e := newEnvWithRole(t, "r", map[string]any{"ttl": "10m"}, withMountMaxTTL(5*time.Minute))
		resp := e.mustDo(logical.ReadOperation, "creds/r", nil)
		if resp.Secret.TTL != 5*time.Minute || !containsWarning(resp, "max lease TTL") {
			t.Errorf("TTL = %s warnings = %v; want 5m and a mount max warning", resp.Secret.TTL, resp.Warnings)
		}
	})
	t.Run("cap longer than the token", func(t *testing.T) {
		e := newEnvWithRole(t, "r", map[string]any{"ttl": "2h"})
		resp := e.mustDo(logical.ReadOperation, "creds/r", nil)
		if resp.Secret.TTL < 30*time.Minute-time.Second || resp.Secret.TTL > 30*time.Minute || len(resp.Warnings) != 0 {
			t.Errorf("TTL = %s warnings = %v; want the token's 30m, no warning", resp.Secret.TTL, resp.Warnings)
		}
	})
}

func TestCreds_unknownRoleAndMissingConfig(t *testing.T) {
	e := newEnv(t)
	resp, _ := e.do(logical.ReadOperation, "creds/ghost", nil)
	if !strings.Contains(errorText(resp), `unknown role "ghost"`) {
		t.Errorf("unknown role: %q", errorText(resp))
	}
	e.mustDo(logical.CreateOperation, "roles/r", nil)
	resp, _ = e.do(logical.ReadOperation, "creds/r", nil)
	if !strings.Contains(errorText(resp), "not configured") {
		t.Errorf("missing config: %q", errorText(resp))
	}
}

// TestCreds_upstreamFailures pins the error and HTTP status each upstream
// failure gives a reader, and that none of them leaks anything.
func TestCreds_upstreamFailures(t *testing.T) {
	cases := []struct {
		name       string
		fault      standin.Fault
		timeout    string
		wantStatus int
		want       string
	}{
		{"credentials rejected", standin.Fault{}, "", http.StatusBadGateway, "invalid_client"},
		{"no license", standin.Fault{Kind: standin.FaultNoLicense}, "", http.StatusBadGateway, "HTTP 402"},
		{"rate limited", standin.Fault{Kind: standin.FaultRateLimit, RetryAfter: 90}, "", http.StatusTooManyRequests, "try again after 1m30s"},
		{"server error page", standin.Fault{Kind: standin.FaultBadGateway}, "", http.StatusBadGateway, "HTML page"},
		{"hang", standin.Fault{Kind: standin.FaultHang}, "1s", http.StatusGatewayTimeout, "timed out"},
		{"trickle", standin.Fault{Kind: standin.FaultTrickle, Delay: 300 * time.Millisecond}, "1s", http.StatusGatewayTimeout, "timed out"},
		{"huge reply", standin.Fault{Kind: standin.FaultHuge}, "", http.StatusBadGateway, "larger than"},
		{"HTML reply", standin.Fault{Kind: standin.FaultHTML}, "", http.StatusBadGateway, "HTML page"},
		{"truncated JSON", standin.Fault{Kind: standin.FaultTruncated}, "", http.StatusBadGateway, "truncated"},
		{"no access_token", standin.Fault{Kind: standin.FaultNoAccessToken}, "", http.StatusBadGateway, "no access_token"},
		{"zero expires_in", standin.Fault{Kind: standin.FaultZeroExpiry}, "", http.StatusBadGateway, "expires_in"},
		{"negative expires_in", standin.Fault{Kind: standin.FaultNegativeExpiry}, "", http.StatusBadGateway, "expires_in"},
		{"absurd expires_in", standin.Fault{Kind: standin.FaultAbsurdExpiry}, "", http.StatusBadGateway, "expires_in"},
		{"wrong token_type", standin.Fault{Kind: standin.FaultWrongTokenType}, "", http.StatusBadGateway, "token_type"},
		{"expired JWT", standin.Fault{Kind: standin.FaultExpiredJWT}, "", http.StatusBadGateway, "already passed"},
		{"connection closed", standin.Fault{Kind: standin.FaultCloseConnection}, "", http.StatusBadGateway, "unreachable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			extra := map[string]any{"max_retries": 0}
			if tc.timeout != "" {
				extra["request_timeout"] = tc.timeout
			}
			e.writeConfig(extra)
			if tc.name == "credentials rejected" {
				e.piwik.AddCredential(standin.Credential{ClientID: testClientID, ClientSecret: "rotated-in-the-ui"})
			}
			e.mustDo(logical.CreateOperation, "roles/r", nil)
			e.piwik.SetFault(tc.fault)

			resp, err := e.do(logical.ReadOperation, "creds/r", nil)
			if resp != nil && resp.Secret != nil {
				t.Fatalf("a lease was issued")
			}
			var coded logical.HTTPCodedError
			if !errors.As(err, &coded) {
				t.Fatalf("err = %v (resp %v), want a coded error", err, errorText(resp))
			}
			if coded.Code() != tc.wantStatus || !strings.Contains(coded.Error(), tc.want) {
				t.Errorf("got %d %q, want %d and %q", coded.Code(), coded.Error(), tc.wantStatus, tc.want)
			}
			if strings.Contains(coded.Error(), "<") {
				t.Errorf("error carries markup: %q", coded.Error())
			}
			e.assertNoSecret("error", coded.Error())
		})
	}
}

func TestCreds_concurrentReadsAreSafe(t *testing.T) {
	e := newEnvWithRole(t, "r", nil)
	before := e.piwik.TokenRequests()

	const readers = 1000
	distinct := make(map[string]bool, readers)
	for _, resp := range e.readCreds("r", readers) {
		distinct[resp.Data["access_token"].(string)] = true
	}
	if len(distinct) != readers {
		t.Errorf("%d distinct tokens for %d reads without token_reuse", len(distinct), readers)
	}
	if got := e.piwik.TokenRequests() - before; got != readers {
		t.Errorf("%d token requests for %d reads, want one each", got, readers)
	}
}

func TestCreds_revokeAlwaysSucceeds(t *testing.T) {
	e := newEnvWithRole(t, "r", nil)
	resp := e.mustDo(logical.ReadOperation, "creds/r", nil)

	// Revoke works even when the config, the role and Piwik PRO are gone.
	e.mustDo(logical.DeleteOperation, "roles/r", nil)
	e.mustDo(logical.DeleteOperation, "config", nil)
	e.server.Close()
	revoked, err := e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RevokeOperation, Secret: resp.Secret, Storage: e.storage,
	})
	if err != nil || revoked.IsError() {
		t.Errorf("revoke failed: %v %v", err, errorText(revoked))
	}
}

func TestCreds_unleasedRoleReturnsTokenWithoutLease(t *testing.T) {
	e := newEnvWithRole(t, "shared", map[string]any{"leased": false, "token_reuse": true, "ttl": "10m"})
	role := e.mustDo(logical.ReadOperation, "roles/shared", nil)
	if role.Data["leased"] != false {
		t.Fatalf("role read: leased = %v, want false", role.Data["leased"])
	}

	before := e.piwik.TokensIssued()
	first := e.mustDo(logical.ReadOperation, "creds/shared", nil)
	second := e.mustDo(logical.ReadOperation, "creds/shared", nil)
	for _, resp := range []*logical.Response{first, second} {
		if resp.Secret != nil {
			t.Fatalf("unleased read returned a lease: %+v", resp.Secret)
		}
		if !e.piwik.TokenValid(resp.Data["access_token"].(string)) {
			t.Errorf("access_token is not a live token of the stand-in")
		}
		ttl, ok := resp.Data["ttl"].(int64)
		if !ok || ttl <= 0 || ttl > int64((10*time.Minute).Seconds()) {
			t.Errorf("ttl = %#v, want whole seconds in (0, 600] (the role's ttl caps it)", resp.Data["ttl"])
		}
		for _, field := range []string{"token_type", "expires_at", "sub", "org", "aud"} {
			if resp.Data[field] == nil {
				t.Errorf("unleased read lacks %s", field)
			}
		}
	}
	if first.Data["access_token"] != second.Data["access_token"] {
		t.Errorf("token_reuse with leased=false minted twice")
	}
	if n := e.piwik.TokensIssued() - before; n != 1 {
		t.Errorf("Piwik PRO issued %d tokens for two reuse reads, want 1", n)
	}
}

func TestCreds_leasedDefaultsToTrue(t *testing.T) {
	e := newEnvWithRole(t, "r", nil)
	if got := e.mustDo(logical.ReadOperation, "roles/r", nil).Data["leased"]; got != true {
		t.Errorf("leased = %v on a role written without it, want true", got)
	}
	if resp := e.mustDo(logical.ReadOperation, "creds/r", nil); resp.Secret == nil || resp.Data["ttl"] != nil {
		t.Errorf("default role: want a lease and no ttl field, got secret=%v ttl=%v", resp.Secret, resp.Data["ttl"])
	}
}

// A redirect from Piwik PRO is a 502 naming it, and its target receives
// nothing.
func TestCreds_redirectThroughTheEngineIsA502(t *testing.T) {
	collector, hits := countingServer(t)
	e := newEnvWithRole(t, "r", nil)
	e.piwik.SetFault(standin.Fault{Kind: standin.FaultRedirect, Status: 307, Location: collector.URL + "/auth/token"})
	status, msg := statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	if status != http.StatusBadGateway || !strings.Contains(msg, "redirect") {
		t.Errorf("creds = %d %q, want 502 naming the redirect", status, msg)
	}
	if hits.Load() != 0 {
		t.Errorf("the redirect target received %d requests", hits.Load())
	}
}

// Through the engine too, a token whose exp is a minute away gets a lease of
// at most a minute, whatever its expires_in says.
func TestCreds_leaseFollowsExpThroughTheEngine(t *testing.T) {
	var exp atomic.Int64
	e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
		tok := jwtWith(base64.RawURLEncoding, `{"typ":"JWT","alg":"HS256"}`, fmt.Sprintf(`{"sub":"u","exp":%d}`, exp.Load()))
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, reply("Bearer", 1800, tok))
	}, nil)
	exp.Store(time.Now().Unix() + 60)
	resp := e.mustDo(logical.ReadOperation, "creds/r", nil)
	t.Logf("lease ttl %s, expires_at %v, token exp in 60s", resp.Secret.TTL, resp.Data["expires_at"])
	if resp.Secret.TTL > time.Minute {
		t.Errorf("lease %s for a token whose exp is in 60s", resp.Secret.TTL)
	}
}

func TestLeaseTTL_isTruncatedNeverRoundedUp(t *testing.T) {
	tok := &token{ExpiresIn: time.Minute, Lifetime: time.Minute, ExpiresAt: testNow.Add(1600 * time.Millisecond)}
	if ttl, _ := leaseTTL(tok, testNow, 0, 0); ttl != time.Second {
		t.Errorf("1.6s left gives a %s lease, want 1s", ttl)
	}
	tok.ExpiresAt = testNow.Add(600 * time.Millisecond)
	if ttl, _ := leaseTTL(tok, testNow, 0, 0); ttl != 0 {
		t.Errorf("0.6s left gives a %s lease, want 0 (refused by the caller)", ttl)
	}
}

func TestLeaseTTL(t *testing.T) {
	tok := &token{ExpiresIn: 30 * time.Minute, Lifetime: 30 * time.Minute, ExpiresAt: testNow.Add(30 * time.Minute)}
	cases := []struct {
		name           string
		roleTTL, max   time.Duration
		want           time.Duration
		wantWarnings   int
		warningContent string
	}{
		{"no caps", 0, 0, 30 * time.Minute, 0, ""},
		{"role ttl", 10 * time.Minute, 0, 10 * time.Minute, 1, "role's ttl"},
		{"mount max", 0, 5 * time.Minute, 5 * time.Minute, 1, "max lease TTL"},
		{"both, mount smaller", 10 * time.Minute, 5 * time.Minute, 5 * time.Minute, 2, "max lease TTL"},
		{"caps above the token", time.Hour, 2 * time.Hour, 30 * time.Minute, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ttl, warnings := leaseTTL(tok, testNow, tc.roleTTL, tc.max)
			if ttl != tc.want || len(warnings) != tc.wantWarnings {
				t.Fatalf("ttl = %s, warnings = %v; want %s and %d warnings", ttl, warnings, tc.want, tc.wantWarnings)
			}
			if tc.warningContent != "" && !strings.Contains(strings.Join(warnings, " "), tc.warningContent) {
				t.Errorf("warnings %v lack %q", warnings, tc.warningContent)
			}
		})
	}
}
