package piwik

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// latencyWindow is how many recent upstream latencies the percentiles are
// computed over.
const latencyWindow = 1024

// metrics counts what the engine did since the plugin process started on
// this node. It is in memory only.
type metrics struct {
	mu               sync.Mutex
	started          time.Time
	tokensMinted     uint64
	reuseHits        uint64
	upstreamRequests uint64
	failures         map[errorKind]uint64
	latencies        []time.Duration // ring buffer of the last latencyWindow
	next             int
}

func newMetrics() *metrics {
	return &metrics{started: time.Now(), failures: make(map[errorKind]uint64)}
}

// attempt records one upstream request.
func (m *metrics) attempt(a attempt) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.upstreamRequests++
	if a.Err == nil {
		m.tokensMinted++
	} else {
		m.failures[failureKind(a.Err)]++
	}
	if len(m.latencies) < latencyWindow {
		m.latencies = append(m.latencies, a.Latency)
	} else {
		m.latencies[m.next] = a.Latency
		m.next = (m.next + 1) % latencyWindow
	}
}

// reuseHit records a read served from the token cache.
func (m *metrics) reuseHit() {
	m.mu.Lock()
	m.reuseHits++
	m.mu.Unlock()
}

// failureKind names what went wrong; errors that are not the upstream's
// (the caller gave up) count as "canceled".
func failureKind(err error) errorKind {
	var upErr *upstreamError
	if errors.As(err, &upErr) {
		return upErr.Kind
	}
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	return "other"
}

// snapshot renders the counters for the metrics path.
func (m *metrics) snapshot() map[string]any {
	m.mu.Lock()
	defer m.mu.Unlock()
	failures := make(map[string]any, len(m.failures))
	var failed uint64
	for kind, n := range m.failures {
		failures[string(kind)] = n
		failed += n
	}
	sorted := slices.Clone(m.latencies)
	slices.Sort(sorted)
	return map[string]any{
		"since":             m.started.UTC().Format(time.RFC3339),
		"tokens_minted":     m.tokensMinted,
		"reuse_hits":        m.reuseHits,
		"upstream_requests": m.upstreamRequests,
		"upstream_failures": failed,
		"failures_by_kind":  failures,
		"upstream_latency_ms": map[string]any{
			"samples": len(sorted),
			"p50":     percentileMillis(sorted, 0.50),
			"p90":     percentileMillis(sorted, 0.90),
			"p99":     percentileMillis(sorted, 0.99),
			"max":     percentileMillis(sorted, 1),
		},
	}
}

// percentileMillis returns the p-th percentile of sorted in milliseconds
// (nearest rank), 0 when there are no samples.
func percentileMillis(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i].Microseconds()) / 1000
}
