package main

import (
	"strings"
	"testing"
	"time"
)

// fakeResults are the results of an imaginary run on dev and raft in
// which every target is met except raft's leased-reuse throughput.
func fakeResults() *results {
	cfg := config{concurrency: 4, duration: 4 * time.Second, rounds: 2, warmup: time.Second, rssReads: 100, rssRoles: 10, leases: 1000}
	r := newResults(cfg)
	rates := map[string]map[string]int64{
		"dev":  {"kv": 5000, "base-l": 2000, "reuse-l": 2000, "mint-l": 1400, "base-u": 2500, "reuse-u": 2500, "mint-u": 1700},
		"raft": {"kv": 5000, "base-l": 600, "reuse-l": 500, "mint-l": 550, "base-u": 3000, "reuse-u": 2900, "mint-u": 2000},
	}
	for _, key := range []string{"dev", "raft"} {
		r.addEntry(entry{key: key, title: key})
		for _, s := range allScenarios {
			t := r.tally(key, s.key)
			t.reads, t.seconds = rates[key][s.key]*4, 4
			t.perRound = []float64{float64(rates[key][s.key]) * 0.9, float64(rates[key][s.key]) * 1.1}
			if s.reuse {
				t.perRound[0], t.perRound[1] = t.perRound[1], t.perRound[0]
			}
			t.latencies = []time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond}
			t.cpu = map[string]time.Duration{cpuVault: time.Duration(t.reads) * 300 * time.Microsecond}
			switch {
			case s.plugin == pluginName && s.reuse:
				t.upstream = 1
			case s.plugin == pluginName:
				t.upstream = t.requests()
			}
		}
	}
	r.memory = []memoryResult{{mode: "leased", roles: 10, reads: 100, upstream: 10, rss: 30 << 20, hwm: 31 << 20}}
	r.bursts = []burstResult{{entry: "dev", mode: "leased", clients: 8, reads: 32, upstream: 1}}
	r.footprint = footprintResult{reads: 1000, points: []footprint{
		{label: "before", heap: 10 << 20, rss: 100 << 20, snapState: 5 << 20},
		{label: "after leased", leases: 1000, heap: 11 << 20, rss: 103 << 20, snapState: 6 << 20},
		{label: "after unleased", leases: 1000, heap: 11 << 20, rss: 103 << 20, snapState: 6 << 20},
	}}
	r.steady = steadyResult{ttl: 8 * time.Second, rate: 10, duration: 24 * time.Second, mintReqs: 240, mintUp: 240, reuseUp: 6,
		samples: []steadySample{{at: 12 * time.Second, mint: 80, reuse: 60}, {at: 20 * time.Second, mint: 80, reuse: 60}}}
	return r
}

func TestRenderReport(t *testing.T) {
	r := fakeResults()
	out := r.render()
	for _, want := range []string{
		"## Throughput and latency", "## Ratios", "## CPU time per read", "## Upstream token requests",
		"## Plugin memory", "## What a lease costs Vault", "## Leases at a steady read rate",
		"## Capacity summary", "## Targets",
		"| leased reuse / leased baseline | 1.00 [0.82–1.22] |",
		"| raft: piwik, unleased, token_reuse ≥ 0.90 × baseline, unleased (reads/s) | 2900 / 3000 = 0.97 [0.79–1.18] | PASS |",
		"| raft: piwik, unleased, token_reuse ≥ 3.00 × piwik, leased, token_reuse (reads/s) | 2900 / 500 = 5.80 [5.80–5.80] | PASS |",
		"| steady state, mint: leases = rate × token life (±15 %) | 80 for 80 | PASS |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if !strings.Contains(out, "| raft: piwik, leased, token_reuse ≥ 0.95 × baseline, leased (reads/s), p99 ≤ 1.2 × | 500 / 600 = 0.83") {
		t.Error("report lacks raft's leased-reuse target")
	}
	if !r.missed() {
		t.Error("missed() is false although raft's leased reuse is at 0.83")
	}
}
