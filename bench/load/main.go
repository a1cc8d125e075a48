// Command load drives a fixed-time read load against a Vault server on this
// machine and prints what it measured as one JSON object: successful reads,
// reads per second, errors and latency percentiles. scripts/bench.sh runs it
// once per scenario.
//
// It sends plain HTTP/1.1 requests over a pool of keep-alive connections,
// one per client, with no retries and no rate limiting, so that what it
// measures is Vault's and the plugin's, not a client library's. It dials
// loopback addresses only.
//
// The path may hold "{i}", replaced by 0, 1, ... -spread-1 in turn across
// all clients, to spread the reads over many roles. With -reads the run
// also stops after that many requests; with -method POST and -data it
// writes instead (bench.sh creates its roles that way).
//
// With -latency-file it also appends the latency of every measured request,
// in microseconds, one per line, so that runs split into slices can be
// summed up afterwards.
//
// The Vault token comes from $VAULT_TOKEN unless -token is given; the
// environment keeps it out of the process list.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxDuration bounds a run whatever the flags say, so that a typo cannot
// leave the load running for hours.
const maxDuration = 15 * time.Minute

// options are the command-line flags.
type options struct {
	addr        *url.URL
	token       string
	path        string
	spread      int
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	reads       int64
	method      string
	data        string
	timeout     time.Duration
	latencyFile string
}

// result is what a run prints. Latencies are those of the measured requests,
// failed ones included, in milliseconds.
type result struct {
	Path         string  `json:"path"`
	Method       string  `json:"method"`
	Concurrency  int     `json:"concurrency"`
	DurationS    float64 `json:"duration_s"`
	Reads        int64   `json:"reads"`
	Errors       int64   `json:"errors"`
	ReadsPerS    float64 `json:"reads_per_s"`
	P50Ms        float64 `json:"p50_ms"`
	P90Ms        float64 `json:"p90_ms"`
	P99Ms        float64 `json:"p99_ms"`
	MaxMs        float64 `json:"max_ms"`
	MeanMs       float64 `json:"mean_ms"`
	CPUMs        int64   `json:"cpu_ms"` // the driver's own CPU time, warm-up included
	WarmupReads  int64   `json:"warmup_reads"`
	WarmupErrors int64   `json:"warmup_errors"`
	FirstError   string  `json:"first_error,omitempty"`
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("load: ")
	opts, err := parseFlags()
	if err != nil {
		log.Fatal(err)
	}
	res, all := run(opts)
	if opts.latencyFile != "" {
		if err := appendLatencies(opts.latencyFile, all); err != nil {
			log.Fatal(err)
		}
	}
	out, err := json.Marshal(res)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(out))
}

func parseFlags() (options, error) {
	var o options
	addr := flag.String("addr", envOr("VAULT_ADDR", "http://127.0.0.1:8200"), "Vault `URL` (loopback only; default $VAULT_ADDR)")
	flag.StringVar(&o.token, "token", os.Getenv("VAULT_TOKEN"), "Vault `token` (default $VAULT_TOKEN, which keeps it out of ps)")
	flag.StringVar(&o.path, "path", "", "API `path` under /v1/, e.g. piwik/creds/reuse; {i} is replaced by 0..spread-1 in turn")
	flag.IntVar(&o.spread, "spread", 1, "how many values {i} in -path takes")
	flag.IntVar(&o.concurrency, "concurrency", 16, "concurrent clients, each with its own connection")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "how long to measure (at most "+maxDuration.String()+")")
	flag.DurationVar(&o.warmup, "warmup", 0, "run this long before measuring; those requests are counted apart")
	flag.Int64Var(&o.reads, "reads", 0, "stop after this many measured requests (0: run for -duration)")
	flag.StringVar(&o.method, "method", http.MethodGet, "HTTP `method`")
	flag.StringVar(&o.data, "data", "", "JSON request `body`, for writes")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-request timeout")
	flag.StringVar(&o.latencyFile, "latency-file", "", "append each measured latency (µs, one per line) to this `file`")
	flag.Parse()

	if flag.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	u, err := loopbackURL(*addr)
	if err != nil {
		return o, err
	}
	o.addr = u
	o.path = strings.TrimPrefix(o.path, "/")
	switch {
	case o.path == "":
		return o, errors.New("-path is required")
	case o.token == "":
		return o, errors.New("no token: set $VAULT_TOKEN or -token")
	case o.concurrency < 1:
		return o, errors.New("-concurrency must be at least 1")
	case o.spread < 1:
		return o, errors.New("-spread must be at least 1")
	case o.duration <= 0 || o.duration+o.warmup > maxDuration:
		return o, fmt.Errorf("-duration plus -warmup must be positive and at most %s", maxDuration)
	case o.warmup < 0 || o.reads < 0:
		return o, errors.New("-warmup and -reads cannot be negative")
	}
	return o, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// loopbackURL parses addr and rejects it unless its host is a loopback IP
// or a name that resolves only to loopback IPs.
func loopbackURL(addr string) (*url.URL, error) {
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("parse -addr: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("-addr %q: want an http or https URL", addr)
	}
	ips, err := net.LookupIP(u.Hostname())
	if err != nil {
		return nil, fmt.Errorf("resolve -addr: %w", err)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return nil, fmt.Errorf("-addr %q: %s is not a loopback address; this driver only loads servers on this machine", addr, ip)
		}
	}
	return u, nil
}

// dialLoopback refuses any connection that is not to a loopback IP, as a
// second guard behind loopbackURL (a name could resolve differently later).
func dialLoopback(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing to dial %s: not a loopback address", address)
	}
	return nil
}

// counters are a run's shared tallies.
type counters struct {
	started  atomic.Int64 // measured requests started, against -reads
	seq      atomic.Int64 // next {i}
	reads    atomic.Int64
	errors   atomic.Int64
	wuReads  atomic.Int64
	wuErrors atomic.Int64

	errOnce  sync.Once
	firstErr string
}

func (c *counters) fail(measuring bool, msg string) {
	if measuring {
		c.errors.Add(1)
	} else {
		c.wuErrors.Add(1)
	}
	c.errOnce.Do(func() { c.firstErr = msg })
}

// run starts the clients, waits for them all to stop and sums up. It also
// returns the sorted latencies of the measured requests.
func run(o options) (result, []time.Duration) {
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, Control: dialLoopback}).DialContext,
		MaxIdleConnsPerHost: o.concurrency,
		MaxConnsPerHost:     o.concurrency,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: o.timeout}

	var c counters
	start := time.Now()
	measureFrom := start.Add(o.warmup)
	deadline := measureFrom.Add(o.duration)
	latencies := make([][]time.Duration, o.concurrency)

	var wg sync.WaitGroup
	for w := range o.concurrency {
		wg.Go(func() {
			latencies[w] = worker(client, o, &c, measureFrom, deadline)
		})
	}
	wg.Wait()
	end := time.Now()

	all := slices.Concat(latencies...)
	slices.Sort(all)
	elapsed := end.Sub(measureFrom).Seconds()
	res := result{
		Path:         o.path,
		Method:       o.method,
		Concurrency:  o.concurrency,
		DurationS:    round(elapsed, 3),
		Reads:        c.reads.Load(),
		Errors:       c.errors.Load(),
		P50Ms:        percentileMs(all, 0.50),
		P90Ms:        percentileMs(all, 0.90),
		P99Ms:        percentileMs(all, 0.99),
		MaxMs:        percentileMs(all, 1),
		MeanMs:       meanMs(all),
		WarmupReads:  c.wuReads.Load(),
		WarmupErrors: c.wuErrors.Load(),
		CPUMs:        cpuMs(),
		FirstError:   c.firstErr,
	}
	if elapsed > 0 {
		res.ReadsPerS = round(float64(res.Reads)/elapsed, 1)
	}
	return res, all
}

// appendLatencies appends ds to the file at path, in microseconds, one per
// line.
func appendLatencies(path string, ds []time.Duration) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open latency file: %w", err)
	}
	w := bufio.NewWriter(f)
	for _, d := range ds {
		w.WriteString(strconv.FormatInt(d.Microseconds(), 10))
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write latency file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write latency file: %w", err)
	}
	return nil
}

// worker sends one request after another until the deadline or until
// -reads requests have been started, and returns the latencies of its
// measured requests.
func worker(client *http.Client, o options, c *counters, measureFrom, deadline time.Time) []time.Duration {
	var lat []time.Duration
	for {
		now := time.Now()
		if !now.Before(deadline) {
			return lat
		}
		measuring := !now.Before(measureFrom)
		if measuring && o.reads > 0 && c.started.Add(1) > o.reads {
			return lat
		}
		path := o.path
		if strings.Contains(path, "{i}") {
			i := (c.seq.Add(1) - 1) % int64(o.spread)
			path = strings.ReplaceAll(path, "{i}", strconv.FormatInt(i, 10))
		}

		t0 := time.Now()
		err := do(client, o, path)
		d := time.Since(t0)
		if measuring {
			lat = append(lat, d)
		}
		switch {
		case err != nil:
			c.fail(measuring, err.Error())
		case measuring:
			c.reads.Add(1)
		default:
			c.wuReads.Add(1)
		}
	}
}

// do sends one request and reads the whole reply; any status but 2xx is an
// error.
func do(client *http.Client, o options, path string) error {
	var body io.Reader
	if o.data != "" {
		body = strings.NewReader(o.data)
	}
	req, err := http.NewRequestWithContext(context.Background(), o.method, o.addr.JoinPath("v1", path).String(), body)
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", o.token)
	if o.data != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	// Vault's error bodies hold messages, not secrets.
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	return fmt.Errorf("%s %s: %s: %s", o.method, path, resp.Status, strings.TrimSpace(string(msg)))
}

// percentileMs is the p-th percentile (nearest rank) of sorted, in
// milliseconds; 0 without samples.
func percentileMs(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return ms(sorted[i])
}

// cpuMs is the CPU time this process has used, user and system, so that
// the benchmark can tell how much of the shared cores the driver took.
func cpuMs() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return (ru.Utime.Nano() + ru.Stime.Nano()) / int64(time.Millisecond)
}

func meanMs(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return ms(sum / time.Duration(len(ds)))
}

func ms(d time.Duration) float64 {
	return round(float64(d)/float64(time.Millisecond), 3)
}

func round(x float64, places int) float64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'f', places, 64), 64)
	return f
}
