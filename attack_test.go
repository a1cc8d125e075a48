package piwik

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

// The attacker's tests: a hostile upstream, an operator changing one field,
// two writers at once. Each pins a finding of the security review.

// specialSecret holds JSON-, HTML-, URL- and Go-special characters around an
// alphanumeric core that every encoding keeps verbatim: if the core shows up
// anywhere, some encoding of the secret got through.
const (
	secretCore    = "Zq7xK9mW2vB4nR8t"
	specialSecret = `p"q<r>&s\t/u'v%w+x y` + secretCore + "é\u2028end"
)

// countingServer is a second listener that must receive nothing.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte(`{"token_type":"Bearer","expires_in":1800,"access_token":"a.b.c"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestAttack_redirectsAreNeverFollowed(t *testing.T) {
	for _, status := range []int{301, 302, 303, 307, 308} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			collector, hits := countingServer(t)
			client, piwik := newTestClient(t, 5*time.Second, 3)
			piwik.SetFault(standin.Fault{Kind: standin.FaultRedirect, Status: status,
				Location: collector.URL + "/auth/token?leak=" + testClientSecret})
			_, err := client.mint(t.Context(), testCreds, nil)
			upErr, ok := asUpstreamError(err)
			if !ok || upErr.Kind != kindRedirect || upErr.Status != status {
				t.Fatalf("err = %v, want a redirect error for %d", err, status)
			}
			host := strings.TrimPrefix(collector.URL, "http://")
			if msg := err.Error(); !strings.Contains(msg, fmt.Sprint(status)) || !strings.Contains(msg, host) ||
				strings.Contains(msg, "leak") || strings.Contains(msg, testClientSecret) {
				t.Errorf("error %q: want the status and Location host, not its path or query", msg)
			}
			if hits.Load() != 0 || piwik.TokenRequests() != 1 {
				t.Errorf("second listener got %d requests, the token endpoint %d; want 0 and 1", hits.Load(), piwik.TokenRequests())
			}
		})
	}
}

func TestAttack_redirectThroughTheEngineIsA502(t *testing.T) {
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

func TestAttack_urlOrCAChangeNeedsTheSecret(t *testing.T) {
	collector, hits := countingServer(t)
	for _, tc := range []struct {
		name string
		data map[string]any
	}{
		{"url by patch", map[string]any{"url": collector.URL}},
		{"url by update", map[string]any{"url": collector.URL, "client_id": testClientID}},
		{"ca_cert by patch", map[string]any{"ca_cert": testCACert(t)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.writeConfig(nil)
			before := e.snapshot()
			var op logical.Operation = logical.PatchOperation
			if strings.Contains(tc.name, "update") {
				op = logical.UpdateOperation
			}
			status, msg := statusOf(e.do(op, "config", tc.data))
			if status != http.StatusBadRequest || !strings.Contains(msg, "client_secret: required when url or ca_cert changes") {
				t.Errorf("write = %d %q, want 400 asking for client_secret", status, msg)
			}
			if after := e.snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("storage changed")
			}
		})
	}
	if hits.Load() != 0 {
		t.Errorf("the new url received %d requests", hits.Load())
	}
}

// testCACert returns a PEM certificate (httptest's) that validates.
func testCACert(t *testing.T) string {
	t.Helper()
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
}

func TestAttack_roleSecretIsBoundToItsURL(t *testing.T) {
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

func TestAttack_legacyRolesAreBoundAtInitialize(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	legacy := `{"ttl":0,"client_id":"` + roleClientID + `","client_secret":"` + roleClientSecret + `","token_reuse":false}`
	if err := e.storage.Put(context.Background(), &logical.StorageEntry{Key: "roles/legacy", Value: []byte(legacy)}); err != nil {
		t.Fatal(err)
	}
	status, _ := statusOf(e.do(logical.ReadOperation, "creds/legacy", nil))
	if status != http.StatusConflict {
		t.Errorf("an unbound legacy role minted (status %d) before Initialize bound it", status)
	}
	if err := e.b.Initialize(context.Background(), &logical.InitializationRequest{Storage: e.storage}); err != nil {
		t.Fatal(err)
	}
	if resp := e.mustDo(logical.ReadOperation, "creds/legacy", nil); resp.Data["sub"] != "7d3a2b10-reporting" {
		t.Errorf("legacy role after Initialize acts for %v", resp.Data["sub"])
	}
}

// pausingStorage pauses the first Get of one key after it has read the
// entry, until released, so that a test can interleave a write.
type pausingStorage struct {
	logical.Storage
	mu      sync.Mutex
	key     string
	reached chan struct{}
	release chan struct{}
}

func (p *pausingStorage) arm(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.key, p.reached, p.release = key, make(chan struct{}), make(chan struct{})
}

func (p *pausingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	entry, err := p.Storage.Get(ctx, key)
	p.mu.Lock()
	armed := p.key != "" && p.key == key
	if armed {
		p.key = ""
	}
	reached, release := p.reached, p.release
	p.mu.Unlock()
	if armed {
		close(reached)
		<-release
	}
	return entry, err
}

func TestAttack_reuseNeverServesATokenOfReplacedCredentials(t *testing.T) {
	e := newEnvWithRole(t, "shared", map[string]any{"token_reuse": true, "client_id": testClientID, "client_secret": testClientSecret})
	paused := &pausingStorage{Storage: e.storage}
	e.storage = paused

	// A reader reads the role (admin credentials) from storage and stalls
	// there.
	e.b.resetRole("shared")
	paused.arm("roles/shared")
	done := make(chan *logical.Response)
	go func() {
		resp, _ := e.do(logical.ReadOperation, "creds/shared", nil)
		done <- resp
	}()
	<-paused.reached
	// Meanwhile the role moves to the read-only user.
	e.mustDo(logical.UpdateOperation, "roles/shared", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
	close(paused.release)
	<-done // it raced the write: either identity is fine for it

	for i := range 3 {
		if sub := e.mustDo(logical.ReadOperation, "creds/shared", nil).Data["sub"]; sub != "7d3a2b10-reporting" {
			t.Fatalf("read %d after the write acts for %v, want the new credentials' user", i, sub)
		}
	}
}

func TestAttack_reuseUnderLoadFollowsEveryCredentialSwitch(t *testing.T) {
	e := newEnvWithRole(t, "shared", map[string]any{"token_reuse": true, "client_id": testClientID, "client_secret": testClientSecret})
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				_, _ = e.do(logical.ReadOperation, "creds/shared", nil)
			}
		}()
	}
	identities := []struct{ id, secret, sub string }{
		{roleClientID, roleClientSecret, "7d3a2b10-reporting"},
		{testClientID, testClientSecret, "0f9b8e1c-admin"},
	}
	for i := range 20 {
		want := identities[i%2]
		e.mustDo(logical.UpdateOperation, "roles/shared", map[string]any{"client_id": want.id, "client_secret": want.secret})
		if sub := e.mustDo(logical.ReadOperation, "creds/shared", nil).Data["sub"]; sub != want.sub {
			t.Errorf("switch %d: the next read acts for %v, want %s", i, sub, want.sub)
		}
	}
	stop()
	wg.Wait()
}

func TestAttack_concurrentConfigWritesLoseNothing(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	paused := &pausingStorage{Storage: e.storage}
	e.storage = paused

	// Writer A (a patch of request_timeout) has read the config and is
	// about to verify; writer B rotates to another credential.
	paused.arm("config")
	aDone := make(chan error)
	go func() {
		resp, err := e.do(logical.PatchOperation, "config", map[string]any{"request_timeout": "20s"})
		if err == nil && resp.IsError() {
			err = resp.Error()
		}
		aDone <- err
	}()
	<-paused.reached
	bDone := make(chan error)
	go func() {
		resp, err := e.do(logical.UpdateOperation, "config", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
		if err == nil && resp.IsError() {
			err = resp.Error()
		}
		bDone <- err
	}()
	// Without a lock B reads the same old config now; with it, B waits.
	// Either way A goes on after a moment; what is stored decides.
	select {
	case err := <-bDone:
		t.Fatalf("writer B finished while writer A held the config (err=%v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(paused.release)
	if err := <-aDone; err != nil {
		t.Fatalf("writer A: %v", err)
	}
	if err := <-bDone; err != nil {
		t.Fatalf("writer B: %v", err)
	}
	cfg := e.mustDo(logical.ReadOperation, "config", nil).Data
	if cfg["request_timeout"] != int64(20) || cfg["client_id"] != roleClientID {
		t.Errorf("config after two concurrent writes = %v; want request_timeout 20 and client_id %s", cfg, roleClientID)
	}
}

func TestAttack_concurrentRoleWritesLoseNothing(t *testing.T) {
	e := newEnvWithRole(t, "r", nil)
	var wg sync.WaitGroup
	for i, data := range []map[string]any{
		{"ttl": "5m"},
		{"client_id": roleClientID, "client_secret": roleClientSecret},
		{"token_reuse": true},
		{"leased": false},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := e.do(logical.PatchOperation, "roles/r", data); err != nil || resp.IsError() {
				t.Errorf("patch %d: %v %v", i, err, errorText(resp))
			}
		}()
	}
	wg.Wait()
	role := e.mustDo(logical.ReadOperation, "roles/r", nil).Data
	if role["ttl"] != int64(300) || role["client_id"] != roleClientID || role["token_reuse"] != true || role["leased"] != false {
		t.Errorf("role after four concurrent patches = %v; a change was lost", role)
	}
}

func TestAttack_echoedSecretsAreRedacted(t *testing.T) {
	modes := []string{standin.EchoBody, standin.EchoRaw, standin.EchoJSON, standin.EchoURL, standin.EchoQuoted, standin.EchoTokenType, standin.EchoLocation}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			e.piwik.AddCredential(standin.Credential{ClientID: "special", ClientSecret: specialSecret})
			e.rememberSecret(specialSecret)
			e.rememberSecret(secretCore)
			e.writeConfig(map[string]any{"client_id": "special", "client_secret": specialSecret, "max_retries": 1})
			e.mustDo(logical.CreateOperation, "roles/r", nil)
			e.mustDo(logical.CreateOperation, "roles/own", map[string]any{"client_id": "special", "client_secret": specialSecret})
			e.piwik.SetFault(standin.Fault{Kind: standin.FaultEcho, Echo: mode})

			for _, r := range []struct {
				op   logical.Operation
				path string
				data map[string]any
			}{
				{logical.ReadOperation, "creds/r", nil},
				{logical.ReadOperation, "creds/own", nil},
				{logical.ReadOperation, "check", nil},
				{logical.UpdateOperation, "config", map[string]any{"client_secret": specialSecret}},
				{logical.UpdateOperation, "roles/own", map[string]any{"client_secret": specialSecret}},
			} {
				resp, err := e.do(r.op, r.path, r.data)
				if status, _ := statusOf(resp, err); status == http.StatusOK && r.op == logical.ReadOperation && r.path != "check" {
					t.Errorf("%s %s succeeded against a hostile echo", r.op, r.path)
				}
				e.assertNoSecret(string(r.op)+" "+r.path, responseText(t, resp, err))
			}
		})
	}
}

func TestAttack_typedSecretIsRefusedWithoutEcho(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	e.rememberSecret("typed-secret-" + secretCore)
	for _, value := range []any{
		map[string]any{"v": "typed-secret-" + secretCore},
		[]any{"typed-secret-" + secretCore},
		12345678,
		true,
	} {
		for _, path := range []string{"config", "roles/r"} {
			for _, field := range []string{"client_secret", "client_id"} {
				before := e.snapshot()
				data := map[string]any{field: value}
				req := &logical.Request{Operation: logical.UpdateOperation, Path: path, Data: data, Storage: e.storage}
				_, _, existErr := e.b.HandleExistenceCheck(context.Background(), req)
				resp, err := e.do(logical.UpdateOperation, path, data)
				status, msg := statusOf(resp, err)
				if status != http.StatusBadRequest || !strings.Contains(msg, field+": must be a string, got") {
					t.Errorf("%s %s=%T: %d %q, want 400 naming the field and type", path, field, value, status, msg)
				}
				if existErr == nil || !strings.Contains(existErr.Error(), field+": must be a string") {
					t.Errorf("existence check of %s %s=%T: %v, want the same refusal", path, field, value, existErr)
				}
				e.assertNoSecret("refusal", msg)
				if existErr != nil {
					e.assertNoSecret("existence check", existErr.Error())
				}
				if fmt.Sprint(e.snapshot()) != fmt.Sprint(before) {
					t.Errorf("%s: storage changed", path)
				}
			}
		}
	}
}

func TestAttack_hungAttemptIsRetriedWithinTheTimeout(t *testing.T) {
	client, piwik := newTestClient(t, 3*time.Second, 2)
	piwik.FailNext(1, standin.Fault{Kind: standin.FaultHang})
	if _, err := client.mint(t.Context(), testCreds, nil); err != nil {
		t.Fatalf("an upstream that hangs once, then answers: %v", err)
	}
	if got := piwik.TokenRequests(); got != 2 {
		t.Errorf("%d requests, want 2 (the hung one and its retry)", got)
	}
}

func TestAttack_hugeHeadersAreRefused(t *testing.T) {
	client, piwik := newTestClient(t, 5*time.Second, 0)
	piwik.SetFault(standin.Fault{Kind: standin.FaultHugeHeader})
	_, err := client.mint(t.Context(), testCreds, nil)
	if upErr, ok := asUpstreamError(err); !ok || upErr.Kind != kindBadReply || !strings.Contains(err.Error(), "headers are larger than 64 KiB") {
		t.Fatalf("err = %v, want an unusable reply because of its headers", err)
	}
}

func TestAttack_writeVerificationFailuresMapToUpstreamStatuses(t *testing.T) {
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

func TestAttack_nullResetsEveryFieldToItsDefault(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"request_timeout": "30s", "max_retries": 7, "verify_credentials": false})
	e.mustDo(logical.PatchOperation, "config", map[string]any{"request_timeout": nil, "max_retries": nil, "verify_credentials": nil})
	cfg := e.mustDo(logical.ReadOperation, "config", nil).Data
	if cfg["request_timeout"] != int64(10) || cfg["max_retries"] != 3 || cfg["verify_credentials"] != true {
		t.Errorf("config after nulls = %v, want the defaults 10, 3, true", cfg)
	}
	for _, field := range []string{"url", "client_id", "client_secret"} {
		before := e.snapshot()
		status, msg := statusOf(e.do(logical.PatchOperation, "config", map[string]any{field: nil}))
		if status != http.StatusBadRequest || !strings.Contains(msg, field) {
			t.Errorf("null %s: %d %q, want 400 naming it (it has no default)", field, status, msg)
		}
		if fmt.Sprint(e.snapshot()) != fmt.Sprint(before) {
			t.Errorf("null %s changed storage", field)
		}
	}

	e.mustDo(logical.CreateOperation, "roles/r", map[string]any{"ttl": "5m", "token_reuse": true, "reuse_min_remaining": "60s", "leased": false,
		"client_id": roleClientID, "client_secret": roleClientSecret})
	e.mustDo(logical.PatchOperation, "roles/r", map[string]any{"ttl": nil, "token_reuse": nil, "reuse_min_remaining": nil, "leased": nil})
	role := e.mustDo(logical.ReadOperation, "roles/r", nil).Data
	if role["ttl"] != int64(0) || role["token_reuse"] != false || role["reuse_min_remaining"] != int64(0) || role["leased"] != true {
		t.Errorf("role after nulls = %v, want the defaults", role)
	}
	if role["client_id"] != roleClientID {
		t.Errorf("nulls of other fields dropped the role's credentials")
	}
	if status, _ := statusOf(e.do(logical.PatchOperation, "roles/r", map[string]any{"client_secret": nil})); status != http.StatusBadRequest {
		t.Errorf("null client_secret alone: %d, want 400", status)
	}
	e.mustDo(logical.PatchOperation, "roles/r", map[string]any{"client_id": nil})
	if role := e.mustDo(logical.ReadOperation, "roles/r", nil).Data; role["own_credentials"] != false {
		t.Errorf("null client_id: the role kept its credentials: %v", role)
	}
}

func TestAttack_internationalHostIsStoredAndDialledAsPunycode(t *testing.T) {
	got, err := normalizeURL("https://BÜCHER.example/piwik/")
	if err != nil || got != "https://xn--bcher-kva.example/piwik" {
		t.Fatalf("normalizeURL = %q, %v; want the punycode host", got, err)
	}
	c, err := newClient(clientOptions{BaseURL: got, Timeout: time.Second})
	if err != nil || c.tokenURL != "https://xn--bcher-kva.example/piwik/auth/token" {
		t.Errorf("dialled %q, want what is stored", c.tokenURL)
	}
	for _, bad := range []string{"https://exa mple.com", "https://a_b.example", "https://\u202eevil.example"} {
		if _, err := normalizeURL(bad); err == nil {
			t.Errorf("normalizeURL(%q) accepted", bad)
		}
	}
}

func TestAttack_corruptedRoleIsReportedAndReplaceable(t *testing.T) {
	e := newEnvWithRole(t, "good", nil)
	if err := e.storage.Put(context.Background(), &logical.StorageEntry{Key: "roles/bad", Value: []byte(`{"ttl":"` + testClientSecret)}); err != nil {
		t.Fatal(err)
	}
	status, report := e.check()
	roles := report["roles"].(map[string]any)
	bad, good := roles["bad"].(map[string]any), roles["good"].(map[string]any)
	if status != http.StatusInternalServerError || bad["ok"] != false || !strings.Contains(bad["error"].(string), "does not decode") || good["ok"] != true {
		t.Errorf("check = %d %v, want the corrupted role reported and the others checked", status, report)
	}
	if status, msg := statusOf(e.do(logical.ReadOperation, "creds/bad", nil)); status != http.StatusInternalServerError || !strings.Contains(msg, "write it again") {
		t.Errorf("creds of a corrupted role: %d %q", status, msg)
	}
	if status, _ := statusOf(e.do(logical.PatchOperation, "roles/bad", map[string]any{"ttl": "1m"})); status != http.StatusConflict {
		t.Errorf("patch of a corrupted role: %d, want 409 (a patch cannot apply to what does not decode)", status)
	}
	e.mustDo(logical.UpdateOperation, "roles/bad", map[string]any{"ttl": "1m"})
	if role := e.mustDo(logical.ReadOperation, "roles/bad", nil).Data; role["ttl"] != int64(60) {
		t.Errorf("full write did not replace the corrupted role: %v", role)
	}
}

func TestAttack_roleCredentialRules(t *testing.T) {
	e := newEnvWithRole(t, "r", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
	for _, tc := range []struct {
		data map[string]any
		want string
	}{
		{map[string]any{"client_id": "someone-else"}, "client_secret: required when client_id changes"},
		{map[string]any{"client_secret": ""}, "client_secret: must not be empty"},
		{map[string]any{"client_id": "", "client_secret": "x"}, `client_secret: not allowed with client_id=""`},
	} {
		if status, msg := statusOf(e.do(logical.PatchOperation, "roles/r", tc.data)); status != http.StatusBadRequest || !strings.Contains(msg, tc.want) {
			t.Errorf("patch %v: %d %q, want 400 %q", tc.data, status, msg, tc.want)
		}
	}
	e.mustDo(logical.PatchOperation, "roles/r", map[string]any{"client_id": roleClientID}) // unchanged: fine
	e.mustDo(logical.CreateOperation, "roles/plain", nil)
	if status, msg := statusOf(e.do(logical.PatchOperation, "roles/plain", map[string]any{"client_secret": "s"})); status != http.StatusBadRequest || !strings.Contains(msg, "client_id: required") {
		t.Errorf("secret alone on a role without client_id: %d %q", status, msg)
	}
}
