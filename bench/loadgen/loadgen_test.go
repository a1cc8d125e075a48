package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// server counts the paths it is asked for and fails those under /fail/.
type server struct {
	mu    sync.Mutex
	paths map[string]int
}

func newServer(t *testing.T) (*server, string) {
	s := &server{paths: map[string]int{}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Vault-Token") != "tok" {
			http.Error(w, "no token", http.StatusForbidden)
			return
		}
		s.mu.Lock()
		s.paths[r.URL.Path]++
		s.mu.Unlock()
		if strings.Contains(r.URL.Path, "/fail/") {
			http.Error(w, "failed on purpose", http.StatusBadGateway)
			return
		}
		_, _ = w.Write([]byte(`{"data":{}}`))
	}))
	t.Cleanup(ts.Close)
	return s, ts.URL
}

func TestRunReadsAndSpread(t *testing.T) {
	s, addr := newServer(t)
	res, err := Run(context.Background(), Options{
		Addr: addr, Token: "tok", Path: "piwik/creds/r{i}", Spread: 5,
		Concurrency: 4, Duration: time.Minute, Reads: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Reads != 100 || res.Errors != 0 || len(res.Latencies) != 100 {
		t.Fatalf("reads %d, errors %d, latencies %d; want 100, 0, 100", res.Reads, res.Errors, len(res.Latencies))
	}
	for i := range 5 {
		if n := s.paths["/v1/piwik/creds/r"+string(rune('0'+i))]; n != 20 {
			t.Errorf("r%d read %d times, want 20", i, n)
		}
	}
	if Percentile(res.Latencies, 0.5) > Percentile(res.Latencies, 0.99) {
		t.Error("p50 above p99: latencies not sorted")
	}
}

func TestRunCountsErrorsAndWarmup(t *testing.T) {
	_, addr := newServer(t)
	res, err := Run(context.Background(), Options{
		Addr: addr, Token: "tok", Path: "fail/x", Concurrency: 2,
		Duration: 300 * time.Millisecond, Warmup: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Reads != 0 || res.Errors == 0 || res.WarmupErrors == 0 {
		t.Errorf("reads %d, errors %d, warm-up errors %d; want 0 and some of both", res.Reads, res.Errors, res.WarmupErrors)
	}
	if !strings.Contains(res.FirstError, "502") {
		t.Errorf("first error %q does not name the status", res.FirstError)
	}
}

func TestRunRate(t *testing.T) {
	s, addr := newServer(t)
	res, err := Run(context.Background(), Options{
		Addr: addr, Token: "tok", Path: "x", Concurrency: 4, Duration: time.Second, Rate: 50,
	})
	if err != nil {
		t.Fatal(err)
	}
	// 50 send slots fall in the second: never more reads, however fast the
	// clients (without the rate they would make thousands). A slow machine
	// may fit fewer; how many is not asserted.
	if res.Reads > 50 || res.Reads == 0 || s.paths["/v1/x"] != int(res.Reads) {
		t.Errorf("%d reads (server saw %d) in 1s at 50/s; want 1 to 50", res.Reads, s.paths["/v1/x"])
	}
}

func TestCheckRefusesOtherHosts(t *testing.T) {
	o := Options{Addr: "http://192.0.2.1:8200", Token: "tok", Path: "x", Concurrency: 1, Duration: time.Second}
	if err := o.Check(); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Errorf("Check of a non-loopback address: %v", err)
	}
}
