package piwik

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

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

	// The role's credential is deleted in Piwik PRO, and a minute later the
	// check says which, with a status a probe sees.
	e.piwik.AddCredential(standin.Credential{ClientID: roleClientID, ClientSecret: "replaced-in-the-ui"})
	e.passCheckInterval()
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

// passCheckInterval moves the check memory's clock past checkInterval, so
// that the next check asks Piwik PRO.
func (e *env) passCheckInterval() {
	e.t.Helper()
	e.b.checks.mu.Lock()
	defer e.b.checks.mu.Unlock()
	for fp, r := range e.b.checks.results {
		r.at = r.at.Add(-checkInterval)
		e.b.checks.results[fp] = r
	}
}

func TestCheck_costsOneRequestPerCredentialPerInterval(t *testing.T) {
	e := newEnvWithRole(t, "reporting", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
	e.mustDo(logical.CreateOperation, "roles/plain", nil)
	clock := &fakeClock{now: time.Now()}
	e.b.checks.now = clock.Now

	before := e.piwik.TokenRequests()
	_, first := e.check()
	if got := e.piwik.TokenRequests() - before; got != 2 {
		t.Fatalf("the first check made %d token requests, want 2 (the config's and the role's credential)", got)
	}
	checkedAt := first["config"].(map[string]any)["checked_at"]
	for range 4 {
		clock.advance(10 * time.Second)
		before = e.piwik.TokenRequests()
		status, report := e.check()
		if got := e.piwik.TokenRequests() - before; got != 0 || status != http.StatusOK {
			t.Fatalf("a check within a minute made %d token requests (status %d), want 0", got, status)
		}
		if got := report["config"].(map[string]any)["checked_at"]; got != checkedAt {
			t.Errorf("checked_at %v within the minute, want the first check's %v", got, checkedAt)
		}
	}
	clock.advance(20 * time.Second) // a minute after the first check
	before = e.piwik.TokenRequests()
	e.check()
	if got := e.piwik.TokenRequests() - before; got != 2 {
		t.Errorf("a check a minute later made %d token requests, want 2", got)
	}
}

func TestCheck_isLiveAfterAWriteOrARejectedRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		act  func(e *env)
	}{
		{"config write", func(e *env) { e.writeConfig(map[string]any{"max_retries": 2}) }},
		{"role write", func(e *env) { e.mustDo(logical.UpdateOperation, "roles/plain", map[string]any{"ttl": 60}) }},
		{"a read meets the rejection", func(e *env) {
			if status, _ := statusOf(e.do(logical.ReadOperation, "creds/reporting", nil)); status != http.StatusBadGateway {
				e.t.Fatalf("read of the deleted credential: %d, want 502", status)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWithRole(t, "reporting", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
			e.mustDo(logical.CreateOperation, "roles/plain", nil)
			if status, _ := e.check(); status != http.StatusOK {
				t.Fatalf("first check: %d", status)
			}
			e.piwik.AddCredential(standin.Credential{ClientID: roleClientID, ClientSecret: "replaced-in-the-ui"})
			if status, _ := e.check(); status != http.StatusOK {
				t.Fatalf("a check within the minute asked Piwik PRO anew (status %d): the test proves nothing", status)
			}
			tc.act(e)
			if status, report := e.check(); status != http.StatusBadGateway {
				t.Errorf("check after a %s: %d %v, want the rejection's 502", tc.name, status, report)
			}
		})
	}
}

func TestCheck_pastTheCallersDeadlineTeachesTheGateNothing(t *testing.T) {
	h := newHold()
	e := newEnvWithRole(t, "plain", nil, withHold(h))
	before := e.piwik.TokenRequests()
	h.hold(testClientID)
	for range 2 {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		resp, err := e.b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "check", Storage: e.storage})
		cancel()
		text := responseText(t, resp, err)
		if strings.Contains(text, "timed out") || !strings.Contains(text, "the request's deadline") {
			t.Errorf("check past its deadline says: %s", text)
		}
	}
	if n := h.waitingFor(testClientID); n != 1 {
		t.Errorf("%d token requests held, want the one both checks share", n)
	}
	h.release(testClientID)
	waitUntil(t, "the shared request is answered", func() bool { return e.piwik.TokenRequests() == before+1 })
	if status, report := e.check(); status != http.StatusOK {
		t.Errorf("check after two checks ran past their deadline: %d %v, want 200", status, report)
	}
	// No backoff: a read goes to Piwik PRO at once.
	e.mustDo(logical.ReadOperation, "creds/plain", nil)
	if got := e.piwik.TokenRequests() - before; got != 2 {
		t.Errorf("%d token requests, want 2 (the checks' shared one and the read's)", got)
	}
	if snap := e.b.metrics.snapshot(); snap["upstream_failures"] != uint64(0) {
		t.Errorf("metrics count the caller's deadline as a failure of Piwik PRO's: %v", snap)
	}
}

// replyHold lets the next token request of a client id reach the
// stand-in and holds the stand-in's answer until released: a request
// Piwik PRO answered before something changed, whose reply arrives after.
type replyHold struct {
	mu      sync.Mutex
	next    map[string]bool
	waiting int
	release chan struct{}
}

func newReplyHold() *replyHold {
	return &replyHold{next: make(map[string]bool), release: make(chan struct{})}
}

func (h *replyHold) holdNext(clientID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next[clientID] = true
}

func (h *replyHold) held() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.waiting
}

func (h *replyHold) option() envOption {
	return func(s *envSetup) {
		s.wrap = func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				clientID := peekClientID(r)
				h.mu.Lock()
				hold := h.next[clientID]
				delete(h.next, clientID)
				h.mu.Unlock()
				if !hold {
					next.ServeHTTP(w, r)
					return
				}
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				h.mu.Lock()
				h.waiting++
				h.mu.Unlock()
				<-h.release
				maps.Copy(w.Header(), rec.Header())
				w.WriteHeader(rec.Code)
				_, _ = w.Write(rec.Body.Bytes())
			})
		}
	}
}

func TestCheck_aResultPiwikPROGaveBeforeARejectionIsNotRemembered(t *testing.T) {
	rh := newReplyHold()
	e := newEnvWithRole(t, "reporting", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret}, rh.option())
	// A check's request for the role's credential is answered with a
	// token; before the answer arrives, the credential is deleted in
	// Piwik PRO and a read meets the rejection.
	rh.holdNext(roleClientID)
	checked := make(chan struct{})
	go func() {
		defer close(checked)
		_, _ = e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "check", Storage: e.storage})
	}()
	waitUntil(t, "the check's answer is held", func() bool { return rh.held() == 1 })
	e.piwik.AddCredential(standin.Credential{ClientID: roleClientID, ClientSecret: "replaced-in-the-ui"})
	if status, _ := statusOf(e.do(logical.ReadOperation, "creds/reporting", nil)); status != http.StatusBadGateway {
		t.Fatalf("read of the deleted credential: %d, want 502", status)
	}
	close(rh.release)
	<-checked
	if status, report := e.check(); status != http.StatusBadGateway {
		t.Errorf("check after a read met the rejection: %d %v, want the rejection's 502", status, report)
	}
}
