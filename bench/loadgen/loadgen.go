// Package loadgen drives a read (or write) load against a Vault server on
// this machine and measures it: successful requests, errors and the latency
// of every measured request. bench/load wraps it as a command and bench/run,
// the benchmark harness, runs it in process.
//
// It sends plain HTTP/1.1 requests over a pool of keep-alive connections,
// one per client, with no retries, so that what it measures is Vault's and
// the plugin's, not a client library's. Without a rate the clients send one
// request after another (a closed loop); with one, requests are spaced
// evenly over time across all clients. It dials loopback addresses only.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// MaxDuration bounds a run whatever the options say, so that a typo cannot
// leave the load running for hours.
const MaxDuration = 15 * time.Minute

// Options describe one run.
type Options struct {
	// Addr is Vault's address, e.g. http://127.0.0.1:8200; loopback only.
	Addr string
	// Token is sent as X-Vault-Token.
	Token string
	// Path is the API path under /v1/. "{i}" in it is replaced by 0, 1, ...
	// Spread-1 in turn across all clients.
	Path   string
	Spread int
	// Concurrency is the number of clients, each with its own connection.
	Concurrency int
	// Duration is how long to measure, after Warmup.
	Duration time.Duration
	// Warmup is run before measuring; its requests are counted apart and
	// their latencies are not kept.
	Warmup time.Duration
	// Reads, when positive, ends the run after that many measured requests.
	Reads int64
	// Rate, when positive, is the total requests per second, spaced evenly.
	Rate float64
	// Method is the HTTP method (default GET); Data the JSON body, if any.
	Method string
	Data   string
	// Timeout bounds each request (default 10s).
	Timeout time.Duration
}

// Result is what a run measured. Latencies are those of the measured
// requests, failed ones included.
type Result struct {
	Reads        int64   // measured requests that succeeded
	Errors       int64   // measured requests that failed
	WarmupReads  int64   // warm-up requests that succeeded
	WarmupErrors int64   // warm-up requests that failed
	Seconds      float64 // measured time
	FirstError   string  // the first failure, warm-up included
	// Latencies are sorted, shortest first.
	Latencies []time.Duration
}

// ReadsPerSecond is the measured rate of successful requests.
func (r Result) ReadsPerSecond() float64 {
	if r.Seconds <= 0 {
		return 0
	}
	return float64(r.Reads) / r.Seconds
}

// Requests is every request sent, warm-up included.
func (r Result) Requests() int64 {
	return r.Reads + r.Errors + r.WarmupReads + r.WarmupErrors
}

// Percentile is the p-th percentile (nearest rank) of sorted; 0 without
// samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// Mean is the average of ds; 0 without samples.
func Mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

// Check validates o and fills in its defaults.
func (o *Options) Check() error {
	if o.Method == "" {
		o.Method = http.MethodGet
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Spread == 0 {
		o.Spread = 1
	}
	o.Path = strings.TrimPrefix(o.Path, "/")
	switch {
	case o.Path == "":
		return errors.New("no path")
	case o.Token == "":
		return errors.New("no Vault token")
	case o.Concurrency < 1:
		return errors.New("concurrency must be at least 1")
	case o.Spread < 1:
		return errors.New("spread must be at least 1")
	case o.Duration <= 0 || o.Warmup < 0 || o.Duration+o.Warmup > MaxDuration:
		return fmt.Errorf("duration plus warm-up must be positive and at most %s", MaxDuration)
	case o.Reads < 0 || o.Rate < 0:
		return errors.New("reads and rate cannot be negative")
	}
	_, err := LoopbackURL(o.Addr)
	return err
}

// LoopbackURL parses addr and rejects it unless its host is a loopback IP
// or a name that resolves only to loopback IPs.
func LoopbackURL(addr string) (*url.URL, error) {
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("parse address: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("address %q: want an http or https URL", addr)
	}
	ips, err := net.LookupIP(u.Hostname())
	if err != nil {
		return nil, fmt.Errorf("resolve address: %w", err)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return nil, fmt.Errorf("address %q: %s is not a loopback address; this load generator only loads servers on this machine", addr, ip)
		}
	}
	return u, nil
}

// dialLoopback refuses any connection that is not to a loopback IP, as a
// second guard behind LoopbackURL (a name could resolve differently later).
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
	started  atomic.Int64 // measured requests started, against Reads
	seq      atomic.Int64 // next {i}
	slot     atomic.Int64 // next send slot, with a rate
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

// Run runs the load described by o until its time is up, its reads are
// done or ctx ends, and returns what it measured.
func Run(ctx context.Context, o Options) (Result, error) {
	if err := o.Check(); err != nil {
		return Result{}, err
	}
	base, _ := LoopbackURL(o.Addr)
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, Control: dialLoopback}).DialContext,
		MaxIdleConnsPerHost: o.Concurrency,
		MaxConnsPerHost:     o.Concurrency,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: o.Timeout}

	w := &runner{o: o, base: base, client: client}
	start := time.Now()
	w.start = start
	w.measureFrom = start.Add(o.Warmup)
	w.deadline = w.measureFrom.Add(o.Duration)
	if o.Rate > 0 {
		w.interval = time.Duration(float64(time.Second) / o.Rate)
	}
	latencies := make([][]time.Duration, o.Concurrency)
	var wg sync.WaitGroup
	for i := range o.Concurrency {
		wg.Go(func() { latencies[i] = w.worker(ctx) })
	}
	wg.Wait()
	end := time.Now()

	all := slices.Concat(latencies...)
	slices.Sort(all)
	return Result{
		Reads:        w.c.reads.Load(),
		Errors:       w.c.errors.Load(),
		WarmupReads:  w.c.wuReads.Load(),
		WarmupErrors: w.c.wuErrors.Load(),
		Seconds:      max(0, end.Sub(w.measureFrom).Seconds()),
		FirstError:   w.c.firstErr,
		Latencies:    all,
	}, ctx.Err()
}

// runner is one run's shared state.
type runner struct {
	o           Options
	base        *url.URL
	client      *http.Client
	start       time.Time
	measureFrom time.Time
	deadline    time.Time
	interval    time.Duration // between sends, with a rate
	c           counters
}

// worker sends one request after another until the deadline, the reads are
// done or ctx ends, and returns the latencies of its measured requests.
func (w *runner) worker(ctx context.Context) []time.Duration {
	var lat []time.Duration
	for ctx.Err() == nil {
		if w.interval > 0 {
			at := w.start.Add(time.Duration(w.c.slot.Add(1)-1) * w.interval)
			if !at.Before(w.deadline) || !sleepUntil(ctx, at) {
				return lat
			}
		}
		now := time.Now()
		if !now.Before(w.deadline) {
			return lat
		}
		measuring := !now.Before(w.measureFrom)
		if measuring && w.o.Reads > 0 && w.c.started.Add(1) > w.o.Reads {
			return lat
		}
		path := w.o.Path
		if strings.Contains(path, "{i}") {
			i := (w.c.seq.Add(1) - 1) % int64(w.o.Spread)
			path = strings.ReplaceAll(path, "{i}", strconv.FormatInt(i, 10))
		}

		t0 := time.Now()
		err := w.do(ctx, path)
		d := time.Since(t0)
		if measuring {
			lat = append(lat, d)
		}
		switch {
		case err != nil:
			w.c.fail(measuring, err.Error())
		case measuring:
			w.c.reads.Add(1)
		default:
			w.c.wuReads.Add(1)
		}
	}
	return lat
}

// sleepUntil waits until t; false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// do sends one request and reads the whole reply; any status but 2xx is an
// error.
func (w *runner) do(ctx context.Context, path string) error {
	var body io.Reader
	if w.o.Data != "" {
		body = strings.NewReader(w.o.Data)
	}
	req, err := http.NewRequestWithContext(ctx, w.o.Method, w.base.JoinPath("v1", path).String(), body)
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", w.o.Token)
	if w.o.Data != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := w.client.Do(req)
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
	return fmt.Errorf("%s %s: %s: %s", w.o.Method, path, resp.Status, strings.TrimSpace(string(msg)))
}
