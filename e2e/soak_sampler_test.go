package e2e

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/harness"
)

// What the soak measures of the plugin it runs: the shipped binary, from
// outside, through /proc. Its goroutines cannot be counted from outside; a
// leak of them shows as what they hold: open files (a connection each),
// threads and memory.

// pluginState is the plugin process at one moment.
type pluginState struct {
	pid     int
	rssKB   int64
	threads int64
	files   int // open file descriptors
	conns   int // of which established connections to the stand-in
}

// netFiles is the open files other than connections to Piwik PRO, which
// the transport keeps idle for 90s and so come and go with the load.
func (p pluginState) netFiles() int { return p.files - p.conns }

// measurePlugin reads pid's state from /proc; standinURL tells its
// connections to the stand-in apart.
func measurePlugin(pid int, standinURL string) (pluginState, error) {
	p := pluginState{pid: pid}
	var errs [4]error
	p.rssKB, errs[0] = harness.Status(pid, "VmRSS")
	p.threads, errs[1] = harness.Status(pid, "Threads")
	p.files, errs[2] = harness.OpenFiles(pid)
	p.conns, errs[3] = harness.ConnectionsTo(pid, standinURL)
	return p, errors.Join(errs[:]...)
}

// soakSample is what the sampler saw at one moment.
type soakSample struct {
	at                     time.Time
	reads, failed, stale   int
	tokenRequests, windows int64
	violations             int64
	peakInFlight           int
	plugin                 pluginState
	err                    string
}

// idleSample is the plugin measured while nothing was read.
type idleSample struct {
	label string
	at    time.Time
	pluginState
	err string
}

// measureIdle stops the reads, waits until every mint they started has
// ended, and measures the plugin three times a second apart (the median of
// each count counts).
func (sk *soak) measureIdle(label string) {
	sk.readGate.Lock()
	defer sk.readGate.Unlock()
	time.Sleep(settleTime)
	var tries []idleSample
	for i := range 3 {
		if i > 0 {
			time.Sleep(time.Second)
		}
		s := idleSample{label: label, at: time.Now()}
		pids := sk.pluginPIDs()
		var err error
		if len(pids) != 1 {
			err = fmt.Errorf("%d plugin processes", len(pids))
		} else {
			s.pluginState, err = measurePlugin(pids[0], sk.st.url)
		}
		if err != nil {
			s.err = err.Error()
		}
		tries = append(tries, s)
	}
	sort.Slice(tries, func(a, b int) bool { return tries[a].netFiles() < tries[b].netFiles() })
	median := tries[1]
	median.rssKB = medianOf(tries, func(s idleSample) int64 { return s.rssKB })
	median.threads = medianOf(tries, func(s idleSample) int64 { return s.threads })
	sk.mu.Lock()
	sk.idle = append(sk.idle, median)
	sk.mu.Unlock()
}

// medianOf is the median of field over three samples.
func medianOf(samples []idleSample, field func(idleSample) int64) int64 {
	var v []int64
	for _, s := range samples {
		v = append(v, field(s))
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// sampler records a soakSample every sampleEvery until ctx ends.
func (sk *soak) sampler(ctx context.Context) {
	tick := time.NewTicker(sk.sampleEvery())
	defer tick.Stop()
	for {
		sk.sample()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sampleEvery is the sampler's period: 5s, or less for short runs.
func (sk *soak) sampleEvery() time.Duration {
	return min(5*time.Second, max(time.Second, sk.plan.duration/30))
}

func (sk *soak) sample() {
	s := soakSample{at: time.Now()}
	var errs []error
	sk.mu.Lock()
	for _, r := range sk.reads {
		s.reads++
		if r.err != nil {
			s.failed++
		}
		if isStale(r) {
			s.stale++
		}
	}
	sk.mu.Unlock()
	stats, err := sk.st.api().Stats()
	errs = append(errs, err)
	s.tokenRequests = stats.TokenRequests
	clients, err := sk.st.api().Clients()
	errs = append(errs, err)
	for _, c := range clients.Clients {
		s.windows += c.RateLimitWindows
		s.violations += c.Violations
		s.peakInFlight = max(s.peakInFlight, c.PeakInFlight)
	}
	if pids := sk.pluginPIDs(); len(pids) == 1 {
		s.plugin, err = measurePlugin(pids[0], sk.st.url)
		errs = append(errs, err)
	} else {
		errs = append(errs, fmt.Errorf("%d plugin processes", len(pids)))
	}
	if err := errors.Join(errs...); err != nil {
		s.err = err.Error()
	}
	sk.mu.Lock()
	sk.samples = append(sk.samples, s)
	sk.mu.Unlock()
}

// pluginPIDs returns the processes the soak's Vault runs the plugin in.
func (sk *soak) pluginPIDs() []int {
	return harness.ChildrenRunning(sk.v.proc.PID(), filepath.Join(sk.v.pluginDir, pluginName))
}
