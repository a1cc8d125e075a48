package e2e

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/harness"
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
//   - the plugin's RSS, threads and open files at the end are within 10%
//     (the counts within 2, where that is more) of what they were early
//     in the run, a minute after the reload at full scale (measured idle,
//     with the readers paused and every mint ended; the open files net of
//     the connections to Piwik PRO, which the transport keeps idle for
//     90s). The plugin is the shipped binary, measured from outside
//     through /proc: nothing outside a Go process can count its
//     goroutines, so a leak shows as what goroutines hold (descriptors,
//     threads, memory);
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

// soak is a running soak test.
type soak struct {
	plan       soakPlan
	pause      time.Duration
	v          *vaultServer
	st         *standin
	client     *api.Client
	roles      []soakRole
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
	clients standinClients
	sched   scheduleReport
	issued  map[string][]issuedToken
	metrics pluginMetrics
	scan    harness.ScanResult
	checks  []soakCheck
}

// startSoak starts the stand-in and a dev server of the soak's own, and
// writes the config and the roles.
func startSoak(t *testing.T, plan soakPlan, pause time.Duration) *soak {
	t.Helper()
	dir := testDir(t)
	sk := &soak{plan: plan, pause: pause, loadBefore: harness.LoadAverage()}

	sk.st = startStandin(t, dir, "soak-standin", t.Cleanup)
	sk.v = startDevVault(t, dir, "vault", t.Cleanup)
	sk.v.enableAudit(t)
	version := sk.v.builtVersion(t)
	sk.v.registerPlugin(t, pluginName, version)
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
	var err error
	if sk.scan, err = harness.ScanFiles(paths, watch.Labels()); err != nil {
		t.Error(err)
	}
}

// sleepUntil waits until t: the soak's phases are points in time.
func sleepUntil(t time.Time) {
	time.Sleep(time.Until(t))
}
