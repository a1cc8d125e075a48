package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// The attacker's view of the engine, through the real Vault: a hostile
// upstream, an operator changing one field, two writers at once.

// collector is a second listener a hostile upstream points at; it must
// never receive anything.
type collector struct {
	srv  *httptest.Server
	hits atomic.Int64
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"token_type":"Bearer","expires_in":1800,"access_token":"x.y.z"}`))
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *collector) requireUntouched(t *testing.T) {
	t.Helper()
	if n := c.hits.Load(); n != 0 {
		t.Errorf("the second listener received %d requests", n)
	}
}

// apiStatus returns the HTTP status and error text of a Vault API error.
func apiStatus(err error) (int, string) {
	var respErr *api.ResponseError
	if errors.As(err, &respErr) {
		return respErr.StatusCode, strings.Join(respErr.Errors, "\n")
	}
	if err != nil {
		return 0, err.Error()
	}
	return http.StatusOK, ""
}

func TestAttackerRedirectsAreNeverFollowed(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	st := env.privateMount(t, "piwik-redirect")
	col := newCollector(t)
	client := v.client(t, v.token)

	for _, status := range []int{301, 302, 303, 307, 308} {
		st.control(t, "fault", map[string]any{"kind": "redirect", "status": status,
			"location": col.srv.URL + "/auth/token?steal=" + st.clientSecret})
		before := st.stats(t).TokenRequests
		secret, err := client.Logical().Read("piwik-redirect/creds/reporting")
		code, msg := apiStatus(err)
		if secret != nil || code != http.StatusBadGateway || !strings.Contains(msg, fmt.Sprintf("HTTP %d", status)) ||
			!strings.Contains(msg, strings.TrimPrefix(col.srv.URL, "http://")) {
			t.Errorf("redirect %d: HTTP %d %q; want 502 naming the status and the Location host", status, code, redact(msg))
		}
		if strings.Contains(msg, "steal") {
			t.Errorf("redirect %d: the error quotes the Location's path or query", status)
		}
		if n := st.stats(t).TokenRequests - before; n != 1 {
			t.Errorf("redirect %d: %d token requests, want 1 (a redirect is not retried)", status, n)
		}
	}
	st.control(t, "fault", map[string]any{"kind": ""})
	col.requireUntouched(t)
}

func TestAttackerURLChangeWithoutTheSecretIsRefused(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	st := env.privateMount(t, "piwik-url")
	col := newCollector(t)

	for _, args := range [][]string{
		{"patch", "piwik-url/config", "url=" + col.srv.URL},
		{"write", "piwik-url/config", "url=" + col.srv.URL, "client_id=" + st.clientID},
	} {
		r := v.run(t, v.token, "", args...)
		if r.exitCode == 0 || !strings.Contains(r.stderr, "client_secret: required when url or ca_cert changes") || !strings.Contains(r.stderr, "Code: 400") {
			t.Errorf("vault %s: exit %d, %s; want a 400 asking for client_secret", strings.Join(args[:2], " "), r.exitCode, redact(r.stderr))
		}
	}
	var cfg struct {
		Data map[string]any `json:"data"`
	}
	decode(t, "config", v.vault(t, "read", "-format=json", "piwik-url/config"), &cfg)
	if cfg.Data["url"] != st.url {
		t.Errorf("url after the refused writes = %v, want %s", cfg.Data["url"], st.url)
	}
	// A role's own secret stays bound to the url it was given for: after
	// the config moves (with its own secret), the role refuses to mint.
	role := addStandinCredential(t, st, "url-role")
	body, _ := json.Marshal(map[string]string{"client_id": role.clientID, "client_secret": role.clientSecret})
	v.vaultAs(t, v.token, string(body), "write", "piwik-url/roles/own", "-")
	other := startStandin(t, testDir(t), "url-other", t.Cleanup)
	v.configure(t, "piwik-url", other)
	_, err := v.client(t, v.token).Logical().Read("piwik-url/creds/own")
	if code, msg := apiStatus(err); code != http.StatusConflict || !strings.Contains(msg, "client_secret again") {
		t.Errorf("creds of a role bound to the old url: HTTP %d %q, want 409 asking for its client_secret again", code, redact(msg))
	}
	if n := other.stats(t).TokenRequests; n != 1 {
		t.Errorf("the new url received %d token requests, want 1 (the config's own verification)", n)
	}
	col.requireUntouched(t)
}

// specialSecret returns a client secret full of JSON-, HTML-, URL- and
// shell-special characters around a random core, and the core: every
// encoding of the secret keeps the core verbatim, so finding it anywhere
// means some encoding of the secret got through.
func specialSecret(t *testing.T) (secret, core string) {
	t.Helper()
	core = randomString(t, 24)
	return `q"<a>&'b\c/d%e+f g` + core + `é`, core
}

func TestAttackerEchoedSecretsLeaveNoTrace(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	st := env.privateMount(t, "piwik-echo")
	special, core := specialSecret(t)
	rememberSecret(t, "special client secret", special)
	rememberSecret(t, "core of the special client secret", core)
	st.control(t, "credentials", map[string]string{"client_id": "echo-special", "client_secret": special})
	body, _ := json.Marshal(map[string]any{"client_id": "echo-special", "client_secret": special, "max_retries": 0})
	v.vaultAs(t, v.token, string(body), "write", "piwik-echo/config", "-")
	roleBody, _ := json.Marshal(map[string]string{"client_id": "echo-special", "client_secret": special})
	v.vaultAs(t, v.token, string(roleBody), "write", "piwik-echo/roles/own", "-")

	client := v.client(t, v.token)
	for _, mode := range []string{"body", "raw", "json", "url", "quoted", "token_type", "location"} {
		st.control(t, "fault", map[string]any{"kind": "echo", "echo": mode})
		var seen []string
		for _, path := range []string{"piwik-echo/creds/reporting", "piwik-echo/creds/own", "piwik-echo/check"} {
			r := v.run(t, v.token, "", "read", path)
			seen = append(seen, r.stdout, r.stderr)
			if path != "piwik-echo/check" && r.exitCode == 0 {
				t.Errorf("echo %s: vault read %s succeeded", mode, path)
			}
		}
		_, err := client.Logical().Write("piwik-echo/roles/own", map[string]any{"client_secret": special})
		if code, _ := apiStatus(err); code == http.StatusOK {
			t.Errorf("echo %s: a role write verified against a hostile echo", mode)
		}
		seen = append(seen, fmt.Sprint(err))
		for _, s := range seen {
			if strings.Contains(s, core) {
				t.Errorf("echo %s: the secret (or its core) reached a reply", mode)
			}
		}
	}
	st.control(t, "fault", map[string]any{"kind": ""})
}

func TestAttackerTypedSecretIsRefusedWithoutEcho(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	client := v.client(t, v.token)
	hidden := "typed-" + randomString(t, 24)
	rememberSecret(t, "typed client secret", hidden)
	for _, value := range []any{map[string]any{"v": hidden}, []any{hidden}} {
		for _, path := range []string{"piwik/config", "piwik/roles/typed"} {
			for _, field := range []string{"client_secret", "client_id"} {
				_, err := client.Logical().Write(path, map[string]any{field: value})
				code, msg := apiStatus(err)
				if code != http.StatusBadRequest || !strings.Contains(msg, field+": must be a string, got a JSON") {
					t.Errorf("%s %s=%T: HTTP %d %q, want 400 naming the field and its type", path, field, value, code, redact(msg))
				}
				if strings.Contains(msg, hidden) {
					t.Errorf("%s %s=%T: the refusal echoes the value", path, field, value)
				}
			}
		}
	}
	if s, err := client.Logical().Read("piwik/roles/typed"); err != nil || s != nil {
		t.Errorf("a refused write created the role: %v %v", s, err)
	}
}

func TestAttackerReuseRoleFollowsACredentialSwitchAtOnce(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	st := env.privateMount(t, "piwik-switch")
	admin := addStandinCredential(t, st, "switch-admin")
	reader := addStandinCredential(t, st, "switch-reader")
	write := func(cred *standin) {
		body, _ := json.Marshal(map[string]any{"client_id": cred.clientID, "client_secret": cred.clientSecret, "token_reuse": true})
		v.vaultAs(t, v.token, string(body), "write", "piwik-switch/roles/shared", "-")
	}
	write(admin)
	for i := range 3 {
		if got := v.readCreds(t, v.token, "piwik-switch/creds/shared").data["aud"]; got != "Client-Name-switch-admin" {
			t.Fatalf("read %d: aud %v, want the admin credential", i, got)
		}
	}
	write(reader)
	if got := v.readCreds(t, v.token, "piwik-switch/creds/shared").data["aud"]; got != "Client-Name-switch-reader" {
		t.Errorf("the very next read after the switch acts for %v, want the read-only credential", got)
	}
}

func TestAttackerConcurrentConfigWritesLoseNothing(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	st := env.privateMount(t, "piwik-race")
	rotated := addStandinCredential(t, st, "race-rotated")
	// Every verification takes a while, so that the writes overlap.
	st.control(t, "fault", map[string]any{"kind": "slow", "delay_ms": 400})
	t.Cleanup(func() { st.control(t, "fault", map[string]any{"kind": ""}) })

	var wg sync.WaitGroup
	errs := make([]string, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		if r := v.run(t, v.token, "", "patch", "piwik-race/config", "request_timeout=20"); r.exitCode != 0 {
			errs[0] = r.stderr
		}
	}()
	go func() {
		defer wg.Done()
		body, _ := json.Marshal(map[string]string{"client_id": rotated.clientID, "client_secret": rotated.clientSecret})
		if r := v.run(t, v.token, string(body), "write", "piwik-race/config", "-"); r.exitCode != 0 {
			errs[1] = r.stderr
		}
	}()
	wg.Wait()
	for i, e := range errs {
		if e != "" {
			t.Fatalf("writer %d failed: %s", i, redact(e))
		}
	}
	var cfg struct {
		Data map[string]any `json:"data"`
	}
	decode(t, "config", v.vault(t, "read", "-format=json", "piwik-race/config"), &cfg)
	if cfg.Data["request_timeout"] != float64(20) || cfg.Data["client_id"] != rotated.clientID {
		t.Errorf("config after two concurrent writes: request_timeout %v, client_id %v; want 20 and %s",
			cfg.Data["request_timeout"], cfg.Data["client_id"], rotated.clientID)
	}
	if got := v.readCreds(t, v.token, "piwik-race/creds/reporting").data["aud"]; got != "Client-Name-race-rotated" {
		t.Errorf("creds after the rotation act for %v, want the rotated credential", got)
	}
}

// TestAttackerPartialEchoStaysOutOfVaultLogs points a mount at an upstream
// that quotes the client secret cut short in its error. Not even that part
// of the secret reaches the error the reader sees, Vault's server log (the
// plugin's warn line) or the audit log (Vault writes a response's error
// unhashed): a run of 8 of its characters withholds the whole upstream
// text.
func TestAttackerPartialEchoStaysOutOfVaultLogs(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	secret := "rv-" + randomString(t, 29)
	rememberSecret(t, "partial-echo client secret", secret)
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
		if strings.Contains(string(serverLog), msgMintFailed) && strings.Contains(string(auditLog), "piwik-echo/creds/r") {
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
