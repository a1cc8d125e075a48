package standin

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

func TestPeakInFlight(t *testing.T) {
	s := New(Options{Credentials: []Credential{{ClientID: testID, ClientSecret: testSecret}, {ClientID: "client-b", ClientSecret: "secret-b"}}})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	const concurrent = 3
	s.FailNext(concurrent, Fault{Kind: FaultSlow, Delay: time.Minute})
	var wg sync.WaitGroup
	for range concurrent {
		wg.Go(func() {
			if resp, err := post(t, nil, ts, "/auth/token", "application/json", jsonCreds("client_credentials", testID, testSecret)); err == nil {
				resp.Body.Close()
			}
		})
	}
	eventually(t, "three requests in flight", func() bool { return clientReport(s, testID).InFlight == concurrent })
	if got := tokenStatus(t, ts, "client-b", "secret-b"); got != 200 {
		t.Errorf("client-b: status %d, want 200", got)
	}
	s.Close() // releases the slow replies
	wg.Wait()
	eventually(t, "nothing in flight", func() bool { return clientReport(s, testID).InFlight == 0 })
	c := clientReport(s, testID)
	if c.PeakInFlight != concurrent || c.Requests != concurrent || c.Outcomes["200"] != concurrent {
		t.Errorf("client %s: %+v; want a peak of %d and %d replies 200", testID, c, concurrent, concurrent)
	}
	if b := clientReport(s, "client-b"); b.PeakInFlight != 1 {
		t.Errorf("client-b: peak %d, want 1: in-flight counts are per client id", b.PeakInFlight)
	}
}

func TestPeakAnsweredLeavesOutHungRequests(t *testing.T) {
	s := New(Options{Credentials: []Credential{{ClientID: testID, ClientSecret: testSecret}}})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	s.FailNext(2, Fault{Kind: FaultHang})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if resp, err := post(t, nil, ts, "/auth/token", "application/json", jsonCreds("client_credentials", testID, testSecret)); err == nil {
				resp.Body.Close()
			}
		})
	}
	eventually(t, "two hung requests", func() bool { return clientReport(s, testID).InFlight == 2 })
	if got := tokenStatus(t, ts, testID, testSecret); got != 200 {
		t.Errorf("status %d, want 200", got)
	}
	s.Close() // drops the hung requests
	wg.Wait()
	if c := clientReport(s, testID); c.PeakInFlight != 3 || c.PeakAnswered != 1 {
		t.Errorf("peak %d, answered %d; want 3 in all and 1 answered", c.PeakInFlight, c.PeakAnswered)
	}
}

func TestRetryAfterViolations(t *testing.T) {
	clock := newClock()
	other := Credential{ClientID: "client-b", ClientSecret: "secret-b"}
	s, ts := newTest(t, Options{Now: clock.Now, RetryAfterGrace: 300 * time.Millisecond, Credentials: []Credential{other}})
	s.FailNext(1, Fault{Kind: FaultRateLimit, RetryAfter: 10})
	if got := tokenStatus(t, ts, testID, testSecret); got != 429 {
		t.Fatalf("status %d, want 429", got)
	}
	opened := clock.Now()
	steps := []struct {
		after time.Duration
		id    string
	}{
		{100 * time.Millisecond, testID},    // within the grace: sent before the 429 arrived
		{300 * time.Millisecond, testID},    // the grace's last instant
		{2 * time.Second, testID},           // a violation
		{3 * time.Second, other.ClientID},   // another client id: its own windows
		{10 * time.Second, testID},          // the window is over
		{10*time.Second + 1, testID},        // still over
		{9999 * time.Millisecond, "nobody"}, // unknown client: no window
	}
	for _, st := range steps {
		clock.Add(opened.Add(st.after).Sub(clock.Now()))
		tokenStatus(t, ts, st.id, "x")
	}
	c := clientReport(s, testID)
	want := Violation{At: opened.Add(2 * time.Second), WindowStart: opened, WindowEnd: opened.Add(10 * time.Second)}
	if c.RateLimitWindows != 1 || c.RequestsInGrace != 2 || c.MaxInGrace != 2 || c.MaxGraceDelayMS != 300 || c.Violations != 1 || len(c.ViolationList) != 1 || c.ViolationList[0] != want {
		t.Errorf("client %s: windows %d, in grace %d (max %d, latest %vms in), violations %d %+v; want 1, 2 (2, 300ms), 1 [%+v]",
			testID, c.RateLimitWindows, c.RequestsInGrace, c.MaxInGrace, c.MaxGraceDelayMS, c.Violations, c.ViolationList, want)
	}
	if b := clientReport(s, other.ClientID); b.Violations != 0 || b.RequestsInGrace != 0 {
		t.Errorf("client-b: %+v; want no violation", b)
	}
	if got := s.retryAfterGrace(); got != 300*time.Millisecond {
		t.Errorf("RetryAfterGrace = %s", got)
	}
	if got := New(Options{}).retryAfterGrace(); got != DefaultRetryAfterGrace {
		t.Errorf("default RetryAfterGrace = %s, want %s", got, DefaultRetryAfterGrace)
	}
}

func TestOutcomesAndIssuedTokens(t *testing.T) {
	clock := newClock()
	s, ts := newTest(t, Options{Now: clock.Now, Lifetime: time.Minute})
	if got := tokenStatus(t, ts, testID, testSecret); got != 200 {
		t.Fatalf("status %d", got)
	}
	issuedAt := clock.Now()
	clock.Add(time.Second)
	tokenStatus(t, ts, testID, "wrong")
	s.FailNext(1, Fault{Kind: FaultBadJWT})
	tokenStatus(t, ts, testID, testSecret) // a 200 without a token
	s.FailNext(1, Fault{Kind: FaultCloseConnection})
	if _, err := post(t, nil, ts, "/auth/token", "application/json", jsonCreds("client_credentials", testID, testSecret)); err == nil {
		t.Error("close_connection: got a reply")
	}
	s.FailNext(1, Fault{Kind: FaultHang})
	c := &http.Client{Transport: ts.Client().Transport, Timeout: 100 * time.Millisecond}
	if _, err := post(t, c, ts, "/auth/token", "application/json", jsonCreds("client_credentials", testID, testSecret)); !isTimeout(err) {
		t.Errorf("hang: err %v, want a timeout", err)
	}
	eventually(t, "the hung request to end", func() bool { return clientReport(s, testID).InFlight == 0 })

	got := clientReport(s, testID)
	want := OutcomeCounts{"200": 2, "401": 1, outcomeDropped: 1, outcomeClientGone: 1}
	if fmt.Sprint(got.Outcomes) != fmt.Sprint(want) || got.Requests != 5 || got.TokensIssued != 1 {
		t.Errorf("outcomes %v, requests %d, tokens %d; want %v, 5, 1", got.Outcomes, got.Requests, got.TokensIssued, want)
	}
	issued := s.issued(testID)
	if len(issued) != 1 || !issued[0].At.Equal(issuedAt) || !issued[0].Exp.Equal(issuedAt.Add(time.Minute)) {
		t.Errorf("issued %+v, want one token at %s expiring a minute later", issued, issuedAt)
	}
	if n := len(s.issued("nobody")); n != 0 {
		t.Errorf("issued to an unknown client: %d", n)
	}
}
