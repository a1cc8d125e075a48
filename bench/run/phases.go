package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/piwik-vault/vault-plugin-secrets-piwik/bench/loadgen"
	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/harness"
)

// --- cold-cache burst ----------------------------------------------------

// burstResult is a cold token_reuse role read by many clients at once.
type burstResult struct {
	entry, mode    string
	clients        int
	reads, errors  int64
	upstream       int64
	firstError     string
	readsPerSecond float64
}

// burst writes a fresh token_reuse role per mode and has cfg.burst
// clients read it at once, four reads each: the stand-in must see one
// token request per role, however many readers missed the cache together.
func (h *benchRun) burst(d *deployment, e entry) error {
	for _, leased := range []bool{true, false} {
		mode := modeName(leased)
		role := fmt.Sprintf("burst-%s-%s", e.key, mode)
		if err := writeRole(d.active().client, role, map[string]any{"token_reuse": true, "leased": leased}); err != nil {
			return err
		}
		step("%s: %d clients read the cold role %s (%s) at once", e.title, h.cfg.burst, role, mode)
		res, upstream, err := h.runCounting(loadgen.Options{
			Addr: e.node.Addr, Token: d.token, Path: "piwik/creds/" + role,
			Concurrency: h.cfg.burst, Duration: time.Minute, Reads: int64(4 * h.cfg.burst),
		})
		if err != nil {
			return err
		}
		h.results.bursts = append(h.results.bursts, burstResult{
			entry: e.title, mode: mode, clients: h.cfg.burst, reads: res.Reads, errors: res.Errors,
			upstream: upstream, firstError: res.FirstError, readsPerSecond: res.ReadsPerSecond(),
		})
	}
	return nil
}

// runCounting runs the load opts describes and returns its result with
// how many token requests the stand-in answered meanwhile.
func (h *benchRun) runCounting(opts loadgen.Options) (loadgen.Result, int64, error) {
	up0, err := h.tokenRequests()
	if err != nil {
		return loadgen.Result{}, 0, err
	}
	res, err := loadgen.Run(h.ctx, opts)
	if err != nil {
		return res, 0, err
	}
	up1, err := h.tokenRequests()
	return res, up1 - up0, err
}

func modeName(leased bool) string {
	if leased {
		return "leased"
	}
	return "unleased"
}

// --- plugin memory ---------------------------------------------------------

// memoryResult is the plugin's memory after many reads over many roles.
type memoryResult struct {
	mode           string
	roles          int
	reads, errors  int64
	readsPerSecond float64
	p99            time.Duration
	upstream       int64
	rss, hwm       int64
	firstError     string
}

// memoryRuns reads cfg.rssReads times over cfg.rssRoles token_reuse roles,
// round-robin, once leased and once unleased, and records the piwik
// plugin's resident memory after each.
func (h *benchRun) memoryRuns(d *deployment) error {
	for _, leased := range []bool{true, false} {
		mode := modeName(leased)
		prefix := map[bool]string{true: "r", false: "u"}[leased]
		step("writing %d %s token_reuse roles %s0..%s%d", h.cfg.rssRoles, mode, prefix, prefix, h.cfg.rssRoles-1)
		data, _ := json.Marshal(map[string]any{"token_reuse": true, "leased": leased})
		res, err := loadgen.Run(h.ctx, loadgen.Options{
			Addr: d.active().Addr, Token: d.token, Path: "piwik/roles/" + prefix + "{i}", Spread: h.cfg.rssRoles,
			Reads: int64(h.cfg.rssRoles), Method: http.MethodPost, Data: string(data), Concurrency: 4, Duration: 5 * time.Minute,
		})
		if err != nil {
			return err
		}
		if res.Reads != int64(h.cfg.rssRoles) {
			return fmt.Errorf("writing the roles: %d of %d written: %s", res.Reads, h.cfg.rssRoles, res.FirstError)
		}

		pids := d.pluginPIDs(pluginName)
		if len(pids) != 1 {
			return fmt.Errorf("expected one %s process, found %v", pluginName, pids)
		}
		harness.ResetPeak(pids[0])
		step("memory (%s): %d reads of piwik/creds/%s{0..%d}, round-robin, %d clients", mode, h.cfg.rssReads, prefix, h.cfg.rssRoles-1, h.cfg.concurrency)
		res, upstream, err := h.runCounting(loadgen.Options{
			Addr: d.active().Addr, Token: d.token, Path: "piwik/creds/" + prefix + "{i}", Spread: h.cfg.rssRoles,
			Reads: int64(h.cfg.rssReads), Concurrency: h.cfg.concurrency, Duration: loadgen.MaxDuration,
		})
		if err != nil {
			return err
		}
		h.results.memory = append(h.results.memory, memoryResult{
			mode: mode, roles: h.cfg.rssRoles, reads: res.Reads, errors: res.Errors,
			readsPerSecond: res.ReadsPerSecond(), p99: loadgen.Percentile(res.Latencies, 0.99),
			upstream: upstream, rss: memStatus(pids[0], "VmRSS"), hwm: memStatus(pids[0], "VmHWM"),
			firstError: res.FirstError,
		})
	}
	if m, err := d.active().client.Logical().Read("piwik/metrics"); err == nil && m != nil {
		keep := map[string]any{}
		for _, k := range []string{"tokens_minted", "reuse_hits", "upstream_requests", "upstream_failures"} {
			keep[k] = m.Data[k]
		}
		out, _ := json.Marshal(keep)
		h.results.pluginMetrics = string(out)
	}
	return nil
}

// --- lease footprint -------------------------------------------------------

// footprint is Vault's memory and storage at one point.
type footprint struct {
	label     string
	leases    int   // outstanding leases in all of Vault
	rss       int64 // VmRSS
	rssAnon   int64 // RssAnon: the Go heap and other private memory
	heap      int64 // live Go heap, right after a collection
	vaultDB   int64 // raft's FSM (bolt) file
	raftDB    int64 // raft's log store
	snapState int64 // bytes of state in a raft snapshot, uncompressed
}

// footprintResult is a lease footprint measurement.
type footprintResult struct {
	reads  int
	points []footprint // before, after leased reads, after unleased reads
}

// leaseFootprint measures what outstanding leases cost the raft node:
// memory and storage before and after cfg.leases leased reads of a
// token_reuse role (one lease each), then after as many unleased reads.
func (h *benchRun) leaseFootprint(d *deployment) error {
	n := d.active()
	c := n.client
	for name, leased := range map[string]bool{"cap": true, "ucap": false} {
		if err := writeRole(c, name, map[string]any{"token_reuse": true, "leased": leased}); err != nil {
			return err
		}
	}
	measure := func(label string) error {
		step("lease footprint: measuring (%s)", label)
		f, err := h.footprint(d, n, label)
		if err == nil {
			h.results.footprint.points = append(h.results.footprint.points, f)
		}
		return err
	}
	h.results.footprint.reads = h.cfg.leases
	if err := measure("before"); err != nil {
		return err
	}
	for _, role := range []string{"cap", "ucap"} {
		step("lease footprint: %d reads of piwik/creds/%s", h.cfg.leases, role)
		res, err := loadgen.Run(h.ctx, loadgen.Options{
			Addr: n.Addr, Token: d.token, Path: "piwik/creds/" + role, Reads: int64(h.cfg.leases),
			Concurrency: h.cfg.concurrency, Duration: loadgen.MaxDuration,
		})
		if err != nil {
			return err
		}
		if res.Reads != int64(h.cfg.leases) {
			return fmt.Errorf("lease footprint: %d of %d reads of %s succeeded: %s", res.Reads, h.cfg.leases, role, res.FirstError)
		}
		if err := measure(fmt.Sprintf("after %d reads of %s", h.cfg.leases, role)); err != nil {
			return err
		}
	}
	return nil
}

// footprint measures n's memory and storage.
func (h *benchRun) footprint(d *deployment, n *node, label string) (footprint, error) {
	f := footprint{label: label}
	var err error
	// The heap first: its forced collection also trims RSS a little.
	if f.heap, err = heapAfterGC(n.client); err != nil {
		return f, err
	}
	pid := n.Proc.PID()
	f.rss, f.rssAnon = memStatus(pid, "VmRSS"), memStatus(pid, "RssAnon")
	if f.leases, err = leaseCount(n.client); err != nil {
		return f, err
	}
	f.vaultDB = harness.FileSize(filepath.Join(n.raftDir, "vault.db"))
	f.raftDB = harness.FileSize(filepath.Join(n.raftDir, "raft", "raft.db"))
	f.snapState, err = snapshotStateSize(n.client)
	return f, err
}

// heapAfterGC has Vault collect garbage and returns its live heap
// (runtime.MemStats.HeapAlloc right after the collection), from
// sys/pprof/heap?gc=1&debug=1.
func heapAfterGC(c *api.Client) (int64, error) {
	resp, err := rawGet(c, "sys/pprof/heap", map[string][]string{"gc": {"1"}, "debug": {"1"}})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("sys/pprof/heap: no HeapAlloc in the reply")
}

// snapshotStateSize takes a raft snapshot and returns the size of the data
// in it, uncompressed: every key and (encrypted) value Vault stores.
func snapshotStateSize(c *api.Client) (int64, error) {
	var buf bytes.Buffer
	if err := c.Sys().RaftSnapshot(&buf); err != nil {
		return 0, fmt.Errorf("raft snapshot: %w", err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		return 0, fmt.Errorf("raft snapshot: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return 0, errors.New("raft snapshot: no state.bin in the archive")
		}
		if err != nil {
			return 0, fmt.Errorf("raft snapshot: %w", err)
		}
		if hdr.Name == "state.bin" {
			return io.Copy(io.Discard, tr)
		}
	}
}

// leaseCount is the number of leases Vault holds under the mounts the
// benchmark reads, counted by listing them (sys/leases/lookup). Vault's
// own gauge, vault.expire.num_leases, lags by up to its metrics interval.
func leaseCount(c *api.Client) (int, error) {
	total := 0
	for _, prefix := range []string{"piwik/creds/", "baseline/creds/"} {
		n, err := countLeases(c, "sys/leases/lookup/"+prefix)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// countLeases counts the leases under a sys/leases/lookup prefix, one
// level of sub-prefixes (the roles) deep.
func countLeases(c *api.Client, prefix string) (int, error) {
	s, err := c.Logical().List(prefix)
	if err != nil || s == nil {
		return 0, err
	}
	keys, _ := s.Data["keys"].([]any)
	n := 0
	for _, k := range keys {
		key, _ := k.(string)
		if !strings.HasSuffix(key, "/") {
			n++
			continue
		}
		m, err := listCount(c, prefix+key)
		if err != nil {
			return 0, err
		}
		n += m
	}
	return n, nil
}

// --- steady state ------------------------------------------------------------

// steadySample is the lease count of the two roles at one time.
type steadySample struct {
	at          time.Duration
	mint, reuse int
}

// steadyResult is a run at a steady rate with short-lived tokens.
type steadyResult struct {
	ttl                   time.Duration
	rate                  float64
	duration              time.Duration
	samples               []steadySample
	mintReads, reuseReads int64
	mintReqs, reuseReqs   int64 // requests sent, errors included
	errors                int64
	mintUp, reuseUp       int64
	firstError            string
}

// steadyState checks the lease arithmetic with short tokens: the stand-in
// issues tokens that live cfg.steadyTTL, two leased roles (mint per read
// and token_reuse) are read at cfg.steadyRate each for three lifetimes,
// and the leases under each role are counted as they pile up and expire.
// Each role has a Piwik PRO credential of its own, so that the stand-in
// counts each role's token requests apart.
func (h *benchRun) steadyState(d *deployment) error {
	cfg := h.cfg
	n := d.active()
	ttl := cfg.steadyTTL
	if err := h.standin.SetLifetime(ttl); err != nil {
		return err
	}
	defer func() { _ = h.standin.SetLifetime(30 * time.Minute) }()
	roles := map[string]map[string]any{"ss-mint": {}, "ss-reuse": {"token_reuse": true}}
	for name, data := range roles {
		id, secret := d.key+"-"+name, harness.RandomString(32)
		if err := h.standin.AddCredential(id, secret); err != nil {
			return err
		}
		data["client_id"], data["client_secret"] = id, secret
		if err := writeRole(n.client, name, data); err != nil {
			return err
		}
	}
	r := &h.results.steady
	*r = steadyResult{ttl: ttl, rate: cfg.steadyRate, duration: 3 * ttl}
	step("steady state: tokens live %s; piwik/creds/ss-mint and ss-reuse read at %.0f/s each for %s", ttl, cfg.steadyRate, r.duration)

	by0, err := h.tokenRequestsBy()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	var mintRes, reuseRes loadgen.Result
	var mintErr, reuseErr error
	start := time.Now()
	for _, job := range []struct {
		role string
		res  *loadgen.Result
		err  *error
	}{{"ss-mint", &mintRes, &mintErr}, {"ss-reuse", &reuseRes, &reuseErr}} {
		wg.Go(func() {
			*job.res, *job.err = loadgen.Run(h.ctx, loadgen.Options{
				Addr: n.Addr, Token: d.token, Path: "piwik/creds/" + job.role,
				Concurrency: 4, Duration: r.duration, Rate: cfg.steadyRate,
			})
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	sample := func() {
		s := steadySample{at: time.Since(start).Round(100 * time.Millisecond)}
		s.mint, _ = listCount(n.client, "sys/leases/lookup/piwik/creds/ss-mint/")
		s.reuse, _ = listCount(n.client, "sys/leases/lookup/piwik/creds/ss-reuse/")
		r.samples = append(r.samples, s)
	}
	tick := time.NewTicker(max(time.Second, ttl/8))
	defer tick.Stop()
loop:
	for {
		select {
		case <-done:
			break loop
		case <-tick.C:
			sample()
		}
	}
	sample()
	if err := errors.Join(mintErr, reuseErr); err != nil {
		return err
	}
	by1, err := h.tokenRequestsBy()
	if err != nil {
		return err
	}
	r.mintReads, r.reuseReads = mintRes.Reads, reuseRes.Reads
	r.mintReqs, r.reuseReqs = mintRes.Requests(), reuseRes.Requests()
	r.errors = mintRes.Errors + reuseRes.Errors
	r.mintUp = by1[d.key+"-ss-mint"] - by0[d.key+"-ss-mint"]
	r.reuseUp = by1[d.key+"-ss-reuse"] - by0[d.key+"-ss-reuse"]
	r.firstError = mintRes.FirstError + reuseRes.FirstError
	return nil
}

// tokenRequestsBy is the stand-in's token requests by client id.
func (h *benchRun) tokenRequestsBy() (map[string]int64, error) {
	st, err := h.standin.Stats()
	return st.TokenRequestsBy, err
}

// listCount is the number of keys a LIST of path returns.
func listCount(c *api.Client, path string) (int, error) {
	s, err := c.Logical().List(path)
	if err != nil || s == nil {
		return 0, err
	}
	keys, _ := s.Data["keys"].([]any)
	return len(keys), nil
}

// --- small helpers ---------------------------------------------------------

// rawGet GETs an API path (without /v1/) with query parameters; the
// caller closes the reply's body.
func rawGet(c *api.Client, path string, params map[string][]string) (*api.Response, error) {
	resp, err := c.Logical().ReadRawWithDataWithContext(context.Background(), path, params)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	return resp, nil
}
