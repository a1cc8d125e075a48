package piwik

import (
	"context"
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

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestGate() (*gate, *fakeClock) {
	clock := &fakeClock{now: testNow}
	return newGate(clock.Now), clock
}

var (
	errRateLimited = &upstreamError{Kind: kindRateLimited, Status: 429, RetryAfter: 30 * time.Second}
	errServer      = &upstreamError{Kind: kindServer, Status: 503, Detail: "an HTML page"}
	errRejected    = &upstreamError{Kind: kindCredentials, Status: 401}
)

// send is one request through g that ends with outcome.
func send(t *testing.T, g *gate, outcome error) {
	t.Helper()
	if err := g.acquire(context.Background()); err != nil {
		t.Fatalf("acquire: %v", err)
	}
	g.release(outcome)
}

func TestGate_rateLimitWindowFailsFastUntilRetryAfter(t *testing.T) {
	g, clock := newTestGate()
	send(t, g, errRateLimited)

	clock.advance(29 * time.Second)
	err := g.acquire(context.Background())
	upErr, ok := asUpstreamError(err)
	if !ok || !upErr.NotSent || upErr.Kind != kindRateLimited || upErr.RetryAfter != time.Second {
		t.Fatalf("inside the window: %v, want a not-sent 429 with 1s left", err)
	}
	if status := failureStatus(err); status != http.StatusTooManyRequests {
		t.Errorf("status %d, want 429", status)
	}
	if !strings.Contains(err.Error(), "try again after 1s") || !strings.Contains(err.Error(), "no request sent") {
		t.Errorf("message %q", err)
	}

	clock.advance(time.Second)
	if err := g.acquire(context.Background()); err != nil {
		t.Fatalf("after the window: %v, want the probe through", err)
	}
	// While the probe is out, nobody else goes: one request probes.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := g.acquire(ctx); err != context.DeadlineExceeded {
		t.Errorf("a second request during the probe: %v, want to wait (and here time out)", err)
	}
	g.release(nil)
	for range maxInFlight {
		if err := g.acquire(context.Background()); err != nil {
			t.Fatalf("after a successful probe: %v", err)
		}
	}
}

func TestGate_capsRequestsInFlight(t *testing.T) {
	g, _ := newTestGate()
	for range maxInFlight {
		if err := g.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	waiter := make(chan error)
	go func() { waiter <- g.acquire(context.Background()) }()
	select {
	case err := <-waiter:
		t.Fatalf("request %d went out (err=%v); the cap is %d", maxInFlight+1, err, maxInFlight)
	case <-time.After(50 * time.Millisecond):
	}
	g.release(nil)
	if err := <-waiter; err != nil {
		t.Fatalf("the waiter after a slot freed: %v", err)
	}
}

func TestGate_backoffGrowsAfterRepeatedFailuresAndResetsOnSuccess(t *testing.T) {
	g, clock := newTestGate()
	send(t, g, errServer) // one failure: no window yet
	if err := g.acquire(context.Background()); err != nil {
		t.Fatalf("after one failure: %v, want no backoff yet", err)
	}
	g.release(errServer) // two in a row: back off

	var windows []time.Duration
	for range 8 {
		err := g.acquire(context.Background())
		upErr, ok := asUpstreamError(err)
		if !ok || !upErr.NotSent || upErr.Kind != kindServer || failureStatus(err) != http.StatusBadGateway {
			t.Fatalf("inside a backoff window: %v, want a not-sent 502", err)
		}
		windows = append(windows, upErr.RetryAfter)
		clock.advance(upErr.RetryAfter)
		send(t, g, errServer) // the probe fails again
	}
	for i, w := range windows {
		limit := min(backoffBase<<i, maxBackoff)
		if w < limit/2 || w > limit {
			t.Errorf("window %d is %s, want within [%s, %s]", i, w, limit/2, limit)
		}
	}
	if windows[len(windows)-1] < maxBackoff/2 {
		t.Errorf("the backoff did not grow to its cap: %v", windows)
	}

	clock.advance(maxBackoff)
	send(t, g, nil)
	if err := g.acquire(context.Background()); err != nil {
		t.Errorf("after a success: %v, want no window", err)
	}
}

func TestGate_rejectionOpensNoWindow(t *testing.T) {
	g, _ := newTestGate()
	send(t, g, errServer)
	send(t, g, errRejected) // a definite answer: Piwik PRO is up
	send(t, g, errServer)   // one transient failure after it: not two in a row
	if err := g.acquire(context.Background()); err != nil {
		t.Errorf("%v: a rejection must reset the run of failures, not open a window", err)
	}
}

func TestGate_rateLimitWithoutRetryAfterBacksOff(t *testing.T) {
	g, _ := newTestGate()
	send(t, g, &upstreamError{Kind: kindRateLimited, Status: 429})
	err := g.acquire(context.Background())
	if upErr, ok := asUpstreamError(err); !ok || !upErr.NotSent || upErr.RetryAfter <= 0 || upErr.RetryAfter > backoffBase {
		t.Errorf("after a 429 without Retry-After: %v, want a short default window", err)
	}
}

func TestGate_windowIsSharedByRolesWithTheCredential(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"max_retries": 0})
	e.mustDo(logical.CreateOperation, "roles/a", nil)
	e.mustDo(logical.CreateOperation, "roles/b", nil)
	e.mustDo(logical.CreateOperation, "roles/own", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
	e.piwik.SetFault(standin.Fault{Kind: standin.FaultRateLimit, RetryAfter: 120})

	before := e.piwik.TokenRequests()
	if status, _ := statusOf(e.do(logical.ReadOperation, "creds/a", nil)); status != http.StatusTooManyRequests {
		t.Fatalf("first read: %d, want 429", status)
	}
	for range 10 {
		status, msg := statusOf(e.do(logical.ReadOperation, "creds/b", nil))
		if status != http.StatusTooManyRequests || !strings.Contains(msg, "no request sent") {
			t.Fatalf("another role on the same credential: %d %q, want a 429 without a request", status, msg)
		}
	}
	if got := e.piwik.TokenRequests() - before; got != 1 {
		t.Errorf("%d token requests for 11 reads inside the window, want 1", got)
	}
	// A role with its own credential has a window of its own.
	e.piwik.SetFault(standin.Fault{})
	e.mustDo(logical.ReadOperation, "creds/own", nil)
	if snap := e.mustDo(logical.ReadOperation, "metrics", nil).Data; snap["requests_not_sent"] != uint64(10) || snap["upstream_in_flight_peak"] != int64(1) {
		t.Errorf("metrics requests_not_sent = %v, upstream_in_flight_peak = %v; want 10 and 1", snap["requests_not_sent"], snap["upstream_in_flight_peak"])
	}
}

func TestGate_inFlightCapHoldsUnderConcurrentMints(t *testing.T) {
	var inFlight, peak atomic.Int64
	piwik := standin.New(standin.Options{Credentials: []standin.Credential{{ClientID: testClientID, ClientSecret: testClientSecret}}})
	piwik.SetFault(standin.Fault{Kind: standin.FaultSlow, Delay: 20 * time.Millisecond})
	srv := newCountingStandin(t, piwik, &inFlight, &peak)
	client, err := newClient(clientOptions{BaseURL: srv, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	gs := newGates(time.Now)
	g := gs.get("credential")
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := client.mint(context.Background(), testCreds, g); err != nil {
				t.Errorf("mint: %v", err)
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > maxInFlight || p < 2 {
		t.Errorf("peak in flight %d, want between 2 and the cap %d", p, maxInFlight)
	}
	if p := gs.peak.Load(); p > maxInFlight || p < 2 {
		t.Errorf("the gates' own peak %d, want between 2 and the cap %d", p, maxInFlight)
	}
}

func TestStale_reuseRoleServesItsTokenThroughAnOutage(t *testing.T) {
	for _, fault := range []standin.FaultKind{standin.FaultUnavailable, standin.FaultServerError, standin.FaultCloseConnection, standin.FaultRateLimit} {
		t.Run(string(fault), func(t *testing.T) {
			e := newEnv(t)
			e.piwik.SetLifetime(10 * time.Minute)
			e.writeConfig(map[string]any{"max_retries": 0})
			// Every read wants a fresh token (under 600s left, always): each one
			// tries a refresh.
			e.mustDo(logical.CreateOperation, "roles/shared", map[string]any{"token_reuse": true, "reuse_min_remaining": "600"})
			first := e.mustDo(logical.ReadOperation, "creds/shared", nil)
			e.piwik.SetFault(standin.Fault{Kind: fault, RetryAfter: 60})

			for i := range 5 {
				resp := e.mustDo(logical.ReadOperation, "creds/shared", nil)
				if resp.Data["access_token"] != first.Data["access_token"] {
					t.Fatalf("read %d during the outage got another token", i)
				}
				if !containsWarning(resp, "serving the cached token") {
					t.Errorf("read %d: no warning that names the failure and the expiry: %v", i, resp.Warnings)
				}
				if resp.Secret.TTL <= 0 || resp.Secret.TTL > 10*time.Minute {
					t.Errorf("read %d: lease %s, want the token's remaining life", i, resp.Secret.TTL)
				}
			}
			if snap := e.mustDo(logical.ReadOperation, "metrics", nil).Data; snap["stale_serves"] != uint64(5) {
				t.Errorf("stale_serves = %v, want 5", snap["stale_serves"])
			}
		})
	}
}

func TestStale_neverForRejectedCredentialsOrMintRoles(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"max_retries": 0})
	e.mustDo(logical.CreateOperation, "roles/shared", map[string]any{"token_reuse": true, "reuse_min_remaining": "1800",
		"client_id": roleClientID, "client_secret": roleClientSecret})
	e.mustDo(logical.CreateOperation, "roles/mint", nil)
	e.mustDo(logical.ReadOperation, "creds/shared", nil)

	// The credential is deleted in Piwik PRO: no more tokens, cached or not.
	e.piwik.AddCredential(standin.Credential{ClientID: roleClientID, ClientSecret: "replaced-in-the-ui"})
	for i := range 2 {
		if status, msg := statusOf(e.do(logical.ReadOperation, "creds/shared", nil)); status != http.StatusBadGateway || !strings.Contains(msg, "invalid_client") {
			t.Errorf("read %d after the credential was deleted: %d %q, want the rejection", i, status, msg)
		}
	}
	// A mint-per-read role has no token to fall back on.
	e.piwik.SetFault(standin.Fault{Kind: standin.FaultUnavailable})
	if status, _ := statusOf(e.do(logical.ReadOperation, "creds/mint", nil)); status != http.StatusBadGateway {
		t.Errorf("mint role during an outage: %d, want 502", status)
	}
}

func TestStale_notBelowTheFloor(t *testing.T) {
	tok := &token{AccessToken: "a.b.c", Lifetime: 30 * time.Minute, ExpiresAt: testNow.Add(31 * time.Second)}
	if !servableStale(tok, testNow) {
		t.Errorf("31s left of a 30m token: not served, want served (floor 30s)")
	}
	if servableStale(tok, testNow.Add(2*time.Second)) {
		t.Errorf("29s left of a 30m token: served, want refused (floor 30s)")
	}
	short := &token{AccessToken: "a.b.c", Lifetime: 20 * time.Second, ExpiresAt: testNow.Add(9 * time.Second)}
	if !servableStale(short, testNow) {
		t.Errorf("9s left of a 20s token: not served, want served (floor a quarter: 5s)")
	}
}

// newCountingStandin serves piwik and records the requests in flight and
// their peak; it returns the base URL.
func newCountingStandin(t *testing.T, piwik http.Handler, inFlight, peak *atomic.Int64) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		piwik.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

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

func TestGate_refusesACallerWhoseContextEnded(t *testing.T) {
	g, _ := newTestGate()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.acquire(ctx); err == nil {
		g.release(nil)
		t.Fatal("acquire handed a slot to a caller whose context had ended")
	}
	if g.inFlight != 0 {
		t.Errorf("%d in flight after a refused acquire", g.inFlight)
	}
}

func TestGate_liftKeepsAWindowNewerThanTheVerification(t *testing.T) {
	clock := &fakeClock{now: testNow}
	s := newGates(clock.Now)
	g := s.get("k")
	verified := clock.Now() // a write's verification request is sent
	clock.advance(time.Second)
	send(t, g, &upstreamError{Kind: kindRateLimited, Status: 429, RetryAfter: 120 * time.Second}) // a reader meets a 429
	clock.advance(time.Second)
	s.lift("k", verified) // the write stores
	if err := g.acquire(context.Background()); err == nil {
		g.release(nil)
		t.Fatal("the write lifted a rate-limit window opened after its verification")
	}

	// A window opened before the verification is lifted.
	clock.advance(time.Second)
	s.lift("k", clock.Now())
	if err := g.acquire(context.Background()); err != nil {
		t.Fatalf("a window older than the verification stayed: %v", err)
	}
	g.release(nil)
}

func TestGate_aStoredWriteKeepsARateLimitMetDuringItsVerification(t *testing.T) {
	h := newHold()
	e := newEnvWithRole(t, "r", nil, withHold(h))
	// The config write's verification is held at Piwik PRO while a reader
	// meets a 429 asking for two minutes of quiet.
	h.holdNext(testClientID, 1)
	written := make(chan error, 1)
	go func() {
		_, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "config",
			Data: map[string]any{"max_retries": 0, "client_secret": testClientSecret}, Storage: e.storage})
		written <- err
	}()
	waitUntil(t, "the verification is held", func() bool { return h.waitingFor(testClientID) == 1 })
	e.piwik.FailNext(1, standin.Fault{Kind: standin.FaultRateLimit, RetryAfter: 120})
	if status, _ := statusOf(e.do(logical.ReadOperation, "creds/r", nil)); status != http.StatusTooManyRequests {
		t.Fatalf("reader during the verification: %d, want the 429", status)
	}
	h.release(testClientID)
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	before := e.piwik.TokenRequests()
	if status, _ := statusOf(e.do(logical.ReadOperation, "creds/r", nil)); status != http.StatusTooManyRequests {
		t.Errorf("read after the write: %d, want 429 without a request: the window is newer than the write's verification", status)
	}
	if got := e.piwik.TokenRequests() - before; got != 0 {
		t.Errorf("%d token requests inside the window Piwik PRO asked for, want 0", got)
	}
}
