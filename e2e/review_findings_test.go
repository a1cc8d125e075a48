package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// Findings of an independent review, pinned through the real Vault. Each
// test failed on the code as reviewed and asserts the fixed behaviour; see
// also the TestReview_* unit tests in the root package.

// One 429 with Retry-After: 86400 closed the credential on this node for a
// day, and nothing an operator did through Vault's API short of remounting
// or reloading the plugin lifted it. Now a window is capped (5 minutes) and
// a config write, the operator's deliberate probe, starts the pacing
// afresh.
func TestReviewHugeRetryAfterDoesNotLockTheCredential(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	st := env.privateMount(t, "piwik-lockout")
	client := v.client(t, v.token)

	st.control(t, "fault", map[string]any{"kind": "rate_limit", "retry_after": 86400, "count": 1})
	_, err := client.Logical().Read("piwik-lockout/creds/reporting")
	code, msg := apiStatus(err)
	t.Logf("read during the 429: HTTP %d %s", code, redact(msg))

	// The stand-in answers normally from here on. The window is capped:
	// reads are refused without a request for at most 5 minutes.
	before := st.stats(t).TokenRequests
	_, err = client.Logical().Read("piwik-lockout/creds/reporting")
	code, msg = apiStatus(err)
	if code != http.StatusTooManyRequests || !strings.Contains(msg, "try again after 5m0s") || !strings.Contains(msg, "no request sent") {
		t.Errorf("read inside the window: HTTP %d %s; want a 429 capped at 5m0s, without a request", code, redact(msg))
	}
	// The operator's config write probes, and starts the pacing afresh.
	body, _ := json.Marshal(map[string]string{"url": st.url, "client_id": st.clientID, "client_secret": st.clientSecret})
	if r := v.run(t, v.token, string(body), "write", "piwik-lockout/config", "-"); r.exitCode != 0 {
		t.Errorf("vault write piwik-lockout/config: exit %d %s", r.exitCode, redact(r.stderr))
	}
	if _, err := client.Logical().Read("piwik-lockout/creds/reporting"); err != nil {
		t.Errorf("read after the config write: %s", redact(err.Error()))
	}
	if sent := st.stats(t).TokenRequests - before; sent != 2 {
		t.Errorf("%d token requests since the 429, want 2 (the config write's verification and the read)", sent)
	}
}

// An upstream that quoted the client secret cut short (or split across
// error and error_description) got it, in the clear, into the error the
// reader sees, Vault's server log (the plugin's warn line) and the audit
// log (Vault writes a response's error unhashed). Now any run of 8 of its
// characters withholds the whole upstream text.
func TestReviewPartialEchoStaysOutOfVaultLogs(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	secret := "rv-" + randomString(t, 29)
	rememberSecret(t, "review partial-echo secret", secret)
	prefix := secret[:len(secret)-3]
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct {
			ClientSecret string `json:"client_secret"`
		}
		_ = json.Unmarshal(body, &req)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		cut := req.ClientSecret[:max(len(req.ClientSecret)-3, 0)]
		_, _ = io.WriteString(w, `{"error":"invalid_request","error_description":"client_secret '`+cut+`...' is malformed"}`)
	}))
	t.Cleanup(hostile.Close)

	v.vault(t, "secrets", "enable", "-path=piwik-echo", "-plugin-version="+env.version, pluginName)
	t.Cleanup(func() { v.vault(t, "secrets", "disable", "piwik-echo") })
	body, _ := json.Marshal(map[string]any{"url": hostile.URL, "client_id": "echo-client", "client_secret": secret, "verify_credentials": false})
	v.vaultAs(t, v.token, string(body), "write", "piwik-echo/config", "-")
	v.vault(t, "write", "piwik-echo/roles/r", "ttl=0")
	_, err := v.client(t, v.token).Logical().Read("piwik-echo/creds/r")
	_, msg := apiStatus(err)

	deadline := time.Now().Add(10 * time.Second)
	var serverLog, auditLog []byte
	for time.Now().Before(deadline) {
		serverLog, _ = os.ReadFile(v.proc.logPath)
		auditLog, _ = os.ReadFile(v.auditLog)
		if strings.Contains(string(serverLog), "Piwik PRO did not issue a token") && strings.Contains(string(auditLog), "piwik-echo/creds/r") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	where := map[string]string{"the reader's error": msg, "Vault's server log": string(serverLog), "the audit log": string(auditLog)}
	for name, text := range where {
		if strings.Contains(text, prefix) {
			t.Errorf("%s holds the first %d of the %d characters of the client secret", name, len(prefix), len(secret))
		}
	}
}
