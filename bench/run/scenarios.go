package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/bench/loadgen"
	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/harness"
)

// scenario is one path read under load.
type scenario struct {
	key    string
	title  string
	path   string
	plugin string // the plugin process serving it; empty for kv-v2
	leased bool
	reuse  bool
	// base is the key of the baseline it is compared with.
	base string
}

// allScenarios run in this order in every round.
var allScenarios = []scenario{
	{key: "kv", title: "kv-v2 read", path: "kv/data/bench", leased: false},
	{key: "base-l", title: "baseline, leased", path: "baseline/creds/x", plugin: baselineName, leased: true},
	{key: "reuse-l", title: "piwik, leased, token_reuse", path: "piwik/creds/reuse", plugin: pluginName, leased: true, reuse: true, base: "base-l"},
	{key: "mint-l", title: "piwik, leased, mint per read", path: "piwik/creds/mint", plugin: pluginName, leased: true, base: "base-l"},
	{key: "base-u", title: "baseline, unleased", path: "baseline/unleased/x", plugin: baselineName},
	{key: "reuse-u", title: "piwik, unleased, token_reuse", path: "piwik/creds/ureuse", plugin: pluginName, reuse: true, base: "base-u"},
	{key: "mint-u", title: "piwik, unleased, mint per read", path: "piwik/creds/umint", plugin: pluginName, base: "base-u"},
}

// The processes whose CPU time is tallied per scenario.
const (
	cpuVault    = "vault"
	cpuPiwik    = "piwik"
	cpuBaseline = "baseline"
	cpuStandin  = "standin"
	cpuDriver   = "driver"
)

var cpuKinds = []string{cpuVault, cpuPiwik, cpuBaseline, cpuStandin, cpuDriver}

// tally sums up the slices of one scenario on one entry.
type tally struct {
	reads, errors             int64
	warmupReads, warmupErrors int64
	seconds                   float64
	latencies                 []time.Duration
	upstream                  int64
	cpu                       map[string]time.Duration
	peakRSS                   int64 // the piwik plugin's VmHWM
	firstError                string
	// perRound is the reads/s of each round's slice, in round order.
	perRound []float64
}

func (t *tally) requests() int64 { return t.reads + t.errors + t.warmupReads + t.warmupErrors }

func (t *tally) readsPerSecond() float64 {
	if t.seconds <= 0 {
		return 0
	}
	return float64(t.reads) / t.seconds
}

// p is the q-th percentile of the latencies.
func (t *tally) p(q float64) time.Duration {
	if !slices.IsSorted(t.latencies) {
		slices.Sort(t.latencies)
	}
	return loadgen.Percentile(t.latencies, q)
}

// cpuPerRead is the CPU time kind spent per request, warm-up included.
func (t *tally) cpuPerRead(kind string) time.Duration {
	if t.requests() == 0 {
		return 0
	}
	return t.cpu[kind] / time.Duration(t.requests())
}

// cpuSnapshot is the CPU time each kind of process has used so far.
func (h *benchRun) cpuSnapshot(d *deployment) map[string]time.Duration {
	sum := func(pids []int) time.Duration {
		var t time.Duration
		for _, pid := range pids {
			t += harness.CPUTime(pid)
		}
		return t
	}
	return map[string]time.Duration{
		cpuVault:    sum(d.vaultPIDs()),
		cpuPiwik:    sum(d.pluginPIDs(pluginName)),
		cpuBaseline: sum(d.pluginPIDs(baselineName)),
		cpuStandin:  harness.CPUTime(h.standin.Proc.PID()),
		cpuDriver:   harness.SelfCPU(),
	}
}

// tokenRequests is how many token requests the stand-in has answered.
func (h *benchRun) tokenRequests() (int64, error) {
	st, err := h.standin.Stats()
	return st.TokenRequests, err
}

// memStatus is a memory field of /proc/<pid>/status (VmRSS, VmHWM,
// RssAnon) in bytes; 0 when unknown.
func memStatus(pid int, field string) int64 {
	kb, _ := harness.Status(pid, field)
	return kb << 10
}

// scenarios runs every scenario on every entry of d, in interleaved
// rounds: round 1 runs each for a slice, round 2 again, and so on, so that
// whatever else the machine does weighs on all alike. Even rounds run in
// the reverse order: Vault's heap grows with every lease, and a scenario
// always run late in a round would pay more for it (more GC work). Only
// the first slice of each has a warm-up.
func (h *benchRun) scenarios(d *deployment, entries []entry) error {
	cfg := h.cfg
	slice := cfg.slice()
	type job struct {
		e entry
		s scenario
	}
	var order []job
	for _, e := range entries {
		h.results.addEntry(e)
		for _, s := range allScenarios {
			order = append(order, job{e, s})
		}
	}
	for round := 1; round <= cfg.rounds; round++ {
		for _, j := range order {
			if err := h.ctx.Err(); err != nil {
				return err
			}
			warm := time.Duration(0)
			if round == 1 {
				warm = cfg.warmup
			}
			t := h.results.tally(j.e.key, j.s.key)
			if err := h.slice(d, j.e, j.s, t, round, warm, slice); err != nil {
				return err
			}
		}
		slices.Reverse(order)
	}
	if cfg.profileDir != "" {
		if err := h.summarizeProfiles(d); err != nil {
			return err
		}
	}
	n, err := leaseCount(d.active().client)
	if err != nil {
		return err
	}
	h.results.after = append(h.results.after, afterScenarios{d.title, memStatus(d.active().Proc.PID(), "VmRSS"), n})
	return nil
}

// slice runs one scenario on one entry for one slice and adds what it
// measured to t.
func (h *benchRun) slice(d *deployment, e entry, s scenario, t *tally, round int, warm, slice time.Duration) error {
	for _, pid := range d.pluginPIDs(pluginName) {
		harness.ResetPeak(pid)
	}
	before := h.cpuSnapshot(d)
	up0, err := h.tokenRequests()
	if err != nil {
		return err
	}
	stopProfiles := h.startProfiles(d, e, s, round, warm, slice)
	res, err := loadgen.Run(h.ctx, loadgen.Options{
		Addr: e.node.Addr, Token: d.token, Path: s.path,
		Concurrency: h.cfg.concurrency, Duration: slice, Warmup: warm,
	})
	stopProfiles(res.ReadsPerSecond())
	if err != nil {
		return err
	}
	after := h.cpuSnapshot(d)
	up1, err := h.tokenRequests()
	if err != nil {
		return err
	}

	t.reads += res.Reads
	t.errors += res.Errors
	t.warmupReads += res.WarmupReads
	t.warmupErrors += res.WarmupErrors
	t.seconds += res.Seconds
	t.perRound = append(t.perRound, res.ReadsPerSecond())
	t.latencies = append(t.latencies, res.Latencies...)
	t.upstream += up1 - up0
	if t.cpu == nil {
		t.cpu = map[string]time.Duration{}
	}
	for _, k := range cpuKinds {
		t.cpu[k] += after[k] - before[k]
	}
	for _, pid := range d.pluginPIDs(pluginName) {
		t.peakRSS = max(t.peakRSS, memStatus(pid, "VmHWM"))
	}
	if t.firstError == "" {
		t.firstError = res.FirstError
	}
	fmt.Printf("    %-8s %-32s round %d: %7d reads %8.1f/s  p50 %6.2f ms  p99 %7.2f ms  %d errors  %d upstream\n",
		e.key, s.title, round, res.Reads, res.ReadsPerSecond(),
		ms(loadgen.Percentile(res.Latencies, 0.5)), ms(loadgen.Percentile(res.Latencies, 0.99)),
		res.Errors+res.WarmupErrors, up1-up0)
	return nil
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
