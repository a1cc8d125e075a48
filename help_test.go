package piwik

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
)

// TestHelp_numbersComeFromTheConstants checks that the help text, field
// descriptions and metric descriptions that name a cap, a window, a floor
// or a share name the value of the constant that sets it.
func TestHelp_numbersComeFromTheConstants(t *testing.T) {
	b := newBackend()
	path := func(pattern string) *framework.Path {
		for _, p := range b.Paths {
			if p.Pattern == pattern {
				return p
			}
		}
		t.Fatalf("no path %q", pattern)
		return nil
	}
	response := func(p *framework.Path, field string) string {
		for _, op := range p.Operations {
			for _, rs := range op.Properties().Responses {
				for _, r := range rs {
					if f, ok := r.Fields[field]; ok {
						return f.Description
					}
				}
			}
		}
		t.Fatalf("%s: no response field %q", p.Pattern, field)
		return ""
	}
	prometheus, err := newMetrics(new(atomic.Int64)).prometheus("piwik")
	if err != nil {
		t.Fatal(err)
	}
	roles := path("roles/" + framework.GenericNameRegex("name"))
	metricsPath := path("metrics")
	for _, tc := range []struct {
		what, prose, want string
	}{
		{"metrics: upstream_in_flight_peak", response(metricsPath, "upstream_in_flight_peak"), fmt.Sprintf("the cap is %d", maxInFlight)},
		{"metrics: upstream_latency_ms", response(metricsPath, "upstream_latency_ms"), fmt.Sprintf("the last %d request", latencyWindow)},
		{"prometheus: in-flight peak", string(prometheus), fmt.Sprintf("(the cap is %d)", maxInFlight)},
		{"prometheus: request duration", string(prometheus), fmt.Sprintf("quantiles over the last %d.", latencyWindow)},
		{"creds help: stale floor", path("creds/" + framework.GenericNameRegex("name")).HelpDescription,
			fmt.Sprintf("least %d seconds (or %s of its lifetime", staleFloorMax/time.Second, fraction(staleFloorFraction))},
		{"roles: reuse_min_remaining", roles.Fields["reuse_min_remaining"].Description, fmt.Sprintf("0 means %s its lifetime", fraction(defaultReuseFraction))},
		{"roles: read reuse_min_remaining", response(roles, "reuse_min_remaining"), fmt.Sprintf("0 means %s its lifetime", fraction(defaultReuseFraction))},
		{"roles help: reuse_min_remaining", roles.HelpDescription, fmt.Sprintf("(0: %s of it)", fraction(defaultReuseFraction))},
		{"config: request_timeout", path("config").Fields["request_timeout"].Description, fmt.Sprintf("%s with more", fraction(maxTimedAttempts))},
		{"check help: interval", path("check").HelpDescription, fmt.Sprintf("one\ntoken request per %s on each node", checkInterval)},
	} {
		if !strings.Contains(tc.prose, tc.want) {
			t.Errorf("%s: want %q in:\n%s", tc.what, tc.want, tc.prose)
		}
	}
	for n, want := range map[int]string{2: "half", 3: "a third", 4: "a quarter", 10: "1/10"} {
		if got := fraction(n); got != want {
			t.Errorf("fraction(%d) = %q, want %q", n, got, want)
		}
	}
}
