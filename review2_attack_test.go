package piwik

// A second independent adversarial review, of the fixes the first one led
// to and of what it did not try. Tests under a "Finding" comment fail on
// the code as reviewed (commit 8cabdcf); the comment says what is wrong and
// the test asserts the behaviour wanted. The others are attacks the plugin
// withstood, kept so that it stays that way.

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

// rateLimitedFor answers 429 with Retry-After: 120 to every token request
// made with limited as its secret, a token to those made with ok, and 401
// invalid_client to any other; it counts the requests made with limited.
func rateLimitedFor(limited, ok string, count *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		secret, _ := requestSecret(r)
		w.Header().Set("Content-Type", "application/json")
		switch secret {
		case limited:
			count.Add(1)
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusTooManyRequests)
		case ok:
			_, _ = io.WriteString(w, reply("Bearer", 1800, testJWT(map[string]any{"sub": "u", "exp": time.Now().Unix() + 1800})))
		default:
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
		}
	}
}

// ---------------------------------------------------------------------------
// Finding A: pathConfigWrite calls b.gates.reset() before its verification
// mint, and reset forgets the gate of every credential on the node. So:
//
//   - a config write that is refused ("nothing was stored", here a
//     mistyped client_secret) still lifts the live Retry-After window of
//     the stored credential: the next creds read goes to Piwik PRO inside
//     the 120 s it asked for;
//   - any config write also lifts the windows of the roles' own
//     credentials, which the write neither uses nor changes.
//
// The write's own verification request is meant to pass the window (it is
// the operator's deliberate probe); every reader on the node passes with
// it. An operator retrying a refused write during a rate-limit incident
// re-opens the floodgate on each retry.

func TestReview2_refusedConfigWriteKeepsTheRateLimitWindow(t *testing.T) {
	var limited atomic.Int64
	e := hostileEnv(t, rateLimitedFor(testClientSecret, "", &limited), nil)

	_, msg := statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("read 1: %s", msg)
	_, msg = statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("read 2 (inside the window): %s", msg)
	if limited.Load() != 1 {
		t.Fatalf("%d requests before the write, want 1 (the second read fails fast)", limited.Load())
	}

	before := e.snapshot()
	status, msg := statusOf(e.do(logical.UpdateOperation, "config", map[string]any{
		"client_secret": "mistyped-secret-0a1b2c3d", "verify_credentials": true,
	}))
	t.Logf("config write with a wrong client_secret: %d %s", status, msg)
	if status != http.StatusBadRequest || !maps.Equal(before, e.snapshot()) {
		t.Fatalf("the write was not refused cleanly: %d", status)
	}

	_, msg = statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("read 3 (still inside Retry-After: 120): %s", msg)
	if n := limited.Load(); n != 1 {
		t.Errorf("%d requests with the rate-limited credential inside its Retry-After window; a refused config write (nothing stored) lifted it", n)
	}
}

func TestReview2_configWriteKeepsOtherCredentialsWindows(t *testing.T) {
	var limited atomic.Int64
	e := hostileEnv(t, rateLimitedFor(roleClientSecret, testClientSecret, &limited), nil)
	e.mustDo(logical.CreateOperation, "roles/own", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})

	_, msg := statusOf(e.do(logical.ReadOperation, "creds/own", nil))
	t.Logf("creds/own: %s", msg)
	_, _ = e.do(logical.ReadOperation, "creds/own", nil)
	if limited.Load() != 1 {
		t.Fatalf("%d requests before the write, want 1", limited.Load())
	}
	// The operator changes the config's request_timeout, nothing else.
	e.mustDo(logical.UpdateOperation, "config", map[string]any{"request_timeout": 20, "verify_credentials": true})

	_, msg = statusOf(e.do(logical.ReadOperation, "creds/own", nil))
	t.Logf("creds/own after the config write: %s", msg)
	if n := limited.Load(); n != 1 {
		t.Errorf("%d requests with the role's own credential inside its Retry-After window; a config write that does not touch that credential lifted it", n)
	}
}

// ---------------------------------------------------------------------------
// Finding B: maxInFlight ("at most 4 token requests in flight with one
// credential on one node") holds per gate object, and every config write
// (resetConfig, and the verification path) replaces the gates while the
// requests they admitted are still in flight. Each write therefore adds
// another maxInFlight to the credential's concurrency on the node: two
// writes of an unrelated setting during a slow spell give 12 concurrent
// requests with one credential. The same happens on every standby, whose
// invalidate also resets. Needs config-write permission, so low severity.

func TestReview2_configWritesDoNotMultiplyTheInFlightCap(t *testing.T) {
	var inFlight, peak atomic.Int64
	release := make(chan struct{})
	e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, reply("Bearer", 1800, testJWT(map[string]any{"sub": "u", "exp": time.Now().Unix() + 1800})))
	}, nil)
	var releaseOnce sync.Once
	stop := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(stop)

	var wg sync.WaitGroup
	readers := func(n int) {
		for range n {
			wg.Go(func() {
				_, _ = e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "creds/r", Storage: e.storage})
			})
		}
	}
	waitInFlight := func(want int64) int64 {
		deadline := time.Now().Add(3 * time.Second)
		for inFlight.Load() < want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		return inFlight.Load()
	}

	readers(2 * maxInFlight)
	t.Logf("in flight with %d readers: %d", 2*maxInFlight, waitInFlight(maxInFlight))
	for i := range 2 {
		// Writes of a setting that has nothing to do with the credential.
		e.mustDo(logical.UpdateOperation, "config", map[string]any{"max_retries": i + 1})
		readers(maxInFlight)
		t.Logf("in flight after config write %d and %d more readers: %d", i+1, maxInFlight, waitInFlight(int64(maxInFlight*(i+2))))
	}
	stop()
	wg.Wait()
	if p := peak.Load(); p > maxInFlight {
		t.Errorf("peak of %d token requests in flight with one credential on one node, cap %d", p, maxInFlight)
	}
}

// ---------------------------------------------------------------------------
// Finding C: a token_reuse role serves its cached token through an outage
// ("an outage then costs nothing until the token runs out"), but any write
// of the role, or of the config, drops the cached token even when it
// changes nothing the token depends on (the role's ttl; the config's
// max_retries). The cache is keyed by a fingerprint of url, CA, client id
// and secret, so a token of replaced credentials is never served anyway;
// the drop only costs availability. During an outage, when an operator is
// most likely to tune exactly these settings, the role's readers go from
// "cached token with a warning" to 502 at once, on every node (standbys
// drop on invalidate).

func TestReview2_unrelatedWritesKeepTheCachedTokenThroughAnOutage(t *testing.T) {
	for _, write := range []struct {
		name string
		path string
		data map[string]any
	}{
		{"role ttl", "roles/shared", map[string]any{"ttl": 300}},
		{"config max_retries", "config", map[string]any{"max_retries": 1, "verify_credentials": false}},
	} {
		t.Run(write.name, func(t *testing.T) {
			e := newEnv(t)
			e.piwik.SetLifetime(10 * time.Minute)
			e.writeConfig(map[string]any{"max_retries": 0})
			e.mustDo(logical.CreateOperation, "roles/shared", map[string]any{"token_reuse": true, "reuse_min_remaining": "600"})
			first := e.mustDo(logical.ReadOperation, "creds/shared", nil)
			e.piwik.SetFault(standin.Fault{Kind: standin.FaultUnavailable})
			if resp := e.mustDo(logical.ReadOperation, "creds/shared", nil); resp.Data["access_token"] != first.Data["access_token"] {
				t.Fatalf("no stale serve before the write")
			}

			e.mustDo(logical.UpdateOperation, write.path, write.data)
			resp, err := e.do(logical.ReadOperation, "creds/shared", nil)
			status, msg := statusOf(resp, err)
			t.Logf("read after the %s write, Piwik PRO still down: %d %s", write.name, status, msg)
			if status != http.StatusOK || resp.Data["access_token"] != first.Data["access_token"] {
				t.Errorf("the %s write dropped a cached token of unchanged credentials: readers now get %d instead of the still-valid token", write.name, status)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Attacks that held.

// Encodings of the secret beyond those the first review tried. Realistic
// echoes (JSON \u escapes in mixed case, HTML entities decimal and hex,
// double percent-encoding, base64 of a JSON body, Go-quoted) are withheld.
// Some unrealistic ones pass (each character separated by a zero-width or
// other invisible character, fullwidth forms, reversal, base64 of base64,
// a Go []byte printed with %v, triple percent-encoding): they need an
// upstream that deliberately transforms the secret, and that upstream has
// the secret anyway. They are logged here, not asserted.
func TestReview2_encodingsOfTheSecret(t *testing.T) {
	secret := "Zk3pQ9vT2mXw8Rb1Lc7Hn4Jd6Fs0Ga5Ye2Uo9Ii3Pq8Wr1Et7Yy4Mm6Nn0Bb2Vv"
	r := newRedactor(secret)
	var mixedU, decEnt, hexEnt, pct, goBytes strings.Builder
	for i, c := range []byte(secret) {
		if i%2 == 0 {
			fmt.Fprintf(&mixedU, `\u%04X`, c)
		} else {
			fmt.Fprintf(&mixedU, `\u%04x`, c)
		}
		fmt.Fprintf(&decEnt, "&#%d;", c)
		fmt.Fprintf(&hexEnt, "&#x%x;", c)
		fmt.Fprintf(&pct, "%%%02X", c)
		fmt.Fprintf(&goBytes, "%d ", c)
	}
	withheld := map[string]string{
		"mixed-case \\u escapes":  mixedU.String(),
		"decimal HTML entities":   decEnt.String(),
		"hex HTML entities":       hexEnt.String(),
		"double percent-encoding": strings.ReplaceAll(pct.String(), "%", "%25"),
		"base64 of a JSON body":   base64.StdEncoding.EncodeToString([]byte(`{"client_id":"x","client_secret":"` + secret + `"}`)),
		"Go-quoted, upper-cased":  fmt.Sprintf("%q", strings.ToUpper(secret)),
		"cut to 9 characters":     `client_secret "` + secret[20:29] + `..." is invalid`,
	}
	for name, echo := range withheld {
		if out := r.text("bad request: " + echo); out != echoedNotice {
			t.Errorf("%s: not withheld: %q", name, out)
		}
	}
	interleaved := func(sep string) string {
		var b strings.Builder
		for _, c := range secret {
			b.WriteRune(c)
			b.WriteString(sep)
		}
		return b.String()
	}
	for name, echo := range map[string]string{
		"zero-width joiners": interleaved("\u200d"),
		"Go []byte with %v":  "[" + goBytes.String() + "]",
		"base64 of base64":   base64.StdEncoding.EncodeToString([]byte(base64.StdEncoding.EncodeToString([]byte(secret)))),
	} {
		t.Logf("not withheld (unrealistic echo, not asserted): %s -> %.60q", name, r.text(echo))
	}
}

// False positives: for random 32-64 character secrets, ordinary upstream
// errors (Piwik PRO's own bodies, proxy pages, ids, hex trace ids, base64
// request ids) are never withheld.
func TestReview2_noFalsePositivesForRandomSecrets(t *testing.T) {
	bodies := []string{
		`{"error":"invalid_client","error_description":"Client authentication failed","hint":"Check the client_id parameter","message":"Client authentication failed"}`,
		`{"error":"unsupported_grant_type","error_description":"The authorization grant type is not supported by the authorization server.","hint":"Check that all required parameters have been provided"}`,
		`{"code":402,"message":"There is no active license for \"default\" organization"}`,
		`{"errors":[{"status":"500","detail":"Internal Server Error","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7"}]}`,
		`upstream connect error or disconnect/reset before headers. reset reason: connection termination x-request-id: 5d3f6c1e-8a2b-4c7d-9e0f-1a2b3c4d5e6f`,
		`{"message":"Service Unavailable","requestId":"Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2FsZG8="}`,
	}
	const alphabets = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	rng := rand.New(rand.NewPCG(1, 2))
	withheld := 0
	for i := range 2000 {
		alphabet := alphabets
		if i%2 == 0 {
			alphabet = "0123456789abcdef" // hex secrets meet hex ids
		}
		b := make([]byte, 32+rng.IntN(33))
		for j := range b {
			b[j] = alphabet[rng.IntN(len(alphabet))]
		}
		r := newRedactor(string(b))
		for _, body := range bodies {
			if r.describeBody("application/json", []byte(body)) == `body "`+echoedNotice+`"` {
				withheld++
			}
		}
	}
	if withheld > 0 {
		t.Errorf("%d ordinary upstream errors withheld for random secrets", withheld)
	}
}

// The Prometheus text keeps a hostile mount path inside its label value:
// the encoder escapes quotes and newlines, so no sample can be injected.
func TestReview2_mountPathCannotInjectPrometheusSamples(t *testing.T) {
	m := newMetrics(new(atomic.Int64))
	mount := "a\"b\\\nc} 1\nevil_metric{x=\"y\"} 42\n# TYPE evil_metric counter"
	text, err := m.prometheus(mount)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("output does not parse: %v", err)
	}
	if _, ok := families["evil_metric"]; ok {
		t.Errorf("a mount path injected a metric")
	}
	if got := families["piwik_tokens_minted_total"].Metric[0].Label[0].GetValue(); got != mount {
		t.Errorf("mount label %q, want %q", got, mount)
	}
}
