package standin

import (
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// What the stand-in records per client id, so that a test can check how a
// client paced its token requests: how many were in flight at once, and
// whether any arrived inside a Retry-After window the stand-in had given
// that client id.
const (
	// DefaultRetryAfterGrace is how long after a 429 a request of the same
	// client id may still arrive without counting as a violation of its
	// Retry-After: a request the client sent before the 429 reached it
	// arrives a little after the 429 left. On loopback that is a matter of
	// milliseconds, or tens of them on a loaded machine; a client that
	// sends a request after the 429 reached it is seldom that quick.
	DefaultRetryAfterGrace = 250 * time.Millisecond

	// maxKept bounds the issued tokens and violations kept per client id;
	// the counters go on counting.
	maxKept = 100_000

	// Outcomes that are not an HTTP status.
	outcomeDropped    = "dropped"     // the stand-in closed the connection without a reply
	outcomeClientGone = "client_gone" // the client left before the reply
)

// clientTracker holds the records of every client id.
type clientTracker struct {
	grace time.Duration

	mu      sync.Mutex
	clients map[string]*clientRecord
}

func newClientTracker(grace time.Duration) *clientTracker {
	return &clientTracker{grace: grace, clients: make(map[string]*clientRecord)}
}

// clientRecord is what happened to the token requests of one client id.
type clientRecord struct {
	requests     int64
	outcomes     *outcomes
	inFlight     int
	peakInFlight int
	peakAt       time.Time
	// hanging counts the requests in flight held by FaultHang, which end
	// only when the client gives up: the stand-in notices that a moment
	// after the client has let go and may have sent the next request.
	// peakAnswered is the peak of the others.
	hanging      int
	peakAnswered int
	// windows are the Retry-After windows still open at the last arrival.
	windows        []*window
	windowsOpened  int64
	inGrace        int64
	maxInGrace     int
	maxGraceDelay  time.Duration
	violations     []Violation
	violationCount int64
	issued         []IssuedToken
	issuedCount    int64
}

// window is the Retry-After of one 429: no request of its client id should
// arrive from start+grace until end.
type window struct {
	start, end time.Time
	inGrace    int
}

// Violation is a token request that arrived inside a Retry-After window,
// after the grace.
type Violation struct {
	At          time.Time `json:"at"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
}

// IssuedToken is when a token was sent to a client id and when it expires
// (its exp claim).
type IssuedToken struct {
	At  time.Time `json:"at"`
	Exp time.Time `json:"exp"`
}

// outcomes counts replies by outcome: an HTTP status ("200", "429"), or
// outcomeDropped or outcomeClientGone.
type outcomes struct {
	m map[string]int64
}

// OutcomeCounts is a copy of the counts of an outcomes.
type OutcomeCounts map[string]int64

func newOutcomes() *outcomes {
	return &outcomes{m: make(map[string]int64)}
}

func (o *outcomes) add(outcome string) {
	o.m[outcome]++
}

func (o *outcomes) counts() OutcomeCounts {
	return maps.Clone(o.m)
}

// record returns the record of clientID, creating it; t.mu must be held.
func (t *clientTracker) record(clientID string) *clientRecord {
	c := t.clients[clientID]
	if c == nil {
		c = &clientRecord{outcomes: newOutcomes()}
		t.clients[clientID] = c
	}
	return c
}

// tracked is one token request being served.
type tracked struct {
	t        *clientTracker
	clientID string
	replied  bool // the request no longer counts as in flight
	hung     bool // held by FaultHang
}

// arrive records a token request of clientID that arrived at at: it is in
// flight from now on, and is checked against the client's open Retry-After
// windows.
func (t *clientTracker) arrive(clientID string, at time.Time) *tracked {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.record(clientID)
	c.requests++
	c.inFlight++
	if c.inFlight > c.peakInFlight {
		c.peakInFlight, c.peakAt = c.inFlight, at
	}
	c.peakAnswered = max(c.peakAnswered, c.inFlight-c.hanging)
	open := c.windows[:0]
	for _, w := range c.windows {
		if !at.Before(w.end) {
			continue // over
		}
		open = append(open, w)
		switch {
		case at.Before(w.start):
			// Sent before the 429 that opened the window.
		case at.Sub(w.start) <= t.grace:
			w.inGrace++
			c.inGrace++
			c.maxInGrace = max(c.maxInGrace, w.inGrace)
			c.maxGraceDelay = max(c.maxGraceDelay, at.Sub(w.start))
		default:
			c.violationCount++
			if len(c.violations) < maxKept {
				c.violations = append(c.violations, Violation{At: at, WindowStart: w.start, WindowEnd: w.end})
			}
		}
	}
	c.windows = open
	return &tracked{t: t, clientID: clientID}
}

// hang marks the request as held until the client gives up (FaultHang).
func (tr *tracked) hang() {
	tr.t.mu.Lock()
	defer tr.t.mu.Unlock()
	if !tr.replied && !tr.hung {
		tr.hung = true
		tr.t.record(tr.clientID).hanging++
	}
}

// replying marks the request as no longer in flight: its reply is about to
// be sent, or its connection dropped. Later calls do nothing.
func (tr *tracked) replying() {
	tr.t.mu.Lock()
	defer tr.t.mu.Unlock()
	tr.endLocked()
}

func (tr *tracked) endLocked() {
	if !tr.replied {
		tr.replied = true
		c := tr.t.record(tr.clientID)
		c.inFlight--
		if tr.hung {
			c.hanging--
		}
	}
}

// rateLimited records the 429 about to be sent, at at, with retryAfter: a
// window in which the client should send nothing.
func (tr *tracked) rateLimited(at time.Time, retryAfter time.Duration) {
	tr.t.mu.Lock()
	defer tr.t.mu.Unlock()
	c := tr.t.record(tr.clientID)
	c.windows = append(c.windows, &window{start: at, end: at.Add(retryAfter)})
	c.windowsOpened++
}

// issued records a token sent whole to the client at at.
func (tr *tracked) issued(at, exp time.Time) {
	tr.t.mu.Lock()
	defer tr.t.mu.Unlock()
	c := tr.t.record(tr.clientID)
	c.issuedCount++
	if len(c.issued) < maxKept {
		c.issued = append(c.issued, IssuedToken{At: at, Exp: exp})
	}
}

// done ends the request with outcome; it is no longer in flight.
func (tr *tracked) done(outcome string) {
	tr.t.mu.Lock()
	defer tr.t.mu.Unlock()
	tr.endLocked()
	tr.t.record(tr.clientID).outcomes.add(outcome)
}

// ClientReport is what GET /_standin/clients reports for one client id.
type ClientReport struct {
	ClientID string        `json:"client_id"`
	Requests int64         `json:"requests"`
	Outcomes OutcomeCounts `json:"outcomes"`
	InFlight int           `json:"in_flight"`
	// PeakInFlight is the most token requests of the client id the
	// stand-in served at once, from arrival to the start of the reply,
	// and PeakAt when that was first reached.
	PeakInFlight int       `json:"peak_in_flight"`
	PeakAt       time.Time `json:"peak_at,omitzero"`
	// PeakAnswered is the peak counting only the requests the stand-in
	// answered, not those FaultHang held until the client gave up (which
	// the stand-in notices only a moment after the client has moved on).
	PeakAnswered int `json:"peak_in_flight_answered"`
	// RateLimitWindows counts the 429s sent; RequestsInGrace the requests
	// that arrived within the grace after one (MaxInGrace after the same
	// one, the latest MaxGraceDelayMS after it); Violations those that
	// arrived later inside a window.
	RateLimitWindows int64       `json:"rate_limit_windows"`
	RequestsInGrace  int64       `json:"requests_in_grace"`
	MaxInGrace       int         `json:"max_in_grace"`
	MaxGraceDelayMS  float64     `json:"max_grace_delay_ms"`
	Violations       int64       `json:"violations"`
	ViolationList    []Violation `json:"violation_list"`
	TokensIssued     int64       `json:"tokens_issued"`
}

// clientReports returns the records of every client id that sent a token
// request, by client id.
func (s *Server) clientReports() []ClientReport {
	t := s.clients
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]ClientReport, 0, len(t.clients))
	for _, id := range slices.Sorted(maps.Keys(t.clients)) {
		c := t.clients[id]
		out = append(out, ClientReport{
			ClientID: id, Requests: c.requests, Outcomes: c.outcomes.counts(),
			InFlight: c.inFlight, PeakInFlight: c.peakInFlight, PeakAt: c.peakAt, PeakAnswered: c.peakAnswered,
			RateLimitWindows: c.windowsOpened, RequestsInGrace: c.inGrace, MaxInGrace: c.maxInGrace,
			MaxGraceDelayMS: float64(c.maxGraceDelay.Microseconds()) / 1000,
			Violations:      c.violationCount, ViolationList: slices.Clone(c.violations),
			TokensIssued: c.issuedCount,
		})
	}
	return out
}

// issued returns when each token sent to clientID was sent and when it
// expires, oldest first (at most the first 100,000).
func (s *Server) issued(clientID string) []IssuedToken {
	t := s.clients
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.clients[clientID]; c != nil {
		return slices.Clone(c.issued)
	}
	return []IssuedToken{}
}

// retryAfterGrace returns the grace after a 429 within which a request is
// not a violation of its Retry-After.
func (s *Server) retryAfterGrace() time.Duration {
	return s.clients.grace
}

// trackedWriter ends a tracked request's time in flight when the reply
// starts, and remembers the status. Unwrap lets http.ResponseController
// reach the connection beneath, for Flush and Hijack.
type trackedWriter struct {
	http.ResponseWriter
	tr     *tracked
	status int
}

func (w *trackedWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
		w.tr.replying()
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *trackedWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

func (w *trackedWriter) Unwrap() http.ResponseWriter {
	return w.ResponseWriter
}

// outcome names how the request ended.
func (w *trackedWriter) outcome(r *http.Request, dropped bool) string {
	switch {
	case w.status != 0:
		return strconv.Itoa(w.status)
	case dropped:
		return outcomeDropped
	case r.Context().Err() != nil:
		return outcomeClientGone
	}
	return outcomeDropped
}
