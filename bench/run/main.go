// Command run is the load benchmark behind `make bench` (scripts/bench.sh
// builds and starts it). It measures the piwik plugin inside real Vault
// servers against the Piwik PRO stand-in, beside Vault's own kv-v2 and a
// do-nothing baseline plugin (bench/baseline), on three Vault set-ups:
//
//   - dev: `vault server -dev`, storage in memory;
//   - raft: one non-dev server on integrated storage (raft) on disk,
//     initialised and unsealed like a production node;
//   - cluster: three raft servers; the load goes through the active node
//     and, separately, through a standby, which forwards to the active.
//
// On each it reads seven paths in interleaved rounds (kv-v2; the baseline
// leased and unleased; piwik leased and unleased, each with token_reuse and
// minting per read) and records throughput, latency, errors, the stand-in's
// token requests and the CPU each process spent. Then it measures what
// operators size for: the plugin's memory after many reads over many roles
// (dev), whether a reader of a token_reuse role ever waits for Piwik PRO at
// a token rollover, densely or sparsely read (dev), what one outstanding
// lease costs Vault in memory and on disk, and the lease count a steady
// read rate settles at (raft). It writes the
// report to $BENCH_OUT (bench/results/latest.md) and stdout.
//
// It stops every process it started when it ends, also on Ctrl-C. See
// BENCHMARKS.md for the knobs ($BENCH_*) and what the numbers mean.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/harness"
)

const (
	pluginName      = "vault-plugin-secrets-piwik"
	baselineName    = "vault-plugin-secrets-baseline"
	baselineVersion = "v0.1.0" // bench/baseline's RunningVersion
	standinClientID = "bench-client"
)

// pluginVersion is the version the piwik plugin is registered with; it
// must be the one its build stamped.
var pluginVersion = "v0.1.0"

// config holds the knobs, from the environment.
type config struct {
	quick       bool
	concurrency int
	duration    time.Duration // measured per scenario, over all rounds
	rounds      int
	warmup      time.Duration
	targets     []string
	rssRoles    int
	rssReads    int
	leases      int
	steadyTTL   time.Duration
	steadyRate  float64
	burst       int
	profileDir  string
	strict      bool
	out         string
	// rolloverTime is how long the rollover phase reads; sparseReads how
	// many reads the sparse reader makes after its first.
	rolloverTime time.Duration
	sparseReads  int
}

func (c config) slice() time.Duration { return c.duration / time.Duration(c.rounds) }

// benchRun is one run.
type benchRun struct {
	cfg         config
	vaultBin    string
	pluginBin   string
	baselineBin string
	standinBin  string
	work        string

	lab     *harness.Lab
	standin *harness.Standin

	ctx      context.Context
	results  *results
	profiles []profiled
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("bench: ")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	lab := &harness.Lab{BaseEnv: []string{"PATH=" + os.Getenv("PATH")}, Logf: step}
	err := run(ctx, lab)
	stop()
	lab.StopAll()
	if err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, lab *harness.Lab) error {
	cfg, err := readConfig()
	if err != nil {
		return err
	}
	h := &benchRun{cfg: cfg, ctx: ctx, lab: lab, results: newResults(cfg)}
	for _, b := range []struct {
		dst *string
		env string
	}{{&h.vaultBin, "VAULT_BINARY"}, {&h.pluginBin, "PLUGIN_BINARY"}, {&h.baselineBin, "BASELINE_BINARY"}, {&h.standinBin, "STANDIN_BINARY"}} {
		*b.dst = os.Getenv(b.env)
		if *b.dst == "" {
			return fmt.Errorf("set %s (make bench does)", b.env)
		}
		if _, err := os.Stat(*b.dst); err != nil {
			return fmt.Errorf("%s: %w", b.env, err)
		}
	}
	lab.VaultBin, lab.StandinBin = h.vaultBin, h.standinBin
	if v := os.Getenv("PLUGIN_VERSION"); v != "" {
		pluginVersion = v
	}
	if cfg.profileDir != "" {
		if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
			return err
		}
	}
	h.work, err = os.MkdirTemp("", "piwik-bench.")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		lab.StopAll()
		if ok {
			os.RemoveAll(h.work)
		} else {
			fmt.Fprintf(os.Stderr, "the run failed; logs are in %s\n", h.work)
		}
	}()

	h.results.machine = machineInfo(h.vaultBin)
	if err := h.startStandin(); err != nil {
		return err
	}
	for _, target := range cfg.targets {
		if err := h.runTarget(target); err != nil {
			return fmt.Errorf("%s: %w", target, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	report := h.results.render()
	if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(cfg.out, []byte(report), 0o644); err != nil {
		return err
	}
	fmt.Printf("\n%s\n(written to %s)\n", report, cfg.out)
	ok = true
	if cfg.strict && h.results.missed() {
		return errors.New("a target was missed (BENCH_STRICT=1)")
	}
	return nil
}

// runTarget starts one Vault set-up, runs everything that belongs to it
// and stops it.
func (h *benchRun) runTarget(target string) error {
	var (
		d       *deployment
		entries []entry
		err     error
	)
	began := time.Now()
	switch target {
	case "dev":
		d, err = h.startDev()
		if d != nil {
			entries = []entry{{key: "dev", title: "dev", node: d.nodes[0]}}
		}
	case "raft":
		d, err = h.startRaft("raft", "one raft node on disk", 1)
		if d != nil {
			entries = []entry{{key: "raft", title: "raft", node: d.nodes[0]}}
		}
	case "cluster":
		d, err = h.startRaft("cluster", "3-node raft cluster on disk", 3)
		if d != nil {
			entries = []entry{
				{key: "active", title: "cluster, active", node: d.nodes[0]},
				{key: "standby", title: "cluster, standby", node: d.nodes[1]},
			}
		}
	default:
		return fmt.Errorf("unknown target %q (BENCH_TARGETS takes dev, raft, cluster)", target)
	}
	if d != nil {
		defer d.stop()
	}
	if err != nil {
		return err
	}
	if err := h.setUp(d); err != nil {
		return err
	}
	for _, e := range entries {
		if err := h.burst(d, e); err != nil {
			return err
		}
	}
	if err := h.scenarios(d, entries); err != nil {
		return err
	}
	switch target {
	case "dev":
		if err = h.memoryRuns(d); err == nil {
			err = h.rolloverRuns(d)
		}
	case "raft":
		if err = h.leaseFootprint(d); err == nil {
			err = h.steadyState(d)
		}
	}
	if err != nil {
		return err
	}
	h.results.setupTimes = append(h.results.setupTimes, phaseTime{d.title, time.Since(began)})
	return nil
}

// startStandin starts the Piwik PRO stand-in on a free loopback port. It
// serves every Vault set-up; its secret never leaves this process and the
// stand-in's environment.
func (h *benchRun) startStandin() error {
	var err error
	h.standin, err = h.lab.StartStandin(harness.StandinSpec{Dir: h.work, Name: "standin", ClientID: standinClientID, Quiet: true})
	return err
}

// readConfig reads the knobs. BENCH_MODE=quick changes the defaults to a
// run of a few minutes for development; any knob set overrides its default.
func readConfig() (config, error) {
	c := config{
		concurrency: 16,
		duration:    16 * time.Second,
		rounds:      4,
		warmup:      2 * time.Second,
		targets:     []string{"dev", "raft", "cluster"},
		rssRoles:    1000,
		rssReads:    100000,
		leases:      20000,
		steadyTTL:   20 * time.Second,
		steadyRate:  50,
		burst:       64,
		out:         "bench/results/latest.md",

		rolloverTime: 30 * time.Second,
		sparseReads:  4,
	}
	switch mode := os.Getenv("BENCH_MODE"); mode {
	case "", "full":
	case "quick":
		c.quick = true
		c.concurrency = 8
		c.duration = 4 * time.Second
		c.rounds = 2
		c.warmup = time.Second
		c.rssReads = 10000
		c.leases = 2000
		c.steadyTTL = 8 * time.Second
		c.rolloverTime = 10 * time.Second
		c.sparseReads = 1
	default:
		return c, fmt.Errorf("BENCH_MODE is %q; want full or quick", mode)
	}
	var errs []error
	intKnob := func(name string, dst *int, minimum int) {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < minimum {
				errs = append(errs, fmt.Errorf("%s is %q; want a whole number of at least %d", name, v, minimum))
				return
			}
			*dst = n
		}
	}
	secondsKnob := func(name string, dst *time.Duration, minimum int) {
		n := int(*dst / time.Second)
		intKnob(name, &n, minimum)
		*dst = time.Duration(n) * time.Second
	}
	intKnob("BENCH_CONCURRENCY", &c.concurrency, 1)
	secondsKnob("BENCH_DURATION", &c.duration, 1)
	intKnob("BENCH_ROUNDS", &c.rounds, 1)
	secondsKnob("BENCH_WARMUP", &c.warmup, 0)
	intKnob("BENCH_RSS_ROLES", &c.rssRoles, 1)
	intKnob("BENCH_RSS_READS", &c.rssReads, 1)
	intKnob("BENCH_LEASES", &c.leases, 1)
	secondsKnob("BENCH_STEADY_TTL", &c.steadyTTL, 4)
	rate := int(c.steadyRate)
	intKnob("BENCH_STEADY_RATE", &rate, 1)
	c.steadyRate = float64(rate)
	intKnob("BENCH_BURST", &c.burst, 2)
	secondsKnob("BENCH_ROLLOVER", &c.rolloverTime, 1)
	intKnob("BENCH_SPARSE_READS", &c.sparseReads, 0)
	if v := os.Getenv("BENCH_TARGETS"); v != "" {
		c.targets = strings.Split(v, ",")
	}
	if c.duration < time.Duration(c.rounds)*time.Second {
		errs = append(errs, fmt.Errorf("BENCH_DURATION (%s) must be at least BENCH_ROUNDS (%d) seconds", c.duration, c.rounds))
	}
	c.profileDir = os.Getenv("BENCH_PROFILE_DIR")
	c.strict = os.Getenv("BENCH_STRICT") == "1"
	if v := os.Getenv("BENCH_OUT"); v != "" {
		c.out = v
	}
	return c, errors.Join(errs...)
}

// step prints what the harness is about to do.
func step(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}
