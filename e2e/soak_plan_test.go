package e2e

import (
	"math"
	"time"
)

// soakPlan is the schedule of a soak run, scaled to its duration: a cycle
// of 150s at full scale (`make soak` runs four), shrunk to fit one cycle
// into shorter runs.
type soakPlan struct {
	duration time.Duration
	cycles   int
	scale    float64
	phases   []phaseSpec
	// lifetime is the stand-in's token lifetime; minRemaining the
	// token_reuse roles' reuse_min_remaining.
	lifetime, minRemaining time.Duration
	// reloadAt is when the plugin is reloaded, idleAt when it is first
	// measured idle (then again at the end).
	reloadAt, idleAt time.Duration
}

// The credentials of the token_reuse roles; the minting roles use the
// config's.
const (
	soakReuseClient   = "soak-reuse-leased"
	soakDeletedClient = "soak-reuse-unleased" // deleted and restored each cycle
)

// settleTime is how long after the readers pause every mint they started
// has ended: the plugin bounds one by request_timeout.
const settleTime = defaultRequestTimeout + time.Second

// quietPhase is the least duration of the normal phase in which the plugin
// is first measured idle: the settle time and three measurements.
const quietPhase = settleTime + 3*time.Second

func newSoakPlan(d time.Duration) soakPlan {
	p := soakPlan{duration: d, cycles: max(1, int(math.Round(d.Seconds()/150)))}
	cycle := d / time.Duration(p.cycles)
	// Every phase but the quiet one scales with the cycle.
	p.scale = min(cycle.Seconds()/150, (cycle-quietPhase).Seconds()/(150-15))
	sec := func(n float64) time.Duration {
		return time.Duration(n * p.scale * float64(time.Second)).Round(time.Millisecond)
	}
	whole := func(n float64) int { return max(1, int(math.Round(n*p.scale))) }
	retryAfter, retryAfterShort := max(2, whole(12)), max(2, whole(6))
	phase := func(name string, d time.Duration, fault map[string]any) phaseSpec {
		return phaseSpec{Name: name, DurationMS: d.Milliseconds(), Fault: fault}
	}
	p.phases = []phaseSpec{
		phase("normal", sec(10), nil),
		phase("429 burst", sec(10), map[string]any{"kind": "rate_limit", "retry_after": retryAfter}),
		phase("normal", sec(15), nil),
		// Slower than usual but within one attempt's share of the
		// request_timeout (a third of it): the minting roles' requests
		// pile up to the cap.
		phase("slow 2s", sec(15), map[string]any{"kind": "slow", "delay_ms": 2000}),
		// A 429 while slow replies are still on their way: their success
		// must not end the Retry-After window.
		phase("429 after slow", sec(5), map[string]any{"kind": "rate_limit", "retry_after": retryAfterShort}),
		phase("500", sec(10), map[string]any{"kind": "server_error"}),
		phase("502", sec(10), map[string]any{"kind": "bad_gateway"}),
		// In cycle 0 the readers pause here while the plugin is measured.
		phase("normal (quiet)", max(sec(15), quietPhase), nil),
		phase("hang", sec(20), map[string]any{"kind": "hang"}),
		phase("normal", sec(10), nil),
		{Name: "credential deleted", DurationMS: sec(20).Milliseconds(), Revoke: []string{soakDeletedClient}},
		phase("normal", sec(10), nil),
	}
	// A token lives 120s at full scale; token_reuse roles refresh it after
	// 15s (so a 20s deletion always meets a refresh), and a cached token
	// outlives the longest outage (429, 500 and 502: 25s) with more than the
	// stale floor (a quarter of its life, 30s) left.
	p.lifetime = max(8*time.Second, sec(120).Truncate(time.Second))
	p.minRemaining = max(6*time.Second, sec(105).Truncate(time.Second))
	// The reload comes early, before the first fault: the process that runs
	// after it meets every fault, and no Retry-After window is open, which
	// a new process could not know of (the gate is in memory).
	p.reloadAt = sec(5)
	for _, ph := range p.phases[:7] {
		p.idleAt += time.Duration(ph.DurationMS) * time.Millisecond
	}
	return p
}

// phaseAt returns the name of the phase at offset since the load began.
func (p soakPlan) phaseAt(offset time.Duration) string {
	var cycle time.Duration
	for _, ph := range p.phases {
		cycle += time.Duration(ph.DurationMS) * time.Millisecond
	}
	offset %= cycle
	for _, ph := range p.phases {
		if offset < time.Duration(ph.DurationMS)*time.Millisecond {
			return ph.Name
		}
		offset -= time.Duration(ph.DurationMS) * time.Millisecond
	}
	return ""
}

// soakRole is one role the readers read.
type soakRole struct {
	name     string
	clientID string // the credential it mints with
	reuse    bool
	leased   bool
	readers  int
}
