package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestMetricsPrometheus pins piwik/metrics in the Prometheus text format,
// as `vault read -format=raw` and a scraper's GET get it, read with the
// Prometheus project's own parser: the counters move with what the mount
// did (tokens minted, reuse hits, requests, a failure by its kind) and
// every sample carries the mount's label; the JSON form agrees. It also
// pins that a failed mint reaches a Vault log at the default level (info)
// as one warn line with the role, the kind, the status and the attempts,
// and nothing secret.
//
// It has its own stand-in and mount on the shared dev server, so that its
// counters count only what it does.
func TestMetricsPrometheus(t *testing.T) {
	const mount = "piwik-metrics"
	v, st := mountPrivately(t, mount)
	v.vault(t, "write", mount+"/roles/shared", "token_reuse=true")
	infoLog := v.monitor(t, "info")
	logStart := fileSize(v.proc.logPath)

	before := scrapeCLI(t, v, mount)
	v.readCreds(t, v.token, mount+"/creds/reporting")
	v.readCreds(t, v.token, mount+"/creds/shared")
	v.readCreds(t, v.token, mount+"/creds/shared") // from the cache
	// 501 Not Implemented: one request, never retried, no backoff.
	st.control(t, "fault", map[string]any{"kind": "not_implemented", "count": 1})
	if r := v.run(t, v.token, "", "read", mount+"/creds/reporting"); r.exitCode == 0 || !strings.Contains(r.stderr, "HTTP 501") {
		t.Fatalf("the read with the stand-in failing with 501 did not fail with it: exit %d\n%s", r.exitCode, redact(r.stderr))
	}
	after := scrapeHTTP(t, v, mount)
	if cli := scrapeCLI(t, v, mount); value(t, cli, mount, "piwik_tokens_minted_total", "") != value(t, after, mount, "piwik_tokens_minted_total", "") {
		t.Error("vault read -format=raw and GET ?format=prometheus disagree on piwik_tokens_minted_total")
	}

	for _, c := range []struct {
		name, kind string
		delta      float64
	}{
		{"piwik_tokens_minted_total", "", 2},
		{"piwik_reuse_hits_total", "", 1},
		{"piwik_upstream_requests_total", "", 3},
		{"piwik_upstream_failures_total", "server_error", 1},
	} {
		if d := value(t, after, mount, c.name, c.kind) - value(t, before, mount, c.name, c.kind); d != c.delta {
			t.Errorf("%s{kind=%q} went up by %v, want %v", c.name, c.kind, d, c.delta)
		}
	}
	if f := after["piwik_upstream_request_duration_seconds"]; f == nil || f.GetType() != dto.MetricType_SUMMARY ||
		f.Metric[0].GetSummary().GetSampleCount() != uint64(value(t, after, mount, "piwik_upstream_requests_total", "")) {
		t.Errorf("piwik_upstream_request_duration_seconds is not a summary with one sample per upstream request: %v", f)
	}
	for name, f := range after {
		if !strings.HasPrefix(name, "piwik_") {
			t.Errorf("metric %s is not named piwik_*", name)
		}
		for _, m := range f.Metric {
			if label(m, "mount") != mount {
				t.Errorf("a sample of %s has labels %v, want mount=%q", name, m.Label, mount)
			}
		}
	}

	var js struct {
		Data struct {
			TokensMinted   float64            `json:"tokens_minted"`
			FailuresByKind map[string]float64 `json:"failures_by_kind"`
		} `json:"data"`
	}
	decode(t, "vault read -format=json "+mount+"/metrics", v.vault(t, "read", "-format=json", mount+"/metrics"), &js)
	if js.Data.TokensMinted != value(t, after, mount, "piwik_tokens_minted_total", "") ||
		js.Data.FailuresByKind["server_error"] != value(t, after, mount, "piwik_upstream_failures_total", "server_error") {
		t.Errorf("the JSON form (tokens_minted %v, failures_by_kind %v) disagrees with the Prometheus form",
			js.Data.TokensMinted, js.Data.FailuresByKind)
	}

	// The failed mint, in the log of a Vault at the default level.
	warn := infoLog.waitFor(t, "a warn line for the failed mint", func(e map[string]any) bool {
		return e["@level"] == "warn" && strings.Contains(fmt.Sprint(e["@message"]), msgMintFailed)
	})
	for field, want := range map[string]string{"role": "reporting", "kind": "server_error", "status": "501", "attempts": "1"} {
		if got := fmt.Sprint(warn[field]); got != want {
			t.Errorf("the warn line has %s=%s, want %s", field, got, want)
		}
	}
	if line, _ := json.Marshal(warn); jwtShape.Match(line) || strings.Contains(string(line), st.clientSecret) {
		t.Errorf("the warn line holds a token or the client secret: %s", redact(string(line)))
	}
	// The same request's debug line is in the server's own log since the
	// test began (it runs at debug), and not in the info-level stream: the
	// level filter is real.
	serverLog, err := os.ReadFile(v.proc.logPath)
	if err != nil || int64(len(serverLog)) < logStart {
		t.Fatalf("read the server log: %v", err)
	}
	serverLog = serverLog[logStart:]
	// Vault re-logs a plugin's JSON fields in map order, so the line's
	// fields are matched one by one, in any order.
	if !hasDebugLine(string(serverLog), "Piwik PRO token request: ", "role=reporting", "status=501") {
		t.Error("the server's debug log has no debug line for the failed request")
	}
	for _, e := range infoLog.entries() {
		if e["@level"] == "debug" || e["@level"] == "trace" {
			t.Errorf("the info-level log stream has a %s line: %v", e["@level"], e["@message"])
		}
	}
}

// scrapeCLI reads mount/metrics in the Prometheus format with `vault read
// -format=raw` and parses it.
func scrapeCLI(t *testing.T, v *vaultServer, mount string) map[string]*dto.MetricFamily {
	t.Helper()
	out := v.vault(t, "read", "-format=raw", mount+"/metrics", "format=prometheus")
	return parseProm(t, "vault read -format=raw "+mount+"/metrics format=prometheus", out)
}

// scrapeHTTP reads mount/metrics as a Prometheus scraper does, with
// GET ?format=prometheus, checks the Content-Type and parses the body.
func scrapeHTTP(t *testing.T, v *vaultServer, mount string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, v.addr+"/v1/"+mount+"/metrics?format=prometheus", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", v.token)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s/metrics?format=prometheus: %v", mount, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	what := "GET " + mount + "/metrics?format=prometheus"
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: HTTP %d:\n%s", what, resp.StatusCode, body)
	}
	ct := resp.Header.Get("Content-Type")
	mediaType, params, err := mime.ParseMediaType(ct)
	if err != nil || mediaType != "text/plain" || params["version"] != "0.0.4" ||
		expfmt.ResponseFormat(resp.Header).FormatType() != expfmt.TypeTextPlain {
		t.Errorf("%s: Content-Type %q, want the Prometheus text format (text/plain; version=0.0.4)", what, ct)
	}
	return parseProm(t, what, string(body))
}

// parseProm parses text with the Prometheus text-format parser.
func parseProm(t *testing.T, what, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("%s: not the Prometheus text format: %v\n%s", what, err, text)
	}
	if len(families) == 0 {
		t.Fatalf("%s: no metrics:\n%s", what, text)
	}
	return families
}

// value returns the counter name{mount=mount, kind=kind} (kind "" for a
// counter without one), 0 when there is no such sample yet; it fails t if
// name is not a counter.
func value(t *testing.T, families map[string]*dto.MetricFamily, mount, name, kind string) float64 {
	t.Helper()
	f := families[name]
	if f == nil {
		if kind != "" {
			return 0 // a family by kind has no sample before the first one
		}
		t.Fatalf("no metric %s", name)
	}
	if f.GetType() != dto.MetricType_COUNTER {
		t.Fatalf("%s is a %s, want a counter", name, f.GetType())
	}
	for _, m := range f.Metric {
		if label(m, "mount") == mount && label(m, "kind") == kind {
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// label returns the value of m's label name, "" without one.
func label(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// logStream is what `sys/monitor` sent: Vault's log at one level, in JSON,
// from when the stream was opened.
type logStream struct {
	v    *vaultServer
	mu   sync.Mutex
	seen []map[string]any
}

// monitor opens a stream of v's log at level (what a server started with
// -log-level=level would write) until t ends. Its lines also go to a file
// that the log scan reads.
func (v *vaultServer) monitor(t *testing.T, level string) *logStream {
	t.Helper()
	client := v.client(t, v.token)
	client.SetClientTimeout(10 * time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	// Monitor returns once Vault has answered, and Vault answers only
	// after it has attached the stream to its logger: nothing logged from
	// here on is missed.
	lines, err := client.Sys().Monitor(ctx, level, "json")
	if err != nil {
		cancel()
		t.Fatalf("sys/monitor: %v", err)
	}
	path := filepath.Join(testDir(t), "monitor-"+level+".log")
	f, err := os.Create(path)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	rememberLog(path)
	s := &logStream{v: v}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.Close()
		for line := range lines {
			fmt.Fprintln(f, line)
			var e map[string]any
			if json.Unmarshal([]byte(line), &e) != nil {
				e = map[string]any{"@message": line} // Vault's own notes, such as dropped lines
			}
			s.mu.Lock()
			s.seen = append(s.seen, e)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s
}

func (s *logStream) entries() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.seen...)
}

// waitFor waits until an entry matches and returns it.
func (s *logStream) waitFor(t *testing.T, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	var found map[string]any
	err := waitFor(10*time.Second, 50*time.Millisecond, s.v.proc, func() (bool, error) {
		for _, e := range s.entries() {
			if match(e) {
				found = e
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("the log stream has no %s: %v", what, err)
	}
	return found
}

// hasDebugLine reports whether log has a [DEBUG] line holding msg and every
// one of fields as a whole key=value, whatever their order.
func hasDebugLine(log, msg string, fields ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "[DEBUG]") || !strings.Contains(line, msg) {
			continue
		}
		words, found := strings.Fields(line), 0
		for _, f := range fields {
			if slices.Contains(words, f) {
				found++
			}
		}
		if found == len(fields) {
			return true
		}
	}
	return false
}
