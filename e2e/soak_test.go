package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// TestSoak runs concurrent readers of four roles (leased and unleased,
// minting and token_reuse) against the real Vault (a dev server of its
// own: one node, in-memory storage) while the stand-in cycles through 429
// bursts with Retry-After, 5xx replies, hung and slow requests, and a
// deleted and restored credential; the plugin is reloaded once. It
// asserts that
//
//   - a read of a token_reuse role never fails while it is covered: the
//     stand-in issued a token to the role's credential (each token_reuse
//     role has its own, used by nothing else) before the read began, after
//     the plugin process started and after the credential was last
//     restored, and that token has at least the stale floor (plus 2s for
//     whole-second expiry claims) of its life left when the read ends.
//     Reads that overlap the reload or a deletion of their credential are
//     not judged: a new plugin process, and one that was told the
//     credential is gone, rightly holds no cached token;
//   - once Piwik PRO rejected a deleted credential, its role's reads fail
//     until the credential is back: no cached token is served;
//   - no token request arrives inside a Retry-After window the stand-in
//     gave its client id, after a grace for requests already on their way
//     when the 429 left (see standin.DefaultRetryAfterGrace);
//   - no credential ever has more than the gate's cap of token requests in
//     flight;
//   - the plugin's goroutines and RSS at the end are within 10% of what
//     they were early in the run, a minute after the reload at full scale
//     (both measured idle, with the readers paused and every mint ended;
//     the goroutines net of the two that each open connection to Piwik PRO
//     holds, as the transport keeps idle connections for 90s);
//   - no secret or token is in any log (the suite's log scan, also run
//     here on the soak's own logs for the report).
//
// It lasts SOAK_DURATION (default 60s, as part of `make test`; `make soak`
// runs 10m) and writes its report to SOAK_REPORT when set.
func TestSoak(t *testing.T) {
	requireBinaries(t)
	duration := envDuration(t, "SOAK_DURATION", 60*time.Second)
	pause := envDuration(t, "SOAK_READ_PAUSE", 250*time.Millisecond)
	sk := startSoak(t, newSoakPlan(duration), pause)
	sk.run(t)
	sk.collect(t)
	sk.check(t)
	report := sk.report()
	t.Log("\n" + report)
	if path := os.Getenv("SOAK_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			t.Error(err)
		} else {
			t.Logf("report written to %s", path)
		}
	}
}

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
	// reloadAt is when the plugin is reloaded, idleAt when its goroutines
	// and RSS are first measured (then again at the end).
	reloadAt, idleAt time.Duration
}

// The credentials of the token_reuse roles; the minting roles use the
// config's.
const (
	soakReuseClient   = "soak-reuse-leased"
	soakDeletedClient = "soak-reuse-unleased" // deleted and restored each cycle
)

// settleTime is how long after the readers pause every mint they started
// has ended: the plugin bounds one by request_timeout (10s by default).
const settleTime = 11 * time.Second

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
		// request_timeout (a third of 10s): the minting roles' requests
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

// soak is a running soak test.
type soak struct {
	plan   soakPlan
	pause  time.Duration
	v      *vaultServer
	st     *standin
	client *api.Client
	roles  []soakRole
	// debugDir holds the plugin's runtime statistics sockets.
	debugDir   string
	loadBefore string

	start                  time.Time // of the load: the schedule's start
	end                    time.Time // when the readers stopped
	reloadStart, reloadEnd time.Time
	reloadOut              string
	pidsBefore, pidsAfter  []int

	// readGate is held for reading by each read, and for writing while
	// the plugin is measured idle.
	readGate sync.RWMutex
	mu       sync.Mutex
	reads    []credsRead
	samples  []soakSample
	idle     []idleSample

	// Collected after the run.
	clients   standinClients
	sched     scheduleReport
	issued    map[string][]issuedToken
	metrics   pluginMetrics
	scanFiles int
	scanBytes int64
	scanCount int
	leaks     []string
	checks    []soakCheck
}

// soakSample is what the sampler saw at one moment.
type soakSample struct {
	at                          time.Time
	reads, failed, stale        int
	tokenRequests, windows      int64
	violations                  int64
	peakInFlight                int
	pid                         int
	rssKB, goroutines, heapByte int64
	err                         string
}

// idleSample is the plugin measured while nothing was read.
type idleSample struct {
	label      string
	at         time.Time
	pid        int
	goroutines int64
	conns      int // open connections to the stand-in
	rssKB      int64
	err        string
}

// net is the goroutines not explained by open connections to Piwik PRO,
// each of which holds two (net/http's read and write loops).
func (s idleSample) net() int64 {
	return s.goroutines - 2*int64(s.conns)
}

// soakCheck is one assertion of the run, for the report.
type soakCheck struct {
	what, result string
	ok           bool
}

// startSoak starts the stand-in and a dev server whose plugin serves its
// runtime statistics, and writes the config and the roles.
func startSoak(t *testing.T, plan soakPlan, pause time.Duration) *soak {
	t.Helper()
	dir := testDir(t)
	// A short path: a unix socket's must fit in 108 bytes.
	debugDir, err := os.MkdirTemp("", "piwik-soak-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(debugDir) })
	sk := &soak{plan: plan, pause: pause, debugDir: debugDir, loadBefore: loadAverage()}

	sk.st = startStandin(t, dir, "soak-standin", t.Cleanup)
	sk.v = startDevVault(t, dir, "vault", t.Cleanup)
	sk.v.enableAudit(t)
	version := sk.v.builtVersion(t)
	sha := fileSHA256(t, filepath.Join(sk.v.pluginDir, pluginName))
	sk.v.vault(t, "plugin", "register", "-sha256="+sha, "-version="+version, "-command="+pluginName,
		"-env=PIWIK_PLUGIN_DEBUG_DIR="+debugDir, "secret", pluginName)
	sk.v.mountPiwik(t, "piwik", version, sk.st)
	sk.st.setLifetime(t, int(plan.lifetime.Seconds()))

	sk.roles = []soakRole{
		{name: "mint-leased", clientID: sk.st.clientID, leased: true, readers: 3},
		{name: "mint-unleased", clientID: sk.st.clientID, readers: 3},
		{name: "reuse-leased", clientID: soakReuseClient, reuse: true, leased: true, readers: 2},
		{name: "reuse-unleased", clientID: soakDeletedClient, reuse: true, readers: 2},
	}
	for _, r := range sk.roles {
		fields := map[string]any{"ttl": 0, "leased": r.leased, "token_reuse": r.reuse}
		if r.reuse {
			fields["reuse_min_remaining"] = int(plan.minRemaining.Seconds())
		}
		if r.clientID != sk.st.clientID {
			fields["client_id"] = r.clientID
			fields["client_secret"] = sk.st.addCredential(t, r.clientID)
		}
		body, err := json.Marshal(fields)
		if err != nil {
			t.Fatal(err)
		}
		sk.v.vaultAs(t, sk.v.token, string(body), "write", "piwik/roles/"+r.name, "-")
	}
	sk.client = sk.v.client(t, sk.v.token)
	sk.client.SetClientTimeout(30 * time.Second)
	sk.pidsBefore = sk.pluginPIDs()
	return sk
}

// run starts the schedule, the readers and the sampler, reloads the plugin
// and measures it idle on the way, and stops the readers after the plan's
// duration.
func (sk *soak) run(t *testing.T) {
	t.Helper()
	sk.st.schedule(t, sk.plan.phases, true)
	sk.start = sk.st.scheduleReport(t).Start
	ctx, stop := context.WithCancel(context.Background())
	defer stop()

	var readers sync.WaitGroup
	for _, r := range sk.roles {
		for range r.readers {
			readers.Go(func() { sk.reader(ctx, r.name) })
		}
	}
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		sk.sampler(ctx)
	}()

	sleepUntil(sk.start.Add(sk.plan.reloadAt))
	sk.reloadStart = time.Now()
	res := sk.v.run(t, sk.v.token, "", "plugin", "reload", "-type=secret", "-plugin="+pluginName)
	sk.reloadEnd = time.Now()
	sk.reloadOut = strings.TrimSpace(res.stdout + res.stderr)
	if res.exitCode != 0 {
		t.Errorf("vault plugin reload: exit %d: %s", res.exitCode, redact(sk.reloadOut))
	}
	sk.pidsAfter = sk.pluginPIDs()

	sleepUntil(sk.start.Add(sk.plan.idleAt))
	sk.measureIdle("first")

	sleepUntil(sk.start.Add(sk.plan.duration))
	stop()
	readers.Wait()
	sk.end = time.Now()
	<-samplerDone
	sk.measureIdle("at the end")
}

// reader reads role until ctx ends, pausing between reads.
func (sk *soak) reader(ctx context.Context, role string) {
	for ctx.Err() == nil {
		sk.readGate.RLock()
		r := readOnce(sk.client, "piwik/creds/"+role)
		sk.readGate.RUnlock()
		sk.mu.Lock()
		sk.reads = append(sk.reads, r)
		sk.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(sk.pause):
		}
	}
}

// measureIdle stops the reads, waits until every mint they started has
// ended, and measures the plugin three times a second apart (the median
// counts).
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
		if len(pids) != 1 {
			s.err = fmt.Sprintf("%d plugin processes", len(pids))
			tries = append(tries, s)
			continue
		}
		s.pid = pids[0]
		rt, err := sk.runtimeStats(s.pid)
		if err == nil {
			s.goroutines = rt.Goroutines
			s.rssKB, err = procStatusKB(s.pid, "VmRSS")
		}
		if err == nil {
			s.conns, err = connectionsTo(s.pid, sk.st.url)
		}
		if err != nil {
			s.err = err.Error()
		}
		tries = append(tries, s)
	}
	sort.Slice(tries, func(a, b int) bool { return tries[a].net() < tries[b].net() })
	median := tries[1]
	rss := []int64{tries[0].rssKB, tries[1].rssKB, tries[2].rssKB}
	slices.Sort(rss)
	median.rssKB = rss[1]
	sk.mu.Lock()
	sk.idle = append(sk.idle, median)
	sk.mu.Unlock()
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

// tableEvery is the period of the report's rows: 30s, or less for short
// runs.
func (sk *soak) tableEvery() time.Duration {
	return min(30*time.Second, max(sk.sampleEvery(), sk.plan.duration/6))
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
	var stats standinCounters
	if err := sk.st.getJSON("/_standin/stats", &stats); err != nil {
		errs = append(errs, err)
	}
	s.tokenRequests = stats.TokenRequests
	var clients standinClients
	if err := sk.st.getJSON("/_standin/clients", &clients); err != nil {
		errs = append(errs, err)
	}
	for _, c := range clients.Clients {
		s.windows += c.RateLimitWindows
		s.violations += c.Violations
		s.peakInFlight = max(s.peakInFlight, c.PeakInFlight)
	}
	if pids := sk.pluginPIDs(); len(pids) == 1 {
		s.pid = pids[0]
		rss, err := procStatusKB(s.pid, "VmRSS")
		errs = append(errs, err)
		s.rssKB = rss
		rt, err := sk.runtimeStats(s.pid)
		errs = append(errs, err)
		s.goroutines, s.heapByte = rt.Goroutines, rt.HeapAlloc
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

// runtimeStats is what the plugin's statistics socket serves.
type runtimeStats struct {
	PID        int   `json:"pid"`
	Goroutines int64 `json:"goroutines"`
	HeapAlloc  int64 `json:"heap_alloc"`
}

// runtimeStats asks plugin process pid for its statistics.
func (sk *soak) runtimeStats(pid int) (runtimeStats, error) {
	var rt runtimeStats
	sock := filepath.Join(sk.debugDir, "plugin-"+strconv.Itoa(pid)+".sock")
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := c.Get("http://plugin/runtime")
	if err != nil {
		return rt, fmt.Errorf("plugin %d statistics: %w", pid, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&rt); err != nil {
		return rt, fmt.Errorf("plugin %d statistics: %w", pid, err)
	}
	if rt.PID != pid {
		return rt, fmt.Errorf("plugin %d statistics came from pid %d", pid, rt.PID)
	}
	return rt, nil
}

// pluginPIDs returns the processes the soak's Vault runs the plugin in.
func (sk *soak) pluginPIDs() []int {
	want := filepath.Join(sk.v.pluginDir, pluginName)
	var pids []int
	for _, pid := range childPIDs(sk.v.proc.cmd.Process.Pid) {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && exe == want {
			pids = append(pids, pid)
		}
	}
	return pids
}

// collect reads what the stand-in and the plugin recorded, and remembers
// every token read for the log scan.
func (sk *soak) collect(t *testing.T) {
	t.Helper()
	sk.clients = sk.st.clients(t)
	sk.sched = sk.st.scheduleReport(t)
	sk.issued = map[string][]issuedToken{}
	for _, r := range sk.roles {
		if r.reuse {
			sk.issued[r.clientID] = sk.st.issued(t, r.clientID)
		}
	}
	sk.metrics = readMetrics(t, sk.client, "piwik")
	seen := map[string]bool{}
	for _, r := range sk.reads {
		if r.token != "" && !seen[r.token] {
			seen[r.token] = true
			rememberSecret(t, "access token read by the soak test", r.token)
		}
	}
	// The suite scans every log when all tests are done; the soak's own
	// logs are scanned here too, for the report.
	sk.v.proc.stop()
	sk.st.proc.stop()
	paths := []string{sk.v.proc.logPath, sk.v.auditLog, sk.st.proc.logPath}
	secrets.Lock()
	labels := make(map[string]string, len(secrets.labels))
	for v, l := range secrets.labels {
		labels[v] = l
	}
	secrets.Unlock()
	findings, scanned, err := scanFiles(paths, labels)
	if err != nil {
		t.Error(err)
	}
	sk.scanFiles, sk.scanBytes, sk.scanCount, sk.leaks = len(paths), scanned, len(labels), findings
}

// check makes the run's assertions and records them for the report.
func (sk *soak) check(t *testing.T) {
	t.Helper()
	record := func(ok bool, what, format string, args ...any) {
		result := fmt.Sprintf(format, args...)
		sk.checks = append(sk.checks, soakCheck{what: what, result: result, ok: ok})
		if !ok {
			t.Errorf("%s: %s", what, result)
		}
	}
	sk.checkLeases(record)
	sk.checkCoverage(record)
	sk.checkDeletion(record)

	var windows, inGrace, violations int64
	var maxInGrace int
	var graceDelay float64
	var details []string
	for _, c := range sk.clients.Clients {
		windows += c.RateLimitWindows
		inGrace += c.RequestsInGrace
		maxInGrace = max(maxInGrace, c.MaxInGrace)
		graceDelay = max(graceDelay, c.MaxGraceDelayMS)
		violations += c.Violations
		for i, v := range c.ViolationList {
			if i == 5 {
				details = append(details, fmt.Sprintf("%s: %d more", c.ClientID, len(c.ViolationList)-5))
				break
			}
			details = append(details, fmt.Sprintf("%s at %s, %s into a window of %s opened at %s",
				c.ClientID, sk.offset(v.At), v.At.Sub(v.WindowStart).Round(time.Millisecond),
				v.WindowEnd.Sub(v.WindowStart), sk.offset(v.WindowStart)))
		}
	}
	record(violations == 0, "token requests inside a Retry-After window",
		"%d (%d windows; %d requests within the %dms grace after a 429, at most %d after one, the latest %.0fms after it)%s",
		violations, windows, inGrace, sk.clients.RetryAfterGraceMS, maxInGrace, graceDelay, joinDetails(details))

	// The cap is checked from both sides. The stand-in counts a request
	// from its arrival until it answers; a request a hang holds counts
	// until the stand-in notices the client gave up, which can be a moment
	// after the client has let go and sent the next one, so its count of
	// answered requests is what the cap bounds, and the raw peak is shown.
	// The plugin counts its own requests in flight per credential.
	var peaks []string
	peakOK := true
	for _, c := range sk.clients.Clients {
		peaks = append(peaks, fmt.Sprintf("%s %d (%d with hung ones)", c.ClientID, c.PeakAnswered, c.PeakInFlight))
		if c.PeakAnswered > gateMaxInFlight {
			peakOK = false
			peaks[len(peaks)-1] += fmt.Sprintf(" (first at %s)", sk.offset(c.PeakAt))
		}
	}
	record(peakOK, "peak token requests in flight per credential, at the stand-in", "%s; the cap is %d", strings.Join(peaks, ", "), gateMaxInFlight)
	record(sk.metrics.InFlightPeak <= gateMaxInFlight, "peak token requests in flight per credential, in the plugin",
		"%d since the reload (piwik/metrics upstream_in_flight_peak); the cap is %d", sk.metrics.InFlightPeak, gateMaxInFlight)

	if len(sk.idle) != 2 || sk.idle[0].err != "" || sk.idle[1].err != "" {
		record(false, "plugin goroutines and RSS, idle", "not measured: %+v", sk.idle)
	} else {
		first, last := sk.idle[0], sk.idle[1]
		record(float64(last.net()) <= 1.1*float64(first.net()), "plugin goroutines, idle, net of connections to Piwik PRO",
			"%d → %d (%+.1f%%; raw %d → %d with %d → %d connections)", first.net(), last.net(), change(first.net(), last.net()),
			first.goroutines, last.goroutines, first.conns, last.conns)
		record(last.conns <= 32, "plugin connections to Piwik PRO, idle", "%d → %d (the transport keeps at most 32 idle)", first.conns, last.conns)
		record(float64(last.rssKB) <= 1.1*float64(first.rssKB), "plugin RSS, idle",
			"%.1f → %.1f MiB (%+.1f%%)", mib(first.rssKB), mib(last.rssKB), change(first.rssKB, last.rssKB))
		record(first.pid == last.pid, "plugin process", "pid %d measured first and at the end (%v before the reload, %v after)",
			last.pid, sk.pidsBefore, sk.pidsAfter)
	}
	record(len(sk.leaks) == 0, "secrets and tokens in the soak's logs",
		"%d files (%d MiB) checked for %d secrets and tokens: %d found%s", sk.scanFiles, sk.scanBytes>>20, sk.scanCount, len(sk.leaks), joinDetails(sk.leaks))
}

// checkLeases checks that leased roles' reads have a lease and unleased
// ones' a ttl and none.
func (sk *soak) checkLeases(record func(bool, string, string, ...any)) {
	bad := 0
	for _, r := range sk.reads {
		role := sk.role(r.role)
		if r.err == nil && (role.leased != (r.leaseID != "") || !role.leased && r.ttl <= 0) {
			bad++
		}
	}
	record(bad == 0, "leases", "%d successful reads with a lease that did not match their role's leased (or no ttl when unleased)", bad)
}

// checkCoverage checks that no covered read of a token_reuse role failed.
func (sk *soak) checkCoverage(record func(bool, string, string, ...any)) {
	floor := staleFloor(sk.plan.lifetime) + 2*time.Second
	for _, role := range sk.roles {
		if !role.reuse {
			continue
		}
		deleted := sk.deletedRuns(role.clientID)
		var covered, excluded, failed int
		var firstFailures []string
		for _, r := range sk.reads {
			if r.role != role.name {
				continue
			}
			if sk.overlapsReload(r) || overlapsAny(r, deleted) {
				excluded++
				continue
			}
			if !sk.covered(r, role.clientID, deleted, floor) {
				continue
			}
			covered++
			if r.err != nil {
				failed++
				if len(firstFailures) < 5 {
					firstFailures = append(firstFailures, fmt.Sprintf("from %s to %s: %s", sk.offset(r.start), sk.offset(r.end), redactErr(r.err)))
				}
			}
		}
		record(failed == 0 && covered > 0, "reads of "+role.name+" while a valid token was cached",
			"%d failed of %d covered (%d reads overlapping the reload or a deletion of %s not judged)%s",
			failed, covered, excluded, role.clientID, joinDetails(firstFailures))
	}
}

// covered reports whether read r of a role minting with clientID began
// after the stand-in sent that credential a token that has floor left when
// r ended, in the same plugin process and since the credential was last
// restored.
func (sk *soak) covered(r credsRead, clientID string, deleted []phaseRun, floor time.Duration) bool {
	since := sk.start
	if !r.start.Before(sk.reloadEnd) {
		since = sk.reloadEnd
	}
	for _, p := range deleted {
		if !p.End.After(r.start) && p.End.After(since) {
			since = p.End
		}
	}
	for _, tok := range sk.issued[clientID] {
		if !tok.At.Before(since) && tok.At.Before(r.start) && tok.Exp.Sub(r.end) >= floor {
			return true
		}
	}
	return false
}

// checkDeletion checks that, once Piwik PRO rejected a deleted credential,
// its role's reads fail until the credential is back, and that the role
// reads again after.
func (sk *soak) checkDeletion(record func(bool, string, string, ...any)) {
	role := sk.roleByClient(soakDeletedClient)
	runs := sk.deletedRuns(soakDeletedClient)
	var rejected, servedAfter, recovered, judged int
	for _, p := range runs {
		if p.End.After(sk.end) {
			continue // cut short by the end of the run
		}
		judged++
		var firstReject time.Time
		for _, r := range sk.reads {
			if r.role == role.name && r.err != nil && failureCause(r.err) == "credentials" && !r.start.Before(p.Start) && !r.end.After(p.End) &&
				(firstReject.IsZero() || r.end.Before(firstReject)) {
				firstReject = r.end
			}
		}
		if firstReject.IsZero() {
			continue
		}
		rejected++
		for _, r := range sk.reads {
			if r.role == role.name && r.start.After(firstReject) && r.end.Before(p.End) && r.err == nil {
				servedAfter++
			}
		}
		for _, r := range sk.reads {
			if r.role == role.name && r.start.After(p.End) && r.err == nil {
				recovered++
				break
			}
		}
	}
	record(judged > 0 && rejected == judged && servedAfter == 0 && recovered == judged, "reads of "+role.name+" after Piwik PRO rejected its deleted credential",
		"%d deletions, %d rejected by Piwik PRO, after which %d reads were served a token while the credential was deleted; the role read again after %d restores",
		judged, rejected, servedAfter, recovered)
}

// deletedRuns are the phase runs in which clientID was deleted.
func (sk *soak) deletedRuns(clientID string) []phaseRun {
	var runs []phaseRun
	for _, p := range sk.sched.Phases {
		if spec := sk.plan.phases[p.Index]; slices.Contains(spec.Revoke, clientID) {
			runs = append(runs, p)
		}
	}
	return runs
}

func (sk *soak) overlapsReload(r credsRead) bool {
	return r.start.Before(sk.reloadEnd) && r.end.After(sk.reloadStart)
}

func overlapsAny(r credsRead, runs []phaseRun) bool {
	for _, p := range runs {
		if r.start.Before(p.End) && r.end.After(p.Start) {
			return true
		}
	}
	return false
}

func (sk *soak) role(name string) soakRole {
	for _, r := range sk.roles {
		if r.name == name {
			return r
		}
	}
	return soakRole{}
}

func (sk *soak) roleByClient(clientID string) soakRole {
	for _, r := range sk.roles {
		if r.clientID == clientID {
			return r
		}
	}
	return soakRole{}
}

// offset is t as seconds since the load began.
func (sk *soak) offset(t time.Time) string {
	return fmt.Sprintf("+%.1fs", t.Sub(sk.start).Seconds())
}

// isStale reports whether r was served a cached token during an outage.
func isStale(r credsRead) bool {
	return strings.Contains(strings.Join(r.warnings, "\n"), staleWarning)
}

// failureCause names why a read failed, from the plugin's message.
func failureCause(err error) string {
	msg := err.Error()
	var respErr *api.ResponseError
	status := 0
	if errors.As(err, &respErr) {
		status = respErr.StatusCode
	}
	for _, c := range []struct{ text, cause string }{
		{"rejected the client credentials", "credentials"},
		{"waiting out Piwik PRO's rate limit", "429, not sent"},
		{"rate limited the token request", "429"},
		{"this credential is backing off", "backing off, not sent"},
		{"Piwik PRO failed with HTTP", "5xx"},
		{"Piwik PRO is unreachable", "unreachable"},
		{"Piwik PRO timed out", "timeout"},
	} {
		if strings.Contains(msg, c.text) {
			return c.cause
		}
	}
	if status != 0 {
		return "HTTP " + strconv.Itoa(status)
	}
	return "no HTTP reply"
}

// report renders the run as Markdown.
func (sk *soak) report() string {
	var b strings.Builder
	p := sk.plan
	fmt.Fprintf(&b, "# Soak test: %s\n\n", sk.start.UTC().Format("2006-01-02T15:04Z"))
	fmt.Fprintf(&b, "- run: %s of load in %d cycle(s) of %s (scale %.2f); %d readers pausing %s between reads; `go test -run TestSoak` with SOAK_DURATION=%s\n",
		p.duration, p.cycles, p.duration/time.Duration(p.cycles), p.scale, sk.readers(), sk.pause, p.duration)
	fmt.Fprintf(&b, "- Vault: the real `vault` binary (%s), dev server (one node, in-memory storage), audit log on; plugin %s, registered with -env PIWIK_PLUGIN_DEBUG_DIR for its runtime statistics socket\n",
		vaultVersion(), pluginVersion.version)
	fmt.Fprintf(&b, "- machine: %d cores, shared with other jobs; load average (1, 5, 15 min) before: %s; after: %s\n",
		runtime.NumCPU(), sk.loadBefore, loadAverage())
	fmt.Fprintf(&b, "- tokens: lifetime %s; token_reuse roles: reuse_min_remaining %s, stale floor %s; config: request_timeout 10s, max_retries 3\n",
		p.lifetime, p.minRemaining, staleFloor(p.lifetime))
	fmt.Fprintf(&b, "- reload: `vault plugin reload -type=secret -plugin=%s` at %s took %s; plugin pid %v before, %v after\n\n",
		pluginName, sk.offset(sk.reloadStart), sk.reloadEnd.Sub(sk.reloadStart).Round(time.Millisecond), sk.pidsBefore, sk.pidsAfter)

	b.WriteString("Stand-in schedule, repeated:\n\n| phase | duration | fault |\n|---|---:|---|\n")
	for _, ph := range p.phases {
		fault := "none"
		if ph.Fault != nil {
			fault = fmt.Sprint(ph.Fault["kind"])
			if ra, ok := ph.Fault["retry_after"]; ok {
				fault += fmt.Sprintf(", Retry-After %vs", ra)
			}
			if d, ok := ph.Fault["delay_ms"]; ok {
				fault += fmt.Sprintf(", %vms", d)
			}
		}
		if len(ph.Revoke) > 0 {
			fault = "credential " + strings.Join(ph.Revoke, ", ") + " deleted"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", ph.Name, time.Duration(ph.DurationMS)*time.Millisecond, fault)
	}

	b.WriteString("\n## Checks\n\n| check | result | |\n|---|---|---|\n")
	for _, c := range sk.checks {
		mark := "pass"
		if !c.ok {
			mark = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", c.what, strings.ReplaceAll(c.result, "\n", "; "), mark)
	}

	b.WriteString("\n## Reads\n\n| role | credential | leased | token_reuse | readers | reads | ok | failed | stale warnings | failures by cause |\n|---|---|---|---|---:|---:|---:|---:|---:|---|\n")
	for _, role := range sk.roles {
		var reads, failed, stale int
		causes := map[string]int{}
		for _, r := range sk.reads {
			if r.role != role.name {
				continue
			}
			reads++
			if isStale(r) {
				stale++
			}
			if r.err != nil {
				failed++
				cause := failureCause(r.err)
				if sk.overlapsReload(r) {
					cause = "during the reload: " + cause
				}
				causes[cause]++
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %t | %t | %d | %d | %d | %d | %d | %s |\n", role.name, role.clientID, role.leased, role.reuse,
			role.readers, reads, reads-failed, failed, stale, countList(causes))
	}
	fmt.Fprintf(&b, "\nPlugin metrics of the process running at the end (they restart with it): %d upstream requests, %d failed (%s), %d tokens minted, %d reuse hits, %d stale serves, %d requests not sent (%s).\n",
		sk.metrics.UpstreamRequests, sk.metrics.UpstreamFailures, countList64(sk.metrics.FailuresByKind), sk.metrics.TokensMinted,
		sk.metrics.ReuseHits, sk.metrics.StaleServes, sk.metrics.RequestsNotSent, countList64(sk.metrics.NotSentByKind))

	b.WriteString("\n## Token requests the stand-in received, by phase (all cycles)\n\n| phase | credential | requests | outcomes |\n|---|---|---:|---|\n")
	type key struct{ phase, client string }
	byPhase := map[key]map[string]int64{}
	var order []key
	for _, run := range sk.sched.Phases {
		name := fmt.Sprintf("%d. %s", run.Index+1, run.Name)
		for id, outcomes := range run.Clients {
			k := key{name, id}
			if byPhase[k] == nil {
				byPhase[k] = map[string]int64{}
				order = append(order, k)
			}
			for o, n := range outcomes {
				byPhase[k][o] += n
			}
		}
	}
	sort.Slice(order, func(a, b int) bool {
		if order[a].phase != order[b].phase {
			ia, _ := strconv.Atoi(strings.SplitN(order[a].phase, ".", 2)[0])
			ib, _ := strconv.Atoi(strings.SplitN(order[b].phase, ".", 2)[0])
			return ia < ib
		}
		return order[a].client < order[b].client
	})
	for _, k := range order {
		var n int64
		for _, c := range byPhase[k] {
			n += c
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s |\n", k.phase, k.client, n, countList64(byPhase[k]))
	}
	b.WriteString("\nPer credential over the whole run:\n\n| credential | requests | outcomes | peak in flight | 429s sent | requests within the grace | violations | tokens issued |\n|---|---:|---|---:|---:|---:|---:|---:|\n")
	for _, c := range sk.clients.Clients {
		fmt.Fprintf(&b, "| %s | %d | %s | %d | %d | %d | %d | %d |\n", c.ClientID, c.Requests, countList64(c.Outcomes), c.PeakInFlight,
			c.RateLimitWindows, c.RequestsInGrace, c.Violations, c.TokensIssued)
	}

	b.WriteString("\n## Plugin measured idle (readers paused, every mint ended)\n\n| when | at | pid | goroutines | connections to Piwik PRO | goroutines net of connections | RSS MiB |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, s := range sk.idle {
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %.1f |\n", s.label, sk.offset(s.at), s.pid, s.goroutines, s.conns, s.net(), mib(s.rssKB))
	}

	fmt.Fprintf(&b, "\n## Over time (every %s; reads, failures, stale warnings and token requests in the interval)\n\n", sk.tableEvery())
	b.WriteString("| t | phase | reads | failed | stale | token requests | 429s sent | violations | peak in flight | plugin pid | RSS MiB | goroutines | heap MiB |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var last soakSample
	next := sk.start
	for i, s := range sk.samples {
		if s.at.Before(next) && i != len(sk.samples)-1 {
			continue
		}
		next = next.Add(sk.tableEvery())
		row := fmt.Sprintf("| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %.1f | %d | %.1f |", sk.offset(s.at), p.phaseAt(s.at.Sub(sk.start)),
			s.reads-last.reads, s.failed-last.failed, s.stale-last.stale, s.tokenRequests-last.tokenRequests, s.windows, s.violations, s.peakInFlight,
			s.pid, mib(s.rssKB), s.goroutines, float64(s.heapByte)/(1<<20))
		if s.err != "" {
			row += " " + strings.ReplaceAll(redact(s.err), "|", "/")
		}
		b.WriteString(row + "\n")
		last = s
	}
	return b.String()
}

func (sk *soak) readers() int {
	n := 0
	for _, r := range sk.roles {
		n += r.readers
	}
	return n
}

// joinDetails renders details after a result, or nothing.
func joinDetails(details []string) string {
	if len(details) == 0 {
		return ""
	}
	return ": " + strings.Join(details, "; ")
}

func countList(m map[string]int) string {
	m64 := make(map[string]int64, len(m))
	for k, v := range m {
		m64[k] = int64(v)
	}
	return countList64(m64)
}

// countList renders counts as "a 3, b 1", largest first.
func countList64(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool {
		if m[keys[a]] != m[keys[b]] {
			return m[keys[a]] > m[keys[b]]
		}
		return keys[a] < keys[b]
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func mib(kb int64) float64 {
	return float64(kb) / 1024
}

// change is the relative change from a to b in percent.
func change(a, b int64) float64 {
	if a == 0 {
		return math.Inf(1)
	}
	return 100 * float64(b-a) / float64(a)
}

// sleepUntil waits until t: the soak's phases are points in time.
func sleepUntil(t time.Time) {
	time.Sleep(time.Until(t))
}

// loadAverage is the machine's load average over 1, 5 and 15 minutes.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(data))[:3], " ")
}

// vaultVersion is what the vault binary says it is.
func vaultVersion() string {
	out, err := exec.Command(suite.vaultBin, "version").Output()
	if err != nil {
		return "version unknown"
	}
	// "Vault v1.21.0, built <date> (cgo)": the date is no build's when
	// the binary was built without one stamped in.
	version, _, _ := strings.Cut(strings.TrimSpace(string(out)), ",")
	return version
}

// childPIDs returns the processes whose parent is pid.
func childPIDs(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var children []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		// The command name, in parentheses, may hold spaces: the fields
		// after its closing parenthesis are state, then the parent's pid.
		fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			children = append(children, child)
		}
	}
	return children
}

// procStatusKB reads a field of /proc/<pid>/status given in kB.
func procStatusKB(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// connectionsTo counts the established TCP connections of process pid to
// the host and port of base (an http URL on 127.0.0.1).
func connectionsTo(pid int, base string) (int, error) {
	u, err := url.Parse(base)
	if err != nil {
		return 0, err
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return 0, fmt.Errorf("port of %s: %w", base, err)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	sockets := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if inode, ok := strings.CutPrefix(target, "socket:["); err == nil && ok {
			sockets[strings.TrimSuffix(inode, "]")] = true
		}
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return 0, err
	}
	wantRemote := fmt.Sprintf(":%04X", port)
	n := 0
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		// sl local_address rem_address st ... inode (the 10th field)
		if len(f) > 9 && strings.HasSuffix(f[2], wantRemote) && f[3] == "01" && sockets[f[9]] {
			n++
		}
	}
	return n, nil
}
