// Command load drives a fixed-time read load against a Vault server on this
// machine (package bench/loadgen) and prints what it measured as one JSON
// object: successful reads, reads per second, errors and latency
// percentiles. The benchmark harness (bench/run) uses the package directly;
// this command is for trying a path by hand.
//
// The path may hold "{i}", replaced by 0, 1, ... -spread-1 in turn across
// all clients, to spread the reads over many roles. With -reads the run
// also stops after that many requests; with -rate the requests are spaced
// evenly; with -method POST and -data it writes instead.
//
// The Vault token comes from $VAULT_TOKEN unless -token is given; the
// environment keeps it out of the process list.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/bench/loadgen"
)

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
	CPUMs        int64   `json:"cpu_ms"` // this process's CPU time, warm-up included
	WarmupReads  int64   `json:"warmup_reads"`
	WarmupErrors int64   `json:"warmup_errors"`
	FirstError   string  `json:"first_error,omitempty"`
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("load: ")
	o := loadgen.Options{}
	flag.StringVar(&o.Addr, "addr", envOr("VAULT_ADDR", "http://127.0.0.1:8200"), "Vault `URL` (loopback only; default $VAULT_ADDR)")
	flag.StringVar(&o.Token, "token", os.Getenv("VAULT_TOKEN"), "Vault `token` (default $VAULT_TOKEN, which keeps it out of ps)")
	flag.StringVar(&o.Path, "path", "", "API `path` under /v1/, e.g. piwik/creds/reuse; {i} is replaced by 0..spread-1 in turn")
	flag.IntVar(&o.Spread, "spread", 1, "how many values {i} in -path takes")
	flag.IntVar(&o.Concurrency, "concurrency", 16, "concurrent clients, each with its own connection")
	flag.DurationVar(&o.Duration, "duration", 20*time.Second, "how long to measure (at most "+loadgen.MaxDuration.String()+" with the warm-up)")
	flag.DurationVar(&o.Warmup, "warmup", 0, "run this long before measuring; those requests are counted apart")
	flag.Int64Var(&o.Reads, "reads", 0, "stop after this many measured requests (0: run for -duration)")
	flag.Float64Var(&o.Rate, "rate", 0, "total requests per second, spaced evenly (0: as fast as the clients go)")
	flag.StringVar(&o.Method, "method", http.MethodGet, "HTTP `method`")
	flag.StringVar(&o.Data, "data", "", "JSON request `body`, for writes")
	flag.DurationVar(&o.Timeout, "timeout", 10*time.Second, "per-request timeout")
	flag.Parse()
	if flag.NArg() > 0 {
		log.Fatalf("unexpected arguments %q", flag.Args())
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := loadgen.Run(ctx, o)
	if err != nil {
		log.Fatal(err)
	}
	out, err := json.Marshal(result{
		Path:         o.Path,
		Method:       o.Method,
		Concurrency:  o.Concurrency,
		DurationS:    round(res.Seconds, 3),
		Reads:        res.Reads,
		Errors:       res.Errors,
		ReadsPerS:    round(res.ReadsPerSecond(), 1),
		P50Ms:        ms(loadgen.Percentile(res.Latencies, 0.50)),
		P90Ms:        ms(loadgen.Percentile(res.Latencies, 0.90)),
		P99Ms:        ms(loadgen.Percentile(res.Latencies, 0.99)),
		MaxMs:        ms(loadgen.Percentile(res.Latencies, 1)),
		MeanMs:       ms(loadgen.Mean(res.Latencies)),
		CPUMs:        cpuMs(),
		WarmupReads:  res.WarmupReads,
		WarmupErrors: res.WarmupErrors,
		FirstError:   res.FirstError,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(out))
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// cpuMs is the CPU time this process has used, user and system.
func cpuMs() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return (ru.Utime.Nano() + ru.Stime.Nano()) / int64(time.Millisecond)
}

func ms(d time.Duration) float64 {
	return round(float64(d)/float64(time.Millisecond), 3)
}

func round(x float64, places int) float64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'f', places, 64), 64)
	return f
}
