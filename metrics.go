package piwik

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"
)

// latencyWindow is how many recent upstream latencies the percentiles are
// computed over.
const latencyWindow = 1024

// inFlightPeakHelp describes the in-flight peak in both formats.
var inFlightPeakHelp = fmt.Sprintf("The most token requests that were in flight with one credential at once on this node (the cap is %d).", maxInFlight)

// metrics counts what the engine did since the plugin process started on
// this node, for this mount. It is in memory only.
type metrics struct {
	mu               sync.Mutex
	started          time.Time
	tokensMinted     uint64
	reuseHits        uint64
	staleServes      uint64
	tokensLoaded     uint64
	refreshes        uint64
	upstreamRequests uint64
	abandoned        uint64
	failures         map[errorKind]uint64
	notSent          map[errorKind]uint64
	latencySum       time.Duration
	latencies        []time.Duration // ring buffer of the last latencyWindow
	next             int
	// inFlightPeak is the gates' peak of requests in flight with one
	// credential.
	inFlightPeak *atomic.Int64
}

func newMetrics(inFlightPeak *atomic.Int64) *metrics {
	return &metrics{started: time.Now(), failures: make(map[errorKind]uint64), notSent: make(map[errorKind]uint64), inFlightPeak: inFlightPeak}
}

// attempt records one upstream request.
func (m *metrics) attempt(a attempt) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.upstreamRequests++
	switch {
	case a.Err == nil:
		m.tokensMinted++
	case isCallerError(a.Err):
		// The caller stopped waiting: not a failure of Piwik PRO's.
		m.abandoned++
	default:
		m.failures[failureKind(a.Err)]++
	}
	m.latencySum += a.Latency
	if len(m.latencies) < latencyWindow {
		m.latencies = append(m.latencies, a.Latency)
	} else {
		m.latencies[m.next] = a.Latency
		m.next = (m.next + 1) % latencyWindow
	}
}

// count adds one to counter, one of m's fields.
func (m *metrics) count(counter *uint64) {
	m.mu.Lock()
	*counter++
	m.mu.Unlock()
}

// reuseHit records a read served from the token cache.
func (m *metrics) reuseHit() {
	m.count(&m.reuseHits)
}

// tokenLoaded records a token loaded from storage into this node's cache.
func (m *metrics) tokenLoaded() {
	m.count(&m.tokensLoaded)
}

// backgroundRefresh records a background refresh of a token_reuse role's
// token (refresh-ahead or periodic).
func (m *metrics) backgroundRefresh() {
	m.count(&m.refreshes)
}

// staleServe records a read served a cached token because a new one could
// not be had.
func (m *metrics) staleServe() {
	m.count(&m.staleServes)
}

// notSentRequest records a mint refused without a request, inside a
// rate-limit or backoff window opened by a failure of kind.
func (m *metrics) notSentRequest(kind errorKind) {
	m.mu.Lock()
	m.notSent[kind]++
	m.mu.Unlock()
}

// failureKind names what went wrong: the upstream error's kind, "canceled"
// for a wait the caller ended, "other" for anything else.
func failureKind(err error) errorKind {
	if upErr, ok := asUpstreamError(err); ok {
		return upErr.Kind
	}
	if isCallerError(err) {
		return "canceled"
	}
	return "other"
}

// reading is a consistent copy of the counters.
type reading struct {
	started                                          time.Time
	minted, reuseHits, staleServes, requests, failed uint64
	abandoned, loaded, refreshes                     uint64
	failures, notSent                                map[errorKind]uint64
	latencySum                                       time.Duration
	sorted                                           []time.Duration // the window, sorted
	inFlightPeak                                     int64
}

func (m *metrics) read() reading {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := reading{
		started: m.started, minted: m.tokensMinted, reuseHits: m.reuseHits, staleServes: m.staleServes,
		requests: m.upstreamRequests, abandoned: m.abandoned, loaded: m.tokensLoaded, refreshes: m.refreshes, failures: maps.Clone(m.failures), notSent: maps.Clone(m.notSent),
		latencySum: m.latencySum, sorted: slices.Clone(m.latencies), inFlightPeak: m.inFlightPeak.Load(),
	}
	for _, n := range m.failures {
		r.failed += n
	}
	slices.Sort(r.sorted)
	return r
}

// snapshot renders the counters for the metrics path's JSON form.
func (m *metrics) snapshot() map[string]any {
	r := m.read()
	byKind := func(counts map[errorKind]uint64) (map[string]any, uint64) {
		out := make(map[string]any, len(counts))
		var total uint64
		for kind, n := range counts {
			out[string(kind)] = n
			total += n
		}
		return out, total
	}
	failures, _ := byKind(r.failures)
	notSent, notSentTotal := byKind(r.notSent)
	return map[string]any{
		"since":                   r.started.UTC().Format(time.RFC3339),
		"tokens_minted":           r.minted,
		"reuse_hits":              r.reuseHits,
		"stale_serves":            r.staleServes,
		"tokens_loaded":           r.loaded,
		"background_refreshes":    r.refreshes,
		"upstream_requests":       r.requests,
		"upstream_failures":       r.failed,
		"requests_abandoned":      r.abandoned,
		"failures_by_kind":        failures,
		"requests_not_sent":       notSentTotal,
		"upstream_in_flight_peak": r.inFlightPeak,
		"not_sent_by_kind":        notSent,
		"upstream_latency_ms": map[string]any{
			"samples": len(r.sorted),
			"p50":     percentileMillis(r.sorted, 0.50),
			"p90":     percentileMillis(r.sorted, 0.90),
			"p99":     percentileMillis(r.sorted, 0.99),
			"max":     percentileMillis(r.sorted, 1),
		},
	}
}

// prometheus renders the counters in the Prometheus text exposition
// format, labelled with the mount they belong to.
func (m *metrics) prometheus(mount string) ([]byte, error) {
	r := m.read()
	mountLabel := &dto.LabelPair{Name: proto.String("mount"), Value: proto.String(mount)}
	counter := func(name, help string, v uint64, labels ...*dto.LabelPair) *dto.MetricFamily {
		return &dto.MetricFamily{Name: proto.String(name), Help: proto.String(help), Type: dto.MetricType_COUNTER.Enum(),
			Metric: []*dto.Metric{{Label: append([]*dto.LabelPair{mountLabel}, labels...), Counter: &dto.Counter{Value: proto.Float64(float64(v))}}}}
	}
	// Every kind is written, at 0 until it happens, so that the first
	// failure after a start is an increase a rate() or an alert sees, not
	// a new series.
	byKind := func(name, help string, counts map[errorKind]uint64) *dto.MetricFamily {
		family := &dto.MetricFamily{Name: proto.String(name), Help: proto.String(help), Type: dto.MetricType_COUNTER.Enum()}
		for _, kind := range slices.Sorted(maps.Keys(withEveryKind(counts))) {
			family.Metric = append(family.Metric, &dto.Metric{
				Label:   []*dto.LabelPair{{Name: proto.String("kind"), Value: proto.String(string(kind))}, mountLabel},
				Counter: &dto.Counter{Value: proto.Float64(float64(counts[kind]))},
			})
		}
		return family
	}
	var quantiles []*dto.Quantile
	for _, q := range []float64{0.5, 0.9, 0.99} {
		quantiles = append(quantiles, &dto.Quantile{Quantile: proto.Float64(q), Value: proto.Float64(percentileMillis(r.sorted, q) / 1000)})
	}
	families := []*dto.MetricFamily{
		counter("piwik_tokens_minted_total", "Tokens Piwik PRO issued, verification and check included.", r.minted),
		counter("piwik_reuse_hits_total", "Reads served from the token cache of a token_reuse role.", r.reuseHits),
		counter("piwik_stale_serves_total", "Reads served a still-valid cached token because a new one could not be had.", r.staleServes),
		counter("piwik_tokens_loaded_total", "Tokens of token_reuse roles loaded from storage into this node's cache.", r.loaded),
		counter("piwik_background_refreshes_total", "Background mints of a token_reuse role's next token (refresh-ahead and periodic).", r.refreshes),
		counter("piwik_upstream_requests_total", "Requests sent to Piwik PRO, retries included.", r.requests),
		counter("piwik_requests_abandoned_total", "Requests to Piwik PRO whose caller stopped waiting (its deadline or cancellation): not failures of Piwik PRO's.", r.abandoned),
		byKind("piwik_upstream_failures_total", "Requests to Piwik PRO that failed, by kind.", r.failures),
		byKind("piwik_requests_not_sent_total", "Token requests refused without a request, inside a rate-limit or backoff window, by the kind of failure that opened it.", r.notSent),
		{
			Name: proto.String("piwik_upstream_request_duration_seconds"), Help: proto.String(fmt.Sprintf("Duration of requests to Piwik PRO; quantiles over the last %d.", latencyWindow)),
			Type: dto.MetricType_SUMMARY.Enum(),
			Metric: []*dto.Metric{{Label: []*dto.LabelPair{mountLabel}, Summary: &dto.Summary{
				SampleCount: proto.Uint64(r.requests), SampleSum: proto.Float64(r.latencySum.Seconds()), Quantile: quantiles,
			}}},
		},
		{
			Name: proto.String("piwik_upstream_in_flight_peak"), Help: proto.String(inFlightPeakHelp),
			Type:   dto.MetricType_GAUGE.Enum(),
			Metric: []*dto.Metric{{Label: []*dto.LabelPair{mountLabel}, Gauge: &dto.Gauge{Value: proto.Float64(float64(r.inFlightPeak))}}},
		},
		{
			Name: proto.String("piwik_metrics_start_time_seconds"), Help: proto.String("When counting started: the plugin's start on this node, in Unix seconds."),
			Type:   dto.MetricType_GAUGE.Enum(),
			Metric: []*dto.Metric{{Label: []*dto.LabelPair{mountLabel}, Gauge: &dto.Gauge{Value: proto.Float64(float64(r.started.Unix()))}}},
		},
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if len(f.Metric) == 0 {
			continue
		}
		if err := enc.Encode(f); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// allKinds are the failure kinds a counter by kind always reports.
var allKinds = []errorKind{
	kindUnreachable, kindTLS, kindTimeout, kindRedirect, kindCredentials, kindNoLicense,
	kindRateLimited, kindServer, kindUnexpected, kindBadReply, "other",
}

// withEveryKind returns counts with a 0 for every kind it lacks.
func withEveryKind(counts map[errorKind]uint64) map[errorKind]uint64 {
	out := maps.Clone(counts)
	for _, kind := range allKinds {
		out[kind] += 0
	}
	return out
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
