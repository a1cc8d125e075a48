package piwik

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// The pressure one Vault node puts on one Piwik PRO credential.
const (
	// maxInFlight caps the token requests in flight with one credential
	// on one node. Readers beyond it wait, within their own deadline,
	// instead of adding requests: with token reuse a role needs one
	// request per token life, so a handful covers every role sharing a
	// credential, and a herd of mint-per-read readers no longer turns into
	// a herd of requests.
	maxInFlight = 4

	// failuresBeforeBackoff is how many transient failures in a row make
	// a credential back off: after them, requests pause for a jittered
	// window that doubles with each further failure, up to maxBackoff,
	// and then a single request at a time probes until one succeeds.
	failuresBeforeBackoff = 2
	backoffBase           = 500 * time.Millisecond
	maxBackoff            = 30 * time.Second

	// maxWindow caps the window one reply can open. Piwik PRO's limits are
	// per minute; a Retry-After of hours is broken or hostile, and must not
	// shut a credential for that long on the word of one reply: after
	// maxWindow one request probes again.
	maxWindow = 5 * time.Minute
)

// gate paces the token requests of one credential on one node: at most
// maxInFlight at once, none inside a rate-limit window Piwik PRO asked for
// (Retry-After) or a backoff window after repeated transient failures, and
// only one at a time while probing after such a window. It is shared by
// every role that uses the credential.
type gate struct {
	now func() time.Time

	mu       sync.Mutex
	inFlight int
	// until is when the current window ends; no request is sent before.
	until time.Time
	// last is the failure that opened the window, for fail-fast errors.
	last *upstreamError
	// failures counts transient failures in a row, the latest learned at
	// failedAt.
	failures int
	failedAt time.Time
	// probing is true from a window until the next success: one request
	// at a time.
	probing bool
	// changed is closed and replaced whenever a slot frees or the state
	// changes, waking the readers waiting for a slot.
	changed chan struct{}
	// used is when a request last took or returned a slot, for pruning.
	used time.Time
	// peak, when set, records the most requests in flight on any gate.
	peak *atomic.Int64
}

func newGate(now func() time.Time) *gate {
	return &gate{now: now, changed: make(chan struct{}), used: now()}
}

// acquire waits for the right to send one request. Inside a window it
// fails at once with an error that says why and how long is left (its
// RetryAfter), without sending anything; while the in-flight limit is
// reached it waits for a slot until ctx ends. A nil gate lets everything
// through.
func (g *gate) acquire(ctx context.Context) error {
	if g == nil {
		return nil
	}
	for {
		// A caller whose context ended would only send a request it can
		// no longer wait for, and teach the gate a failure of its own.
		if err := ctx.Err(); err != nil {
			return err
		}
		g.mu.Lock()
		if left := g.until.Sub(g.now()); left > 0 {
			err := g.notSent(left)
			g.mu.Unlock()
			return err
		}
		if g.inFlight < g.limit() {
			g.inFlight++
			g.used = g.now()
			g.recordPeak()
			g.mu.Unlock()
			return nil
		}
		changed := g.changed
		g.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// recordPeak raises the shared peak to the requests now in flight.
func (g *gate) recordPeak() {
	if g.peak == nil {
		return
	}
	for n := int64(g.inFlight); ; {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

// release returns a slot taken by acquire and learns from err, the outcome
// of the request sent with it.
func (g *gate) release(err error) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inFlight--
	g.used = g.now()
	g.learn(err)
	close(g.changed)
	g.changed = make(chan struct{})
}

// limit is how many requests may be in flight now.
func (g *gate) limit() int {
	if g.probing {
		return 1
	}
	return maxInFlight
}

// learn updates the windows from the outcome of one request. A success or
// a definite answer ends the run of failures, but not a window still open:
// a request sent alongside the one that got a 429 may well succeed, and
// Piwik PRO still asked for quiet.
func (g *gate) learn(err error) {
	upErr, isUpstream := asUpstreamError(err)
	switch {
	case err == nil:
		g.settle()
	case !isUpstream:
		// The caller gave up: nothing was learned about Piwik PRO.
	case upErr.Kind == kindRateLimited:
		g.failures, g.failedAt = g.failures+1, g.now()
		wait := upErr.RetryAfter
		if wait <= 0 {
			wait = backoffWindow(g.failures)
		}
		g.open(wait, upErr)
	case upErr.transient():
		g.failures, g.failedAt = g.failures+1, g.now()
		if g.failures >= failuresBeforeBackoff {
			g.open(backoffWindow(g.failures), upErr)
		}
	default:
		// A definite answer (rejected credentials, an unusable reply):
		// Piwik PRO is up, and backing off would not change its answer.
		g.settle()
	}
}

// settle ends the run of failures; once no window is open any more, the
// probing ends too.
func (g *gate) settle() {
	g.failures = 0
	if !g.until.After(g.now()) {
		g.probing, g.until, g.last = false, time.Time{}, nil
	}
}

// open starts a window of d, at most maxWindow (never shortening one
// already open), after which one request at a time probes.
func (g *gate) open(d time.Duration, cause *upstreamError) {
	if until := g.now().Add(min(d, maxWindow)); until.After(g.until) {
		g.until = until
	}
	g.probing = true
	copied := *cause
	g.last = &copied
}

// notSent is the fail-fast error inside a window: the failure that opened
// it, marked as not sent, with the time left as its RetryAfter.
func (g *gate) notSent(left time.Duration) error {
	e := *g.last
	e.NotSent = true
	e.RetryAfter = left
	e.Attempts = 0
	if e.Kind != kindRateLimited {
		e.Detail = fmt.Sprintf("%s; after %d failures in a row", e.Detail, g.failures)
	}
	return &e
}

// backoffWindow is the jittered pause after the n-th transient failure in
// a row: backoffBase doubling from failuresBeforeBackoff on, up to
// maxBackoff, drawn from [w/2, w] so that nodes do not probe in lockstep.
func backoffWindow(n int) time.Duration {
	w := backoffBase << min(max(n-failuresBeforeBackoff, 0), 16)
	w = min(w, maxBackoff)
	return w/2 + rand.N(w/2+1)
}

// gates holds one gate per credential (account url and client id) on this
// node; roles with the same credential share it.
type gates struct {
	now    func() time.Time
	mu     sync.Mutex
	m      map[string]*gate
	pruned time.Time // when pruneIdle last ran
	// peak is the most requests that were in flight with one credential
	// at once, since the plugin started: the cap seen from inside.
	peak atomic.Int64
}

func newGates(now func() time.Time) *gates {
	return &gates{now: now, m: make(map[string]*gate)}
}

// maxIdleGates bounds the gates kept for credentials no longer in use.
const maxIdleGates = 1024

// get returns the gate of the credential key, creating it on first use.
func (s *gates) get(key string) *gate {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g, ok := s.m[key]; ok {
		return g
	}
	if now := s.now(); len(s.m) >= maxIdleGates && now.Sub(s.pruned) > time.Second {
		s.pruned = now
		s.pruneIdle(now)
	}
	g := newGate(s.now)
	g.peak = &s.peak
	s.m[key] = g
	return g
}

// pruneIdle drops the gates with nothing in flight and no window open that
// have not been used for maxBackoff: all they still hold is a short run of
// failures, which a new gate would learn again.
func (s *gates) pruneIdle(now time.Time) {
	for key, g := range s.m {
		g.mu.Lock()
		idle := g.inFlight == 0 && !g.until.After(now) && now.Sub(g.used) > maxBackoff
		g.mu.Unlock()
		if idle {
			delete(s.m, key)
		}
	}
}

// lift ends the windows and the run of failures of the credential key, in
// place, so that the requests it has in flight still count against its
// cap: a stored write of that credential, verified with a request sent at
// verified, is fresher news than a failure learned before. A window opened
// by a failure learned at or after verified stays: it is newer than the
// verification.
func (s *gates) lift(key string, verified time.Time) {
	s.mu.Lock()
	g := s.m[key]
	s.mu.Unlock()
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.failedAt.IsZero() && !g.failedAt.Before(verified) {
		return
	}
	g.failures, g.probing, g.until, g.last = 0, false, time.Time{}, nil
	close(g.changed)
	g.changed = make(chan struct{})
}

// record learns from err, the outcome of a request sent outside the gate
// (an operator's verification), without a slot.
func (g *gate) record(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.learn(err)
}
