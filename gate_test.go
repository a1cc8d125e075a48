package piwik

import (
	"context"
	"fmt"
	"io"
	"maps"
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

// A request that was in flight when a 429 came back, and then ends with a
// definite answer (a success, or another role's rejection), leaves the
// Retry-After window open.
func TestGate_aConcurrentAnswerKeepsTheRateLimitWindow(t *testing.T) {
	for _, other := range []struct {
		name string
		err  error
	}{{"success", nil}, {"rejection", errRejected}} {
		t.Run(other.name, func(t *testing.T) {
			g, clock := newTestGate()
			for range 2 {
				if err := g.acquire(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			g.release(errRateLimited) // Retry-After: 30s
			g.release(other.err)      // the request sent alongside it
			clock.advance(time.Second)
			if err := g.acquire(context.Background()); err == nil {
				t.Errorf("1s after a 429 with Retry-After 30s, a new request may go out (the concurrent %s erased the window)", other.name)
				g.release(nil)
			}
		})
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

// Gates of credentials that failed once, long ago, are pruned: however many
// credentials failed, at most maxIdleGates gates stay.
func TestGate_idleGatesArePruned(t *testing.T) {
	clock := &fakeClock{now: testNow}
	gs := newGates(clock.Now)
	for i := range 3 * maxIdleGates {
		g := gs.get(fmt.Sprintf("https://acme.example\x00client-%d", i))
		if err := g.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		g.release(errServer)
	}
	clock.advance(24 * time.Hour) // a day later, no window open anywhere
	// Past maxIdleGates every get (every mint) scans the whole map under
	// the one gates mutex; timed here for the report, not asserted.
	start := time.Now()
	for i := range 100 {
		gs.get(fmt.Sprintf("https://acme.example\x00fresh-%d", i))
	}
	t.Logf("gates.get with %d gates kept: %s each", 3*maxIdleGates, time.Since(start)/100)
	gs.mu.Lock()
	n := len(gs.m)
	gs.mu.Unlock()
	if n > maxIdleGates {
		t.Errorf("%d gates kept a day after their single failure; the cap is %d", n, maxIdleGates)
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

// One 429 with a huge Retry-After closes the credential for at most
// maxWindow, and an operator can lift the window through the API: a config
// rewrite, and a delete and recreate of the config, are stored, and a read
// after them gets a token.
func TestGate_hugeRetryAfterIsCappedAndAConfigWriteLiftsIt(t *testing.T) {
	e := newEnvWithRole(t, "r", nil)
	e.piwik.FailNext(1, standin.Fault{Kind: standin.FaultRateLimit, RetryAfter: 86400})
	status, msg := statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("read 1 (the 429): %d %s", status, msg)

	// Piwik PRO is fine again from here on.
	requests := e.piwik.TokenRequests()
	status, msg = statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("read 2 (upstream healthy): %d %s", status, msg)
	g := e.b.gates.get(e.server.URL + "\x00" + testClientID)
	g.mu.Lock()
	left := time.Until(g.until)
	g.mu.Unlock()
	t.Logf("gate window left: %s", left.Round(time.Minute))

	// The operator rewrites the config, then deletes and recreates it.
	resp, err := e.do(logical.UpdateOperation, "config", map[string]any{"url": e.server.URL, "client_id": testClientID, "client_secret": testClientSecret})
	rewriteStatus, rewriteMsg := statusOf(resp, err)
	t.Logf("config rewrite: %d %s", rewriteStatus, rewriteMsg)
	e.mustDo(logical.DeleteOperation, "config", nil)
	resp, err = e.do(logical.UpdateOperation, "config", map[string]any{"url": e.server.URL, "client_id": testClientID, "client_secret": testClientSecret})
	recreateStatus, recreateMsg := statusOf(resp, err)
	t.Logf("config recreate after delete: %d %s", recreateStatus, recreateMsg)
	e.writeConfig(map[string]any{"verify_credentials": false})
	finalStatus, finalMsg := statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("read after recreating the config unverified: %d %s", finalStatus, finalMsg)
	t.Logf("token requests sent after the 429: %d", e.piwik.TokenRequests()-requests)

	if left > time.Hour {
		t.Errorf("one reply made this node refuse the credential for %s; a window should be capped at minutes", left.Round(time.Minute))
	}
	if rewriteStatus != http.StatusNoContent && rewriteStatus != http.StatusOK || recreateStatus != http.StatusNoContent && recreateStatus != http.StatusOK || finalStatus != http.StatusOK {
		t.Errorf("an operator cannot lift the window through the API: rewrite %d, recreate %d, read %d", rewriteStatus, recreateStatus, finalStatus)
	}
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

// rateLimitedFor answers 429 with Retry-After: 120 to every token request
// made with limited as its secret, a token to those made with ok, and 401
// invalid_client to any other; it counts the requests made with limited.
func rateLimitedFor(limited, ok string, count *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		secret, _ := requestSecret(r)
		w.Header().Set("Content-Type", "application/json")
		switch secret {
		case limited:
			count.Add(1)
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusTooManyRequests)
		case ok:
			_, _ = io.WriteString(w, reply("Bearer", 1800, testJWT(map[string]any{"sub": "u", "exp": time.Now().Unix() + 1800})))
		default:
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
		}
	}
}

// A config write that is refused (nothing stored) leaves the stored
// credential's Retry-After window in place: the write's own verification
// request passes the window, as the operator's deliberate probe, and no
// reader passes with it.
func TestGate_refusedConfigWriteKeepsTheRateLimitWindow(t *testing.T) {
	var limited atomic.Int64
	e := hostileEnv(t, rateLimitedFor(testClientSecret, "", &limited), nil)

	_, msg := statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("read 1: %s", msg)
	_, msg = statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("read 2 (inside the window): %s", msg)
	if limited.Load() != 1 {
		t.Fatalf("%d requests before the write, want 1 (the second read fails fast)", limited.Load())
	}

	before := e.snapshot()
	status, msg := statusOf(e.do(logical.UpdateOperation, "config", map[string]any{
		"client_secret": "mistyped-secret-0a1b2c3d", "verify_credentials": true,
	}))
	t.Logf("config write with a wrong client_secret: %d %s", status, msg)
	if status != http.StatusBadRequest || !maps.Equal(before, e.snapshot()) {
		t.Fatalf("the write was not refused cleanly: %d", status)
	}

	_, msg = statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("read 3 (still inside Retry-After: 120): %s", msg)
	if n := limited.Load(); n != 1 {
		t.Errorf("%d requests with the rate-limited credential inside its Retry-After window; a refused config write (nothing stored) lifted it", n)
	}
}

// A config write leaves the windows of the roles' own credentials, which it
// neither uses nor changes.
func TestGate_configWriteKeepsOtherCredentialsWindows(t *testing.T) {
	var limited atomic.Int64
	e := hostileEnv(t, rateLimitedFor(roleClientSecret, testClientSecret, &limited), nil)
	e.mustDo(logical.CreateOperation, "roles/own", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})

	_, msg := statusOf(e.do(logical.ReadOperation, "creds/own", nil))
	t.Logf("creds/own: %s", msg)
	_, _ = e.do(logical.ReadOperation, "creds/own", nil)
	if limited.Load() != 1 {
		t.Fatalf("%d requests before the write, want 1", limited.Load())
	}
	// The operator changes the config's request_timeout, nothing else.
	e.mustDo(logical.UpdateOperation, "config", map[string]any{"request_timeout": 20, "verify_credentials": true})

	_, msg = statusOf(e.do(logical.ReadOperation, "creds/own", nil))
	t.Logf("creds/own after the config write: %s", msg)
	if n := limited.Load(); n != 1 {
		t.Errorf("%d requests with the role's own credential inside its Retry-After window; a config write that does not touch that credential lifted it", n)
	}
}

// maxInFlight holds per credential and node across config writes: writes of
// an unrelated setting during a slow spell do not each add another
// maxInFlight requests in flight.
func TestGate_configWritesDoNotMultiplyTheInFlightCap(t *testing.T) {
	var inFlight, peak atomic.Int64
	release := make(chan struct{})
	e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, reply("Bearer", 1800, testJWT(map[string]any{"sub": "u", "exp": time.Now().Unix() + 1800})))
	}, nil)
	var releaseOnce sync.Once
	stop := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(stop)

	var wg sync.WaitGroup
	readers := func(n int) {
		for range n {
			wg.Go(func() {
				_, _ = e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "creds/r", Storage: e.storage})
			})
		}
	}
	waitInFlight := func(want int64) int64 {
		deadline := time.Now().Add(3 * time.Second)
		for inFlight.Load() < want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		return inFlight.Load()
	}

	readers(2 * maxInFlight)
	t.Logf("in flight with %d readers: %d", 2*maxInFlight, waitInFlight(maxInFlight))
	for i := range 2 {
		// Writes of a setting that has nothing to do with the credential.
		e.mustDo(logical.UpdateOperation, "config", map[string]any{"max_retries": i + 1})
		readers(maxInFlight)
		t.Logf("in flight after config write %d and %d more readers: %d", i+1, maxInFlight, waitInFlight(int64(maxInFlight*(i+2))))
	}
	stop()
	wg.Wait()
	if p := peak.Load(); p > maxInFlight {
		t.Errorf("peak of %d token requests in flight with one credential on one node, cap %d", p, maxInFlight)
	}
}
