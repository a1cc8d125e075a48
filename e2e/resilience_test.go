package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// maxRequestsWhileFailing is the most token requests one role's refreshes
// can send in d when every request fails with a transient error: its mints
// run one at a time (the token cache shares one among the role's readers),
// the first failuresBeforeBackoff requests may go at once, and after each
// further failure the gate waits at least half of a backoff window that
// doubles from backoffBase up to maxBackoff (it draws the wait from [w/2, w]).
func maxRequestsWhileFailing(d time.Duration) int {
	n := gateFailuresBeforeBackoff
	var elapsed time.Duration
	for failures := gateFailuresBeforeBackoff; ; failures++ {
		w := min(gateBackoffBase<<min(failures-gateFailuresBeforeBackoff, 16), gateMaxBackoff)
		elapsed += w / 2
		if elapsed > d {
			return n
		}
		n++
	}
}

// TestReuseRoleServesThroughOutage takes the stand-in down while a
// token_reuse role's cached token still has life in it, and checks that a
// reader who reads every second gets that token, with a warning, through
// the whole outage; that the plugin's attempts at a new token stay within
// what the credential's backoff allows; and that a new token is read once
// the stand-in is back.
//
// The outage cycles through three kinds, a third of it each: 5xx replies,
// connections closed without a reply (what the client sees as unreachable,
// like a refused connection; a real refusal would need the stand-in's port
// closed, and with it the control endpoint), and hung requests (timeouts).
// It lasts E2E_OUTAGE (default 24s; `make resilience` runs 2m). The token's
// lifetime is sized so that the outage begins after the token fell below
// reuse_min_remaining (every read then asks for a new token) and ends with
// room to spare before the token falls below the stale floor.
func TestReuseRoleServesThroughOutage(t *testing.T) {
	outage := envDuration(t, "E2E_OUTAGE", 24*time.Second)
	const mount = "piwik-outage"
	v, st := mountPrivately(t, mount)

	// A token lives through the wait below reuse_min_remaining (5s), the
	// outage, the backoff window that may still be open after it (up to
	// 30s) and 55s more, above the stale floor (at most 30s).
	lifetime := (outage + 90*time.Second).Truncate(time.Second)
	minRemaining := lifetime - 5*time.Second
	floor := staleFloor(lifetime)
	st.setLifetime(t, int(lifetime.Seconds()))
	v.vault(t, "write", mount+"/roles/reuse", "token_reuse=true", "reuse_min_remaining="+strconv.Itoa(int(minRemaining.Seconds())))
	client := v.client(t, v.token)
	client.SetClientTimeout(30 * time.Second)
	path := mount + "/creds/reuse"

	first := readOnce(client, path)
	if first.err != nil || len(first.warnings) > 0 {
		t.Fatalf("first read: %v, warnings %q", redactErr(first.err), first.warnings)
	}
	rememberSecret(t, "access token read from "+path, first.token)
	// Wait, without reading, until the token is below reuse_min_remaining:
	// from then on every read asks Piwik PRO for a new one.
	if err := waitFor(minRemaining, 100*time.Millisecond, nil, func() (bool, error) {
		return time.Until(first.expiresAt) < minRemaining-time.Second, nil
	}); err != nil {
		t.Fatal(err)
	}
	metricsBefore := readMetrics(t, client, mount)

	third := (outage / 3).Milliseconds()
	st.schedule(t, []phaseSpec{
		{Name: "server_error", DurationMS: third, Fault: map[string]any{"kind": "server_error"}},
		{Name: "close_connection", DurationMS: third, Fault: map[string]any{"kind": "close_connection"}},
		{Name: "hang", DurationMS: third, Fault: map[string]any{"kind": "hang"}},
	}, false)
	sched := st.scheduleReport(t)
	outageStart := sched.Start
	outageEnd := outageStart.Add(3 * time.Duration(third) * time.Millisecond)

	// A read every second, each on its own so that a slow one (waiting for
	// a hung request) does not hold the next back, through the outage and
	// on until a read gets a new token.
	var (
		mu        sync.Mutex
		reads     []credsRead
		wg        sync.WaitGroup
		recovered time.Time
	)
	isRecovered := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !recovered.IsZero()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	giveUp := outageEnd.Add(gateMaxBackoff + 10*time.Second)
	for !isRecovered() && time.Now().Before(giveUp) {
		wg.Go(func() {
			r := readOnce(client, path)
			mu.Lock()
			defer mu.Unlock()
			reads = append(reads, r)
			if r.err == nil && r.token != first.token && r.start.After(outageEnd) && recovered.IsZero() {
				recovered = r.end
			}
		})
		<-tick.C
	}
	wg.Wait()
	metricsAfter := readMetrics(t, client, mount)

	var failed, stale, inOutage, newTokens int
	for _, r := range reads {
		if r.token != "" && r.token != first.token {
			rememberSecret(t, "access token read from "+path, r.token)
			newTokens++
		}
		served := isStale(r)
		if served {
			stale++
		}
		switch {
		case r.err != nil:
			failed++
			t.Errorf("a read from %s to %s after the outage began failed: %v",
				r.start.Sub(outageStart).Round(time.Millisecond), r.end.Sub(outageStart).Round(time.Millisecond), redactErr(r.err))
		case !r.start.Before(outageStart) && !r.end.After(outageEnd):
			inOutage++
			if !served || r.token != first.token {
				t.Errorf("a read inside the outage (from %s) got the cached token %t, with the stale warning %t; want both",
					r.start.Sub(outageStart).Round(time.Millisecond), r.token == first.token, served)
			}
		}
		if served && r.token != first.token {
			t.Error("a read with the stale warning got another token than the cached one")
		}
	}
	if inOutage < int(outage/time.Second)/2 {
		t.Errorf("only %d reads ran inside the %s outage: the test proves little", inOutage, outage)
	}
	if recovered.IsZero() {
		t.Errorf("no read got a new token within %s after the outage ended", giveUp.Sub(outageEnd))
	}
	if served := metricsAfter.StaleServes - metricsBefore.StaleServes; served != int64(stale) {
		t.Errorf("metrics: stale_serves grew by %d, but %d reads carried the stale warning", served, stale)
	}

	// Token requests during the outage: the stand-in counts them by phase.
	sched = st.scheduleReport(t)
	var requests int64
	var perPhase []string
	for _, p := range sched.Phases {
		n := p.Requests(st.clientID)
		requests += n
		perPhase = append(perPhase, fmt.Sprintf("%s %d", p.Name, n))
	}
	bound := maxRequestsWhileFailing(outage)
	if requests > int64(bound) {
		t.Errorf("%d token requests during the %s outage (%s); the backoff allows at most %d", requests, outage, strings.Join(perPhase, ", "), bound)
	}
	if requests == 0 {
		t.Error("no token request during the outage: the role did not even try to refresh its token")
	}
	if c := st.clients(t).ByID(st.clientID); c.PeakInFlight > 1 {
		t.Errorf("%d token requests of one role were in flight at once; its refreshes share one", c.PeakInFlight)
	}
	t.Logf("outage of %s (%s) with a %s token (reuse_min_remaining %s, stale floor %s): %d reads, %d failed, %d inside the outage, "+
		"%d with the stale warning (metrics: %d stale serves, %d requests not sent); %d token requests during the outage (%s), at most %d allowed, "+
		"where a request per read would have made %d or more; a new token %s after the outage ended (reads that got one: %d)",
		outage, strings.Join(phaseNames(sched), ", "), lifetime, minRemaining, floor, len(reads), failed, inOutage, stale,
		metricsAfter.StaleServes-metricsBefore.StaleServes, metricsAfter.RequestsNotSent-metricsBefore.RequestsNotSent,
		requests, strings.Join(perPhase, ", "), bound, inOutage, recovered.Sub(outageEnd).Round(time.Millisecond), newTokens)
}

// TestRateLimitWindowSendsOneRequest has the stand-in answer every token
// request with 429 and Retry-After: 30, and reads a minting role ten times
// inside those 30 seconds: only the first read may reach the stand-in; the
// other nine must fail at once with 429, saying that nothing was sent and
// how long is left.
func TestRateLimitWindowSendsOneRequest(t *testing.T) {
	const mount = "piwik-ratelimit"
	v, st := mountPrivately(t, mount)
	st.control(t, "fault", map[string]any{"kind": "rate_limit", "retry_after": 30})
	client := v.client(t, v.token)
	client.SetClientTimeout(30 * time.Second)
	path := mount + "/creds/reporting"

	before, metricsBefore := st.stats(t).TokenRequests, readMetrics(t, client, mount)
	var first time.Time
	for i := range 10 {
		r := readOnce(client, path)
		if i == 0 {
			first = r.start
		}
		if r.end.Sub(first) >= 29*time.Second {
			t.Fatalf("read %d ended %s after the first: outside the Retry-After window, the test proves nothing", i+1, r.end.Sub(first))
		}
		want := tryAgainAfter(30 * time.Second)
		if i > 0 {
			want = "(" + msgNotSent + ": this credential is " + msgWaitingOutRateLimit + ")"
		}
		var respErr *api.ResponseError
		switch {
		case r.err == nil:
			t.Fatalf("read %d succeeded, want HTTP 429", i+1)
		case !errors.As(r.err, &respErr):
			t.Fatalf("read %d failed without an HTTP reply: %v", i+1, redactErr(r.err))
		case respErr.StatusCode != http.StatusTooManyRequests || !strings.Contains(strings.Join(respErr.Errors, "\n"), want):
			t.Errorf("read %d: HTTP %d %q; want 429 saying %q", i+1, respErr.StatusCode, redact(strings.Join(respErr.Errors, "\n")), want)
		}
		if i == 9 {
			t.Logf("read 10, %s after the first: HTTP %d: %s", r.start.Sub(first).Round(time.Millisecond), respErr.StatusCode, redact(strings.Join(respErr.Errors, "\n")))
		}
	}
	if sent := st.stats(t).TokenRequests - before; sent != 1 {
		t.Errorf("ten reads inside the Retry-After window made %d token requests, want 1 (the first)", sent)
	}
	m := readMetrics(t, client, mount)
	if n := m.RequestsNotSent - metricsBefore.RequestsNotSent; n != 9 || m.NotSentByKind["rate_limited"]-metricsBefore.NotSentByKind["rate_limited"] != 9 {
		t.Errorf("metrics: requests_not_sent grew by %d (by kind now: %v), want 9 rate_limited", n, m.NotSentByKind)
	}
	if c := st.clients(t).ByID(st.clientID); c.Violations != 0 || c.RateLimitWindows != 1 {
		t.Errorf("stand-in: %d 429s sent, %d requests inside their window; want 1 and 0", c.RateLimitWindows, c.Violations)
	}
}

// TestHugeRetryAfterIsCappedAndAConfigWriteLiftsIt has the stand-in answer
// one token request with 429 and Retry-After: 86400. The credential is then
// paced on this node for at most retryAfterCap, not a day, and a config
// write, the operator's deliberate probe, starts the pacing afresh: the
// next read is sent at once.
func TestHugeRetryAfterIsCappedAndAConfigWriteLiftsIt(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	st := env.privateMount(t, "piwik-lockout")
	client := v.client(t, v.token)

	st.control(t, "fault", map[string]any{"kind": "rate_limit", "retry_after": 86400, "count": 1})
	_, err := client.Logical().Read("piwik-lockout/creds/reporting")
	code, msg := apiStatus(err)
	t.Logf("read during the 429: HTTP %d %s", code, redact(msg))

	// The stand-in answers normally from here on. The window is capped:
	// reads are refused without a request for at most retryAfterCap.
	before := st.stats(t).TokenRequests
	_, err = client.Logical().Read("piwik-lockout/creds/reporting")
	code, msg = apiStatus(err)
	if code != http.StatusTooManyRequests || !strings.Contains(msg, tryAgainAfter(retryAfterCap)) || !strings.Contains(msg, msgNotSent) {
		t.Errorf("read inside the window: HTTP %d %s; want a 429 capped at %s, without a request", code, redact(msg), retryAfterCap)
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

// credsRead is one creds read: when it ran and what it got.
type credsRead struct {
	role       string
	start, end time.Time
	err        error
	warnings   []string
	token      string
	expiresAt  time.Time
	leaseID    string
	ttl        int64 // the data's ttl of an unleased read
}

// readOnce reads path with client and records the outcome.
func readOnce(client *api.Client, path string) credsRead {
	r := credsRead{role: path[strings.LastIndex(path, "/")+1:], start: time.Now()}
	s, err := client.Logical().Read(path)
	r.end = time.Now()
	switch {
	case err != nil:
		r.err = err
	case s == nil:
		r.err = errors.New("empty answer")
	default:
		r.warnings = s.Warnings
		r.leaseID = s.LeaseID
		r.token, _ = s.Data["access_token"].(string)
		if exp, ok := s.Data["expires_at"].(string); ok {
			r.expiresAt, _ = time.Parse(time.RFC3339, exp)
		}
		if n, ok := s.Data["ttl"].(json.Number); ok {
			r.ttl, _ = n.Int64()
		}
		if r.token == "" {
			r.err = errors.New("no access_token in the answer")
		}
	}
	return r
}

// isStale reports whether r was served a cached token during an outage.
func isStale(r credsRead) bool {
	return strings.Contains(strings.Join(r.warnings, "\n"), staleWarning)
}

// pluginMetrics is the JSON form of <mount>/metrics.
type pluginMetrics struct {
	TokensMinted     int64            `json:"tokens_minted"`
	ReuseHits        int64            `json:"reuse_hits"`
	StaleServes      int64            `json:"stale_serves"`
	UpstreamRequests int64            `json:"upstream_requests"`
	UpstreamFailures int64            `json:"upstream_failures"`
	FailuresByKind   map[string]int64 `json:"failures_by_kind"`
	RequestsNotSent  int64            `json:"requests_not_sent"`
	NotSentByKind    map[string]int64 `json:"not_sent_by_kind"`
	InFlightPeak     int64            `json:"upstream_in_flight_peak"`
}

// readMetrics reads mount/metrics, failing t when it cannot.
func readMetrics(t *testing.T, client *api.Client, mount string) pluginMetrics {
	t.Helper()
	m, err := fetchMetrics(client, mount)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fetchMetrics reads mount/metrics.
func fetchMetrics(client *api.Client, mount string) (pluginMetrics, error) {
	var m pluginMetrics
	s, err := client.Logical().Read(mount + "/metrics")
	if err != nil || s == nil {
		return m, fmt.Errorf("read %s/metrics: %v", mount, err)
	}
	data, err := json.Marshal(s.Data)
	if err == nil {
		err = json.Unmarshal(data, &m)
	}
	if err != nil {
		return m, fmt.Errorf("read %s/metrics: %w", mount, err)
	}
	return m, nil
}

// envDuration reads a duration from the environment variable name, or
// returns def when it is unset.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q is not a positive duration (such as 90s or 10m)", name, v)
	}
	return d
}

// phaseNames lists the names of the phase runs of r.
func phaseNames(r scheduleReport) []string {
	var names []string
	for _, p := range r.Phases {
		names = append(names, p.Name)
	}
	return names
}
