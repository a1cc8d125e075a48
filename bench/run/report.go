package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/harness"
)

// results is everything a run measured, for the report.
type results struct {
	cfg        config
	started    time.Time
	loadBefore string
	machine    string
	entries    []entry
	tallies    map[string]map[string]*tally // entry key, scenario key
	after      []afterScenarios
	bursts     []burstResult
	memory     []memoryResult
	rollover   *rolloverResult
	sparse     *sparseResult
	footprint  footprintResult
	steady     steadyResult
	setupTimes []phaseTime

	pluginMetrics string
	targets       []targetRow
}

// afterScenarios is the active node's state after a set-up's scenarios.
type afterScenarios struct {
	title  string
	rss    int64
	leases int
}

type phaseTime struct {
	what string
	took time.Duration
}

type targetRow struct {
	what, measured, result string
}

func newResults(cfg config) *results {
	return &results{
		cfg: cfg, started: time.Now(), loadBefore: harness.LoadAverage(),
		tallies: map[string]map[string]*tally{},
	}
}

func (r *results) addEntry(e entry) {
	r.entries = append(r.entries, e)
	r.tallies[e.key] = map[string]*tally{}
	for _, s := range allScenarios {
		r.tallies[e.key][s.key] = &tally{}
	}
}

func (r *results) tally(entry, scenario string) *tally { return r.tallies[entry][scenario] }

// missed reports whether any target was missed.
func (r *results) missed() bool {
	return slices.ContainsFunc(r.targets, func(t targetRow) bool { return t.result == "MISS" })
}

// machineInfo describes the machine and the software measured.
func machineInfo(vaultBin string) string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if name, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := harness.MemTotal()
	vaultVersion := harness.VaultVersion(vaultBin)
	return fmt.Sprintf("%d cores (%s), %.0f GiB RAM; %s; Vault %s; plugin %s",
		runtime.NumCPU(), model, float64(mem)/(1<<30), runtime.Version(), vaultVersion, pluginVersion)
}

// --- rendering ------------------------------------------------------------

func mib(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

func ratio(x, y float64) float64 {
	if y == 0 {
		return math.NaN()
	}
	return x / y
}

func fmtRatio(x float64) string {
	if math.IsNaN(x) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", x)
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// render writes the report in Markdown.
func (r *results) render() string {
	r.targets = nil // the sections below fill it
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	cfg := r.cfg
	mode := "full"
	if cfg.quick {
		mode = "quick"
	}
	took := time.Since(r.started).Round(time.Second)

	p("# make bench: %s (%s run, %s)\n\n", r.started.UTC().Format("2006-01-02T15:04Z"), mode, took)
	p("- machine: %s\n", r.machine)
	p("- load: %d concurrent clients (plain HTTP/1.1, one keep-alive connection each, no retries); each scenario measured in %d rounds of %s, the scenarios of one Vault set-up interleaved, after a %s warm-up in the first round\n",
		cfg.concurrency, cfg.rounds, cfg.slice(), cfg.warmup)
	p("- every number is a whole-system number: the load generator, Vault (all nodes), both plugins and the Piwik PRO stand-in share the machine's %d cores\n", runtime.NumCPU())
	p("- load average (1, 5, 15 min) before the run: %s; after: %s\n", r.loadBefore, harness.LoadAverage())
	for _, t := range r.setupTimes {
		p("- %s: %s, set-up included\n", t.what, t.took.Round(time.Second))
	}
	p("\n")

	r.renderScenarios(p)
	r.renderRatios(p)
	r.renderCPU(p)
	r.renderUpstream(p)
	r.renderMemory(p)
	r.renderRollover(p)
	r.renderFootprint(p)
	r.renderSteady(p)
	r.renderCapacity(p)
	r.renderTargets(p)
	return b.String()
}

type printer func(format string, args ...any)

func (r *results) renderScenarios(p printer) {
	if len(r.entries) == 0 {
		return
	}
	p("## Throughput and latency\n\n")
	p("| Vault | scenario | path | reads | reads/s | p50 ms | p90 ms | p99 ms | errors | upstream token requests |\n")
	p("|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	r.eachTally(func(e entry, s scenario, t *tally) {
		p("| %s | %s | `%s` | %d | %.0f | %.2f | %.2f | %.2f | %d | %d |\n",
			e.title, s.title, s.path, t.reads, t.readsPerSecond(), ms(t.p(0.5)), ms(t.p(0.9)), ms(t.p(0.99)),
			t.errors+t.warmupErrors, t.upstream)
	})
	p("\nReads and reads/s are the measured slices; errors and upstream token requests include the warm-up.")
	for _, a := range r.after {
		p(" %s: after its scenarios the active node held %d leases in %s MiB (VmRSS).", a.title, a.leases, mib(a.rss))
	}
	p("\n\n")
	r.eachTally(func(e entry, s scenario, t *tally) {
		if t.firstError != "" {
			p("First error of %s, %s: `%s`\n\n", e.title, s.title, t.firstError)
		}
	})
}

// eachTally calls f with the tally of every scenario on every entry, in
// the report's order.
func (r *results) eachTally(f func(e entry, s scenario, t *tally)) {
	for _, e := range r.entries {
		for _, s := range allScenarios {
			f(e, s, r.tally(e.key, s.key))
		}
	}
}

// comparisons are the ratios the report shows, each against the matching
// baseline.
var comparisons = []struct{ title, num, den string }{
	{"leased reuse / leased baseline", "reuse-l", "base-l"},
	{"leased mint / leased baseline", "mint-l", "base-l"},
	{"unleased reuse / unleased baseline", "reuse-u", "base-u"},
	{"unleased mint / unleased baseline", "mint-u", "base-u"},
	{"unleased reuse / leased reuse", "reuse-u", "reuse-l"},
	{"unleased baseline / leased baseline", "base-u", "base-l"},
}

func (r *results) renderRatios(p printer) {
	if len(r.entries) == 0 {
		return
	}
	p("## Ratios\n\n")
	p("Throughput (reads/s) and p99 latency of each scenario against the matching baseline on the same Vault, in the same run. In brackets, the lowest and highest throughput ratio of a single round (the two slices ran minutes apart at most): how much the machine moved under the run.\n\n")
	p("| ratio |")
	for _, e := range r.entries {
		p(" %s reads/s | %s p99 |", e.title, e.title)
	}
	p("\n|---|")
	for range r.entries {
		p("---:|---:|")
	}
	p("\n")
	for _, c := range comparisons {
		p("| %s |", c.title)
		for _, e := range r.entries {
			n, d := r.tally(e.key, c.num), r.tally(e.key, c.den)
			p(" %s%s | %s |", fmtRatio(ratio(n.readsPerSecond(), d.readsPerSecond())), roundRange(n.perRound, d.perRound),
				fmtRatio(ratio(ms(n.p(0.99)), ms(d.p(0.99)))))
		}
		p("\n")
	}
	p("\n")
}

// roundRange is " [lo–hi]", the range of the per-round ratios num/den,
// or "" with fewer than two rounds.
func roundRange(num, den []float64) string {
	lo, hi := math.Inf(1), math.Inf(-1)
	n := 0
	for i := range min(len(num), len(den)) {
		if den[i] > 0 {
			x := num[i] / den[i]
			lo, hi = math.Min(lo, x), math.Max(hi, x)
			n++
		}
	}
	if n < 2 {
		return ""
	}
	return fmt.Sprintf(" [%.2f–%.2f]", lo, hi)
}

func (r *results) renderCPU(p printer) {
	if len(r.entries) == 0 {
		return
	}
	p("## CPU time per read\n\n")
	p("Microseconds of CPU (user and system) each process spent per request, warm-up included; Vault is the sum over its nodes.\n\n")
	p("| Vault | scenario | Vault | piwik plugin | baseline plugin | stand-in | load generator | total |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|\n")
	r.eachTally(func(e entry, s scenario, t *tally) {
		var total time.Duration
		p("| %s | %s |", e.title, s.title)
		for _, k := range cpuKinds {
			c := t.cpuPerRead(k)
			total += c
			p(" %d |", c.Microseconds())
		}
		p(" %d |\n", total.Microseconds())
	})
	p("\n")
}

func (r *results) renderUpstream(p printer) {
	if len(r.entries) == 0 && len(r.bursts) == 0 {
		return
	}
	p("## Upstream token requests\n\n")
	p("What the stand-in counted against the reads that caused them. A token_reuse role must cost one request per token life (30 minutes here, longer than a run) on each Vault, whatever the concurrency; a role without it one request per read.\n\n")
	p("| Vault | scenario | requests sent (warm-up included) | errors | upstream token requests | expected |\n")
	p("|---|---|---:|---:|---:|---|\n")
	r.eachTally(func(e entry, s scenario, t *tally) {
		if s.plugin != pluginName {
			return
		}
		want := fmt.Sprintf("%d (one per read)", t.requests())
		if s.reuse {
			want = "1 per Vault set-up, in its first scenario on this role"
		}
		p("| %s | %s | %d | %d | %d | %s |\n", e.title, s.title, t.requests(), t.errors+t.warmupErrors, t.upstream, want)
	})
	for _, bu := range r.bursts {
		p("| %s | cold token_reuse role, %s, %d clients at once | %d | %d | %d | 1 |\n",
			bu.entry, bu.mode, bu.clients, bu.reads+bu.errors, bu.errors, bu.upstream)
	}
	for _, m := range r.memory {
		p("| dev | memory run, %s, %d token_reuse roles | %d | %d | %d | %d (one per role) |\n",
			m.mode, m.roles, m.reads+m.errors, m.errors, m.upstream, m.roles)
	}
	p("\n")
	// The targets.
	deployments := map[string][]entry{}
	var order []string
	for _, e := range r.entries {
		dep := strings.Split(e.title, ",")[0]
		if _, ok := deployments[dep]; !ok {
			order = append(order, dep)
		}
		deployments[dep] = append(deployments[dep], e)
	}
	for _, dep := range order {
		for _, s := range allScenarios {
			if s.plugin != pluginName {
				continue
			}
			var reqs, errs, up int64
			for _, e := range deployments[dep] {
				t := r.tally(e.key, s.key)
				reqs, errs, up = reqs+t.requests(), errs+t.errors+t.warmupErrors, up+t.upstream
			}
			if s.reuse {
				r.target(fmt.Sprintf("%s, %s: one token request per role per token life", dep, s.title),
					fmt.Sprintf("%d for %d reads", up, reqs), up == 1 && errs == 0)
			} else {
				r.target(fmt.Sprintf("%s, %s: one token request per read", dep, s.title),
					fmt.Sprintf("%d for %d reads, %d errors", up, reqs, errs), up == reqs && errs == 0)
			}
		}
	}
	for _, bu := range r.bursts {
		r.target(fmt.Sprintf("%s, cold token_reuse role (%s), %d clients at once: one token request", bu.entry, bu.mode, bu.clients),
			fmt.Sprintf("%d for %d reads", bu.upstream, bu.reads+bu.errors), bu.upstream == 1 && bu.errors == 0)
	}
}

func (r *results) renderMemory(p printer) {
	if len(r.memory) == 0 {
		return
	}
	p("## Plugin memory\n\n")
	p("The piwik plugin process after reads spread round-robin over many token_reuse roles (dev server; the plugin's memory does not depend on Vault's storage).\n\n")
	p("| mode | roles | reads | reads/s | p99 ms | errors | upstream token requests | plugin VmRSS MiB | plugin VmHWM MiB |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, m := range r.memory {
		p("| %s | %d | %d | %.0f | %.2f | %d | %d | %s | %s |\n",
			m.mode, m.roles, m.reads, m.readsPerSecond, ms(m.p99), m.errors, m.upstream, mib(m.rss), mib(m.hwm))
		r.target(fmt.Sprintf("plugin RSS < 64 MiB after %d reads over %d roles, %s", r.cfg.rssReads, m.roles, m.mode),
			fmt.Sprintf("%s MiB (VmHWM %s) after %d reads", mib(m.rss), mib(m.hwm), m.reads),
			m.rss < 64<<20 && m.hwm < 64<<20 && m.reads == int64(r.cfg.rssReads))
		r.target(fmt.Sprintf("memory run, %s: one token request per role", m.mode),
			fmt.Sprintf("%d for %d roles", m.upstream, m.roles), m.upstream == int64(m.roles) && m.errors == 0)
	}
	if r.pluginMetrics != "" {
		p("\nThe plugin's own counters at the end (`piwik/metrics`): `%s`.\n", r.pluginMetrics)
	}
	p("\n")
}

func (r *results) renderFootprint(p printer) {
	f := r.footprint
	if len(f.points) != 3 {
		return
	}
	p("## What a lease costs Vault (one raft node)\n\n")
	p("Vault's memory and storage before and after %d leased reads of a token_reuse role (one 30-minute lease each), then after %d unleased reads of another. Heap: Go's live heap right after a forced collection (`sys/pprof/heap?gc=1`); RSS includes the collector's headroom and, for RssFile, the pages of the mapped bolt files. Snapshot: the bytes of data (keys and encrypted values) in a raft snapshot, uncompressed.\n\n", f.reads, f.reads)
	p("| point | leases | heap MiB | VmRSS MiB | RssAnon MiB | vault.db MiB | raft.db MiB | snapshot data MiB |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, pt := range f.points {
		p("| %s | %d | %s | %s | %s | %s | %s | %s |\n", pt.label, pt.leases, mib(pt.heap), mib(pt.rss), mib(pt.rssAnon), mib(pt.vaultDB), mib(pt.raftDB), mib(pt.snapState))
	}
	per := func(a, b footprint, field func(footprint) int64) string {
		return fmt.Sprintf("%.0f", float64(field(b)-field(a))/float64(f.reads))
	}
	p("\n| per read, bytes | heap | VmRSS | RssAnon | vault.db | raft.db | snapshot data |\n|---|---:|---:|---:|---:|---:|---:|\n")
	fields := []func(footprint) int64{
		func(x footprint) int64 { return x.heap }, func(x footprint) int64 { return x.rss }, func(x footprint) int64 { return x.rssAnon },
		func(x footprint) int64 { return x.vaultDB }, func(x footprint) int64 { return x.raftDB }, func(x footprint) int64 { return x.snapState },
	}
	for i, label := range []string{"leased read (one lease)", "unleased read"} {
		p("| %s |", label)
		for _, fl := range fields {
			p(" %s |", per(f.points[i], f.points[i+1], fl))
		}
		p("\n")
	}
	p("\nvault.db grows in large steps (bolt extends its file ahead of need) and neither file shrinks when leases expire; the heap and snapshot figures are the precise ones. Leases under piwik/ and baseline/ (listed with `sys/leases/lookup`): %d before, %d after the leased reads, %d after the unleased ones.\n\n",
		f.points[0].leases, f.points[1].leases, f.points[2].leases)
}

// reuseRefreshAfter is how long after its mint a token_reuse role's token
// of life ttl is replaced: at the start of its refresh window, a tenth of
// its life (at least the config's 10 s request_timeout, at most half the
// way) before its reuse point at half its life (README: Token reuse).
func reuseRefreshAfter(ttl time.Duration) time.Duration {
	const requestTimeout = 10 * time.Second
	toReusePoint := ttl / 2
	window := min(max(ttl/10, requestTimeout), toReusePoint/2)
	return toReusePoint - window
}

func (r *results) renderSteady(p printer) {
	s := r.steady
	if len(s.samples) == 0 {
		return
	}
	ttl := s.ttl.Seconds()
	refresh := reuseRefreshAfter(s.ttl).Seconds()
	// A reused token is handed out from its mint until it is replaced, so
	// its leases live between the whole token life and ttl - refresh.
	reuseShare := (ttl - refresh/2) / ttl
	p("## Leases at a steady read rate (one raft node, short tokens)\n\n")
	p("The stand-in issued tokens living %.0f s; `piwik/creds/ss-mint` (mint per read) and `piwik/creds/ss-reuse` (token_reuse) were each read at %.0f reads/s for %s, and the leases under each were listed (`sys/leases/lookup/...`) as they piled up and expired. A lease lives as long as the token it carries: a minted token's full life, a reused token's remaining life. A reused token is handed out until a background mint replaces it, %.0f s after its own mint (the start of its refresh window), so its leases live between %.0f and %.0f s, %.2f of the token's life on average.\n\n",
		ttl, s.rate, s.duration, refresh, ttl-refresh, ttl, reuseShare)
	p("| t s | leases, mint | leases, reuse |\n|---:|---:|---:|\n")
	for _, x := range s.samples {
		p("| %.1f | %d | %d |\n", x.at.Seconds(), x.mint, x.reuse)
	}
	var mintSum, reuseSum, n float64
	for _, x := range s.samples {
		if x.at.Seconds() >= 1.25*ttl {
			mintSum += float64(x.mint)
			reuseSum += float64(x.reuse)
			n++
		}
	}
	wantMint, wantReuse := s.rate*ttl, s.rate*ttl*reuseShare
	mintAvg, reuseAvg := mintSum/math.Max(n, 1), reuseSum/math.Max(n, 1)
	refreshes := int(math.Ceil(s.duration.Seconds() / refresh))
	p("\n| role | reads | steady lease count (mean of samples after %.0f s) | expected: rate × lease life | upstream token requests | expected |\n|---|---:|---:|---:|---:|---|\n", 1.25*ttl)
	p("| ss-mint | %d | %.0f | %.0f × %.0f s = %.0f | %d | %d (one per read) |\n", s.mintReads, mintAvg, s.rate, ttl, wantMint, s.mintUp, s.mintReqs)
	p("| ss-reuse | %d | %.0f | %.0f × %.0f s × %.2f = %.0f | %d | %d to %d (one per %.0f s, and the periodic call's) |\n", s.reuseReads, reuseAvg, s.rate, ttl, reuseShare, wantReuse, s.reuseUp, refreshes, refreshes+2, refresh)
	p("\nErrors: %d.", s.errors)
	if s.firstError != "" {
		p(" First: `%s`.", s.firstError)
	}
	p("\n\n")
	within := func(got, want float64) bool { return want > 0 && math.Abs(got-want)/want <= 0.15 }
	r.target("steady state, mint: leases = rate × token life (±15 %)", fmt.Sprintf("%.0f for %.0f", mintAvg, wantMint), within(mintAvg, wantMint))
	r.target(fmt.Sprintf("steady state, token_reuse: leases = rate × %.2f token life (±15 %%)", reuseShare), fmt.Sprintf("%.0f for %.0f", reuseAvg, wantReuse), within(reuseAvg, wantReuse))
	r.target(fmt.Sprintf("steady state, token_reuse: one token request per %.0f s (the refresh window's start)", refresh), fmt.Sprintf("%d in %s of %.0f s tokens", s.reuseUp, s.duration, ttl),
		s.reuseUp >= int64(refreshes) && s.reuseUp <= int64(refreshes+2))
	r.target("steady state, mint: one token request per read", fmt.Sprintf("%d for %d reads", s.mintUp, s.mintReqs), s.mintUp == s.mintReqs && s.errors == 0)
}

// renderCapacity sums up what an operator sizes for, from the numbers
// above.
func (r *results) renderCapacity(p printer) {
	if len(r.entries) == 0 {
		return
	}
	p("## Capacity summary\n\n")
	p("Creds reads per second one Vault gave in this run (whole-system numbers: the load generator and the stand-in took their share of the same cores).\n\n")
	p("| Vault | leased, token_reuse | leased, mint | unleased, token_reuse | unleased, mint | kv-v2 |\n|---|---:|---:|---:|---:|---:|\n")
	for _, e := range r.entries {
		p("| %s |", e.title)
		for _, k := range []string{"reuse-l", "mint-l", "reuse-u", "mint-u", "kv"} {
			p(" %.0f |", r.tally(e.key, k).readsPerSecond())
		}
		p("\n")
	}
	f := r.footprint
	if len(f.points) != 3 {
		p("\n")
		return
	}
	perLease := func(field func(footprint) int64) float64 {
		return float64(field(f.points[1])-field(f.points[0])) / float64(f.reads)
	}
	heap := perLease(func(x footprint) int64 { return x.heap })
	rss := perLease(func(x footprint) int64 { return x.rss })
	data := perLease(func(x footprint) int64 { return x.snapState })
	p("\nOne outstanding lease (one raft node): %.2f KiB of live heap, %.1f KiB of RSS, %.2f KiB of stored data. ", heap/1024, rss/1024, data/1024)
	life := 30 * time.Minute
	reuseLife := life - reuseRefreshAfter(life)/2 // mean lease life of a reused token
	reuseMin := reuseLife.Minutes()
	p("A lease lives as long as its token: 30 minutes with mint, %.0f on average with token_reuse (handed out from its mint until a background mint replaces it, %.0f minutes in). After the first 30 minutes a steady rate R holds R × 1800 leases (mint) or R × %.0f (token_reuse), at any later hour alike:\n\n",
		reuseMin, reuseRefreshAfter(life).Minutes(), reuseLife.Seconds())
	p("| leased reads/s | mint: leases | heap MiB | RSS MiB | data MiB | token_reuse: leases | heap MiB | RSS MiB | data MiB |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, rate := range []float64{1, 10, 100, 500} {
		p("| %.0f |", rate)
		for _, life := range []float64{1800, reuseLife.Seconds()} {
			n := rate * life
			p(" %.0f | %s | %s | %s |", n, mib(int64(n*heap)), mib(int64(n*rss)), mib(int64(n*data)))
		}
		p("\n")
	}
	p("\nFor N readers that each read every M minutes (R = N / 60M reads/s; a reader holds 30/M leases with mint, %.0f/M with token_reuse). Capacity used: R against this run's leased token_reuse reads/s on one raft node.\n\n", reuseMin)
	var raftLeased float64
	for _, e := range r.entries {
		if e.key == "raft" {
			raftLeased = r.tally(e.key, "reuse-l").readsPerSecond()
		}
	}
	p("| N | M min | reads/s | leases, mint | leases, token_reuse | RSS for the leases, token_reuse MiB | share of raft leased capacity | mint token requests/min |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range []struct{ n, m float64 }{{10, 10}, {100, 5}, {1000, 5}, {10000, 5}, {10000, 1}, {100000, 5}} {
		rate := c.n / (60 * c.m)
		share := "n/a"
		if raftLeased > 0 {
			share = fmt.Sprintf("%.1f %%", 100*rate/raftLeased)
		}
		p("| %.0f | %.0f | %.2f | %.0f | %.0f | %s | %s | %.0f |\n", c.n, c.m, rate, c.n*30/c.m, c.n*reuseMin/c.m, mib(int64(c.n*reuseMin/c.m*rss)), share, rate*60)
	}
	p("\n")
}

// target records a row of the targets table.
func (r *results) target(what, measured string, ok bool) {
	r.targets = append(r.targets, targetRow{what, measured, verdict(ok)})
}

func (r *results) renderTargets(p printer) {
	throughputTarget := func(e entry, num, den string, min, maxP99 float64, info bool) {
		n, d := r.tally(e.key, num), r.tally(e.key, den)
		tp := ratio(n.readsPerSecond(), d.readsPerSecond())
		p99 := ratio(ms(n.p(0.99)), ms(d.p(0.99)))
		sn, sd := scenarioTitle(num), scenarioTitle(den)
		what := fmt.Sprintf("%s: %s ≥ %.2f × %s (reads/s)", e.title, sn, min, sd)
		measured := fmt.Sprintf("%.0f / %.0f = %s%s", n.readsPerSecond(), d.readsPerSecond(), fmtRatio(tp), roundRange(n.perRound, d.perRound))
		ok := tp >= min
		if maxP99 > 0 {
			what += fmt.Sprintf(", p99 ≤ %.1f ×", maxP99)
			measured += fmt.Sprintf("; p99 %.2f / %.2f ms = %s", ms(n.p(0.99)), ms(d.p(0.99)), fmtRatio(p99))
			ok = ok && p99 <= maxP99
		}
		row := targetRow{what, measured, verdict(ok)}
		if info {
			row.result = "(info) " + row.result
		}
		r.targets = append([]targetRow{row}, r.targets...)
	}
	// Prepended in reverse, so that the throughput targets come first.
	for i := len(r.entries) - 1; i >= 0; i-- {
		e := r.entries[i]
		switch e.key {
		case "raft":
			throughputTarget(e, "reuse-u", "reuse-l", 3, 0, false)
			throughputTarget(e, "reuse-u", "base-u", 0.9, 0, false)
			throughputTarget(e, "reuse-l", "base-l", 0.95, 1.2, false)
		case "dev":
			throughputTarget(e, "reuse-u", "base-u", 0.9, 0, true)
			throughputTarget(e, "reuse-l", "base-l", 0.95, 1.2, false)
		default:
			throughputTarget(e, "reuse-u", "base-u", 0.9, 0, true)
			throughputTarget(e, "reuse-l", "base-l", 0.95, 1.2, true)
		}
	}
	p("## Targets\n\n")
	p("Rows marked (info) are measured for comparison and are not targets. In brackets, the range of the single rounds' ratios.\n\n")
	p("| target | measured | result |\n|---|---|---|\n")
	for _, t := range r.targets {
		p("| %s | %s | %s |\n", t.what, t.measured, t.result)
	}
}

func scenarioTitle(key string) string {
	for _, s := range allScenarios {
		if s.key == key {
			return s.title
		}
	}
	return key
}
