package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/piwik-vault/vault-plugin-secrets-piwik/bench/loadgen"
	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

// The rollover and sparse-reader phases: does a reader of a token_reuse
// role ever wait for Piwik PRO? Piwik PRO answers their credential after
// upstreamDelay, so that a read that waited for a mint shows it.
const (
	upstreamDelay = 300 * time.Millisecond

	// rolloverLifetime and rolloverReaders: short tokens, read without
	// pause by a few clients, so that a run crosses several reuse points.
	rolloverLifetime = 20 * time.Second
	rolloverReaders  = 8

	// sparseLifetime is long enough for Vault's periodic call (about once
	// a minute) to refresh a token before its reuse point (half its life).
	sparseLifetime = 3 * time.Minute
)

// rolloverResult is the latency of dense readers across token rollovers.
type rolloverResult struct {
	readers       int
	duration      time.Duration
	reads, errors int64
	upstream      int64
	latencies     []time.Duration // sorted
	firstError    string
}

// sparseRead is one read of the sparse reader.
type sparseRead struct {
	at, latency time.Duration // since the first read; how long it took
	lease       time.Duration
	err         string
}

// sparseResult is a reader that reads again at 85-95% of each lease, as
// Vault Agent does.
type sparseResult struct {
	reads    []sparseRead
	upstream int64
}

// rolloverRuns measures both phases on the dev server.
func (h *benchRun) rolloverRuns(d *deployment) error {
	defer func() {
		_ = h.standin.SetLifetime(standin.DefaultLifetime)
		_ = h.standin.Control("fault", map[string]any{"kind": ""})
	}()
	if err := h.rollover(d); err != nil {
		return err
	}
	return h.sparse(d)
}

// slowRole writes role with a credential of its own that Piwik PRO answers
// after upstreamDelay, issuing tokens of lifetime.
func (h *benchRun) slowRole(c *api.Client, role string, lifetime time.Duration, data map[string]any) error {
	clientID, secret := "bench-"+role, randomHex(16)
	if err := h.standin.AddCredential(clientID, secret); err != nil {
		return err
	}
	if err := h.standin.SetLifetime(lifetime); err != nil {
		return err
	}
	data["client_id"], data["client_secret"] = clientID, secret
	if err := writeRole(c, role, data); err != nil {
		return err
	}
	return h.standin.Control("fault", map[string]any{"kind": "slow", "delay_ms": upstreamDelay.Milliseconds(), "client_ids": []string{clientID}})
}

// rollover has rolloverReaders clients read one token_reuse role without
// pause for h.cfg.rolloverTime while its 20-second tokens roll over.
func (h *benchRun) rollover(d *deployment) error {
	c := d.active().client
	if err := h.slowRole(c, "rollover", rolloverLifetime, map[string]any{"token_reuse": true, "leased": false}); err != nil {
		return err
	}
	if _, err := c.Logical().Read("piwik/creds/rollover"); err != nil { // the first token
		return err
	}
	step("rollover: %d clients read piwik/creds/rollover for %s; %s tokens, Piwik PRO answers in %s",
		rolloverReaders, h.cfg.rolloverTime, rolloverLifetime, upstreamDelay)
	res, upstream, err := h.runCounting(loadgen.Options{
		Addr: d.active().Addr, Token: d.token, Path: "piwik/creds/rollover",
		Concurrency: rolloverReaders, Duration: h.cfg.rolloverTime,
	})
	if err != nil {
		return err
	}
	h.results.rollover = &rolloverResult{
		readers: rolloverReaders, duration: h.cfg.rolloverTime, reads: res.Reads, errors: res.Errors,
		upstream: upstream, latencies: res.Latencies, firstError: res.FirstError,
	}
	return nil
}

// sparse reads one token_reuse role h.cfg.sparseReads+1 times, each read
// at a random 85-95% of the lease the previous one got.
func (h *benchRun) sparse(d *deployment) error {
	c := d.active().client
	if err := h.slowRole(c, "sparse", sparseLifetime, map[string]any{"token_reuse": true}); err != nil {
		return err
	}
	up0, err := h.tokenRequests()
	if err != nil {
		return err
	}
	step("sparse reader: %d reads of piwik/creds/sparse, each at 85-95%% of the previous lease; %s tokens", h.cfg.sparseReads+1, sparseLifetime)
	res := &sparseResult{}
	start := time.Now()
	var next time.Time
	for i := 0; i <= h.cfg.sparseReads; i++ {
		if !next.IsZero() && !sleepUntil(h, next) {
			return h.ctx.Err()
		}
		began := time.Now()
		secret, err := c.Logical().ReadWithContext(h.ctx, "piwik/creds/sparse")
		read := sparseRead{at: began.Sub(start), latency: time.Since(began)}
		if err != nil || secret == nil {
			read.err = fmt.Sprint(err)
			res.reads = append(res.reads, read)
			break
		}
		read.lease = time.Duration(secret.LeaseDuration) * time.Second
		res.reads = append(res.reads, read)
		step("  read %d at %s: %s, lease %s", i, read.at.Round(time.Second), read.latency.Round(time.Millisecond), read.lease)
		fraction := 0.85 + 0.10*mrand.Float64()
		next = began.Add(time.Duration(fraction * float64(read.lease)))
	}
	up1, err := h.tokenRequests()
	res.upstream = up1 - up0
	h.results.sparse = res
	return err
}

// sleepUntil waits until t or until the run is stopped.
func sleepUntil(h *benchRun, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-h.ctx.Done():
		return false
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (r *results) renderRollover(p printer) {
	if ro := r.rollover; ro != nil {
		p("## Token rollover\n\n")
		p("%d clients read one token_reuse role (leased=false) without pause for %s, on the dev server. Its tokens live %s and Piwik PRO answers its credential after %s, so a read that waits for a mint takes at least that long.\n\n",
			ro.readers, ro.duration, rolloverLifetime, upstreamDelay)
		p("| reads | errors | token requests | p50 ms | p99 ms | p99.9 ms | max ms |\n|---:|---:|---:|---:|---:|---:|---:|\n")
		lat := func(q float64) float64 { return ms(loadgen.Percentile(ro.latencies, q)) }
		p("| %d | %d | %d | %.2f | %.2f | %.2f | %.2f |\n\n", ro.reads, ro.errors, ro.upstream, lat(0.5), lat(0.99), lat(0.999), lat(1))
		r.target(fmt.Sprintf("rollover: no read waits for Piwik PRO (slowest read < %s)", upstreamDelay),
			fmt.Sprintf("max %.1f ms, %d errors", lat(1), ro.errors), lat(1) < ms(upstreamDelay) && ro.errors == 0)
	}
	if sp := r.sparse; sp != nil {
		p("## Sparse reader\n\n")
		p("One reader reads a token_reuse role again at a random 85-95%% of each lease, as Vault Agent does; its tokens live %s and Piwik PRO answers its credential after %s.\n\n", sparseLifetime, upstreamDelay)
		p("| read | at | took ms | lease |\n|---:|---:|---:|---:|\n")
		worst := time.Duration(0)
		failed := 0
		for i, rd := range sp.reads {
			lease := rd.lease.String()
			if rd.err != "" {
				lease, failed = "failed: "+rd.err, failed+1
			}
			p("| %d | %s | %.1f | %s |\n", i, rd.at.Round(time.Second), ms(rd.latency), lease)
			if i > 0 {
				worst = max(worst, rd.latency)
			}
		}
		p("\n%d token requests in all (the first read's and the background refreshes).\n\n", sp.upstream)
		r.target(fmt.Sprintf("sparse reader: no read after the first waits for a mint (each < %s)", upstreamDelay),
			fmt.Sprintf("slowest %.1f ms over %d reads, %d failed", ms(worst), len(sp.reads)-1, failed), worst < upstreamDelay && failed == 0 && len(sp.reads) > 1)
	}
}
