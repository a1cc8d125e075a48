package piwik

// An independent adversarial review of the trust fixes. Two kinds of test:
//
//   - those under a "Finding" comment each pinned a weakness the review
//     found, failing on the code as reviewed; the comment describes what
//     was wrong, the test the behaviour now required;
//   - the others are attacks the review tried that the plugin withstood,
//     kept so that it stays that way.

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

// hostileEnv is an env whose config points at handler instead of the
// stand-in, with the test's config secret, no verification, no retries, and
// a role "r" that mints with the config's credentials.
func hostileEnv(t *testing.T, handler http.HandlerFunc, roleData map[string]any) *env {
	t.Helper()
	e := newEnv(t)
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	e.mustDo(logical.UpdateOperation, "config", map[string]any{
		"url": srv.URL, "client_id": testClientID, "client_secret": testClientSecret,
		"verify_credentials": false, "max_retries": 0,
	})
	e.mustDo(logical.CreateOperation, "roles/r", roleData)
	return e
}

// requestSecret returns the client_secret of a token request.
func requestSecret(r *http.Request) (secret string, body []byte) {
	body, _ = io.ReadAll(r.Body)
	var req struct {
		ClientSecret string `json:"client_secret"`
	}
	_ = json.Unmarshal(body, &req)
	return req.ClientSecret, body
}

// jwtWith builds a JWT-shaped token from a raw header and payload (JSON),
// encoded with enc.
func jwtWith(enc *base64.Encoding, header, payload string) string {
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload)) + "." + strings.Repeat("A", 342)
}

// ---------------------------------------------------------------------------
// Finding 1 (fixed): the redactor matches only the whole secret. An upstream that
// quotes part of it (truncated, or split across error and
// error_description) gets that part into the error a reader sees and into
// the warn log.

func TestReview_partialEchoOfTheSecretIsWithheld(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply func(secret string) string
	}{
		{"truncated", func(s string) string {
			return `{"error":"invalid_request","error_description":"client_secret '` + s[:len(s)-2] + `...' is malformed"}`
		}},
		{"split across fields", func(s string) string {
			return `{"error":"` + s[:len(s)/2] + `","error_description":"` + s[len(s)/2:] + `"}`
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
				secret, _ := requestSecret(r)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = io.WriteString(w, tc.reply(secret))
			}, nil)
			_, msg := statusOf(e.do(logical.ReadOperation, "creds/r", nil))
			t.Logf("creds/r error: %s", msg)
			head, tail := testClientSecret[:len(testClientSecret)/2], testClientSecret[len(testClientSecret)/2:]
			if strings.Contains(msg, testClientSecret[:len(testClientSecret)-2]) || (strings.Contains(msg, head) && strings.Contains(msg, tail)) {
				t.Errorf("the error a creds reader gets holds most or all of the client secret %q", testClientSecret)
			}
			if logs := e.logs.String(); strings.Contains(logs, testClientSecret[:len(testClientSecret)-2]) || strings.Contains(logs, head) && strings.Contains(logs, tail) {
				t.Errorf("the warn log holds most or all of the client secret")
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Finding 2 (fixed): "what still decodes to the secret after that is withheld
// whole" covers backslash, percent and HTML decoding only. A gateway that
// echoes the request body base64-encoded (a common debug format) leaks the
// secret in a decodable form within the 120-character excerpt.

func TestReview_base64EchoOfTheRequestIsWithheld(t *testing.T) {
	e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
		_, body := requestSecret(r)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, base64.StdEncoding.EncodeToString(body))
	}, nil)
	_, msg := statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("creds/r error: %s", msg)
	// Decode the longest base64 run of the message, cut to whole quanta.
	start := strings.Index(msg, `body "`) + len(`body "`)
	run := msg[start:]
	if i := strings.IndexAny(run, `"…`); i >= 0 {
		run = run[:i]
	}
	decoded, _ := base64.StdEncoding.DecodeString(run[:len(run)/4*4])
	t.Logf("base64 in the error decodes to: %s", decoded)
	if bytes.Contains(decoded, []byte(testClientSecret)) {
		t.Errorf("the error a creds reader gets holds the client secret, base64-encoded")
	}
}

// Same gap, another encoding: the secret upper-cased (here in a redirect's
// host, which is case-insensitive, so a server may well fold it) is quoted
// as it is. For a secret of lower-case letters, digits and dashes, which is
// what the test secret is, that is the secret.
func TestReview_caseFoldedEchoOfTheSecretIsWithheld(t *testing.T) {
	e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
		secret, _ := requestSecret(r)
		w.Header().Set("Location", "https://"+strings.ToUpper(secret)+".collector.example/")
		w.WriteHeader(http.StatusFound)
	}, nil)
	_, msg := statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("creds/r error: %s", msg)
	if strings.Contains(strings.ToLower(msg), testClientSecret) {
		t.Errorf("the error a creds reader gets holds the client secret, upper-cased")
	}
}

// ---------------------------------------------------------------------------
// Finding 3 (fixed): one 429 with a huge Retry-After (capped at 24 h) closes the
// credential on this node for a day. Nothing an operator can do through the
// API lifts it: a config rewrite with the same url and client_id is itself
// refused (its verification goes through the same gate), and deleting and
// recreating the config keeps the gate, which lives in b.gates, outside
// what resetConfig drops. Only a plugin reload (or changing the url's
// spelling, e.g. adding :443) gets out.

func TestReview_hugeRetryAfterIsCappedAndAConfigWriteLiftsIt(t *testing.T) {
	e := newEnvWithRole(t, "r", nil)
	e.piwik.FailNext(1, standin.Fault{Kind: standin.FaultRateLimit, RetryAfter: 86400})
	status, msg := statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("read 1 (the 429): %d %s", status, msg)

	// Piwik PRO is fine again from here on.
	requests := e.piwik.TokenRequests()
	status, msg = statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("read 2 (upstream healthy): %d %s", status, msg)
	g := e.b.gates.get(e.server.URL + "\x00" + testClientID)
	g.mu.Lock()
	left := time.Until(g.until)
	g.mu.Unlock()
	t.Logf("gate window left: %s", left.Round(time.Minute))

	// The operator rewrites the config, then deletes and recreates it.
	resp, err := e.do(logical.UpdateOperation, "config", map[string]any{"url": e.server.URL, "client_id": testClientID, "client_secret": testClientSecret})
	rewriteStatus, rewriteMsg := statusOf(resp, err)
	t.Logf("config rewrite: %d %s", rewriteStatus, rewriteMsg)
	e.mustDo(logical.DeleteOperation, "config", nil)
	resp, err = e.do(logical.UpdateOperation, "config", map[string]any{"url": e.server.URL, "client_id": testClientID, "client_secret": testClientSecret})
	recreateStatus, recreateMsg := statusOf(resp, err)
	t.Logf("config recreate after delete: %d %s", recreateStatus, recreateMsg)
	e.writeConfig(map[string]any{"verify_credentials": false})
	finalStatus, finalMsg := statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("read after recreating the config unverified: %d %s", finalStatus, finalMsg)
	t.Logf("token requests sent after the 429: %d", e.piwik.TokenRequests()-requests)

	if left > time.Hour {
		t.Errorf("one reply made this node refuse the credential for %s; a window should be capped at minutes", left.Round(time.Minute))
	}
	if rewriteStatus != http.StatusNoContent && rewriteStatus != http.StatusOK || recreateStatus != http.StatusNoContent && recreateStatus != http.StatusOK || finalStatus != http.StatusOK {
		t.Errorf("an operator cannot lift the window through the API: rewrite %d, recreate %d, read %d", rewriteStatus, recreateStatus, finalStatus)
	}
}

// ---------------------------------------------------------------------------
// Finding 4 (fixed): the gate forgets a Retry-After window as soon as any request
// that was already in flight when the 429 came back ends with a definite
// answer (a 200, or a 401 of another role with the same client_id):
// learn() resets until/probing on success and on every non-transient
// error. Piwik PRO asked for 30 s of quiet; the next burst goes out at once.

func TestReview_aConcurrentAnswerKeepsTheRateLimitWindow(t *testing.T) {
	for _, other := range []struct {
		name string
		err  error
	}{{"success", nil}, {"rejection", errRejected}} {
		t.Run(other.name, func(t *testing.T) {
			g, clock := newTestGate()
			for range 2 {
				if err := g.acquire(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			g.release(errRateLimited) // Retry-After: 30s
			g.release(other.err)      // the request sent alongside it
			clock.advance(time.Second)
			if err := g.acquire(context.Background()); err == nil {
				t.Errorf("1s after a 429 with Retry-After 30s, a new request may go out (the concurrent %s erased the window)", other.name)
				g.release(nil)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Finding 5 (fixed): the lease can outlive the token. exp is read only when go-jose
// parses the whole token: a header alg outside the RS/PS/ES/EdDSA list, a
// padded segment (checkJWTShape lets trailing '=' through), or any claim of
// an unexpected type (aud or sub a number) makes readClaims return nothing,
// and the lease then follows expires_in alone. SECURITY.md promises "the
// earlier of the JWT's exp and ...".

func TestReview_leaseFollowsExpWhateverTheJWTHeader(t *testing.T) {
	exp := testNow.Unix() + 60
	rs := `{"typ":"JWT","alg":"RS256"}`
	for _, tc := range []struct{ name, token string }{
		{"alg HS256", jwtWith(base64.RawURLEncoding, `{"typ":"JWT","alg":"HS256"}`, fmt.Sprintf(`{"sub":"u","exp":%d}`, exp))},
		{"alg none", jwtWith(base64.RawURLEncoding, `{"typ":"JWT","alg":"none"}`, fmt.Sprintf(`{"sub":"u","exp":%d}`, exp))},
		{"padded segments", jwtWith(base64.URLEncoding, rs, fmt.Sprintf(`{"sub":"u1","exp":%d}`, exp))},
		{"aud a number", jwtWith(base64.RawURLEncoding, rs, fmt.Sprintf(`{"sub":"u","aud":42,"exp":%d}`, exp))},
		{"sub a number", jwtWith(base64.RawURLEncoding, rs, fmt.Sprintf(`{"sub":42,"exp":%d}`, exp))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkJWTShape(tc.token); err != nil {
				t.Fatalf("token not JWT-shaped: %v", err)
			}
			tok, err := parseTokenReply("application/json", []byte(reply("Bearer", 1800, tc.token)), testNow, testNow, redactor{})
			if err != nil {
				t.Fatalf("parseTokenReply: %v", err)
			}
			ttl, _ := leaseTTL(tok, testNow, 0, 0)
			if tok.ExpiresAt.After(time.Unix(exp, 0)) {
				t.Errorf("the token's exp is in 60s, the lease is %s", ttl)
			}
		})
	}
}

// The same through the engine: a creds read gets a 30-minute lease for a
// token that dies in a minute.
func TestReview_leaseFollowsExpThroughTheEngine(t *testing.T) {
	var exp atomic.Int64
	e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
		tok := jwtWith(base64.RawURLEncoding, `{"typ":"JWT","alg":"HS256"}`, fmt.Sprintf(`{"sub":"u","exp":%d}`, exp.Load()))
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, reply("Bearer", 1800, tok))
	}, nil)
	exp.Store(time.Now().Unix() + 60)
	resp := e.mustDo(logical.ReadOperation, "creds/r", nil)
	t.Logf("lease ttl %s, expires_at %v, token exp in 60s", resp.Secret.TTL, resp.Data["expires_at"])
	if resp.Secret.TTL > time.Minute {
		t.Errorf("lease %s for a token whose exp is in 60s", resp.Secret.TTL)
	}
}

// ---------------------------------------------------------------------------
// Finding 6 (fixed): gates are pruned only when idle with failures == 0. A gate
// that saw one transient failure (below failuresBeforeBackoff, so no window
// and no probing) is kept for ever, however old. Every distinct url and
// client_id that failed once during an outage (role writes verifying a
// client_id, config writes trying urls) stays in memory until the plugin
// restarts.

func TestReview_idleGatesArePruned(t *testing.T) {
	clock := &fakeClock{now: testNow}
	gs := newGates(clock.Now)
	for i := range 3 * maxIdleGates {
		g := gs.get(fmt.Sprintf("https://acme.example\x00client-%d", i))
		if err := g.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		g.release(errServer)
	}
	clock.advance(24 * time.Hour) // a day later, no window open anywhere
	// Past maxIdleGates every get (every mint) scans the whole map under
	// the one gates mutex; timed here for the report, not asserted.
	start := time.Now()
	for i := range 100 {
		gs.get(fmt.Sprintf("https://acme.example\x00fresh-%d", i))
	}
	t.Logf("gates.get with %d gates kept: %s each", 3*maxIdleGates, time.Since(start)/100)
	gs.mu.Lock()
	n := len(gs.m)
	gs.mu.Unlock()
	if n > maxIdleGates {
		t.Errorf("%d gates kept a day after their single failure; the cap is %d", n, maxIdleGates)
	}
}

// ---------------------------------------------------------------------------
// Finding 7 (fixed): url normalisation changes the path an operator wrote.
// An encoded slash is decoded (u.RawPath is dropped), so the stored and
// dialled url is not the one written.

func TestReview_encodedSlashInTheURLPathIsRefused(t *testing.T) {
	got, err := normalizeURL("https://acme.example/tenant%2Fa")
	if err == nil && got != "https://acme.example/tenant%2Fa" {
		t.Errorf("normalizeURL(.../tenant%%2Fa) = %q: the token request goes to another path than written", got)
	}
	if err != nil && !strings.Contains(err.Error(), "%2F") {
		t.Errorf("refused with %q, want it to name the escape", err)
	}
}

// ===========================================================================
// What held.

// Redirects of every shape: nothing is followed, nothing of the secret is
// quoted, whatever the Location looks like.
func TestReview_redirectsOfEveryShape(t *testing.T) {
	s := testClientSecret
	locations := []string{
		"/elsewhere/auth/token?s=" + s,                     // relative
		"//collector.invalid/" + s,                         // protocol-relative
		"https://" + s + ":" + s + "@collector.invalid/",   // userinfo
		"https://" + s + ".collector.invalid/",             // secret in the host
		"https://collector.invalid:" + s + "/",             // secret as port
		"https://collector.invalid/%74" + s[1:],            // percent-encoded
		"javascript:alert('" + s + "')",                    // opaque
		"https://collector.invalid/\r\nX-Leak: " + s,       // header injection attempt
		strings.Repeat("https://collector.invalid/", 2000), // long
	}
	for _, status := range []int{300, 301, 302, 303, 304, 305, 307, 308} {
		for i, loc := range locations {
			var hits atomic.Int64
			e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				w.Header()["Location"] = []string{loc}
				w.WriteHeader(status)
			}, nil)
			resp, err := e.do(logical.ReadOperation, "creds/r", nil)
			code, msg := statusOf(resp, err)
			if code != http.StatusBadGateway || hits.Load() != 1 {
				t.Errorf("%d location %d: status %d, %d requests; want 502 after 1", status, i, code, hits.Load())
			}
			if strings.Contains(strings.ToLower(msg), strings.ToLower(s)) {
				t.Errorf("%d location %d: error quotes the secret: %s", status, i, msg)
			}
		}
	}
}

// The secret in the headers and fields a 200 reply can carry.
func TestReview_secretInContentTypeRetryAfterAndExpiresIn(t *testing.T) {
	good := testJWT(map[string]any{"sub": "u"})
	for _, tc := range []struct {
		name   string
		status int
		header map[string]string
		body   func(secret string) string
	}{
		{"content type", 200, nil, nil},
		{"retry-after", 429, map[string]string{"Retry-After": "SECRET"}, nil},
		{"expires_in string", 200, nil, func(s string) string {
			return `{"token_type":"Bearer","expires_in":"` + s + `","access_token":"` + good + `"}`
		}},
		{"expires_in huge", 200, nil, func(s string) string {
			return `{"token_type":"Bearer","expires_in":1e999,"access_token":"` + good + `"}`
		}},
		{"access_token", 200, nil, func(s string) string { return `{"token_type":"Bearer","expires_in":60,"access_token":"a b ` + s + `"}` }},
		{"402 message", 402, nil, func(s string) string { return `{"message":"` + s + `"}` }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
				secret, _ := requestSecret(r)
				ct := "application/json"
				if tc.name == "content type" {
					ct = "text/plain; note=" + secret
				}
				w.Header().Set("Content-Type", ct)
				for k, v := range tc.header {
					w.Header().Set(k, strings.ReplaceAll(v, "SECRET", secret))
				}
				w.WriteHeader(tc.status)
				if tc.body != nil {
					_, _ = io.WriteString(w, tc.body(secret))
				} else {
					_, _ = io.WriteString(w, reply("Bearer", 60, good))
				}
			}, nil)
			resp, err := e.do(logical.ReadOperation, "creds/r", nil)
			if code, _ := statusOf(resp, err); code == http.StatusOK {
				t.Errorf("accepted")
			}
			e.assertNoSecret(tc.name, responseText(t, resp, err))
		})
	}
}

// Transparent gzip is on (Go's transport asks for it), and the 64 KiB cap
// applies to the decompressed body: a bomb is refused after 64 KiB.
func TestReview_gzipBombIsCappedAfterDecompression(t *testing.T) {
	var zipped bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&zipped, gzip.BestCompression)
	_, _ = zw.Write([]byte(`{"token_type":"Bearer","expires_in":60,"access_token":"`))
	_, _ = zw.Write(bytes.Repeat([]byte("A"), 32<<20)) // 32 MiB inflated
	_ = zw.Close()
	t.Logf("bomb: %d KiB compressed, 32 MiB inflated", zipped.Len()>>10)
	e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			t.Errorf("the client did not ask for gzip; the test needs adjusting")
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(zipped.Bytes())
	}, nil)
	start := time.Now()
	code, msg := statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	if code != http.StatusBadGateway || !strings.Contains(msg, "larger than 64 KiB") {
		t.Errorf("gzip bomb: %d %q, want 502 naming the cap", code, msg)
	}
	t.Logf("refused in %s", time.Since(start))
}

// HTTP/2 over TLS with ca_cert: the 64 KiB header cap holds on h2 too.
func TestReview_hugeHeadersOverHTTP2(t *testing.T) {
	e := newEnv(t)
	var proto atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Proto)
		w.Header().Set("X-Padding", strings.Repeat("p", 4<<20))
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, reply("Bearer", 60, testJWT(map[string]any{"sub": "u"})))
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	e.mustDo(logical.UpdateOperation, "config", map[string]any{"url": srv.URL, "client_id": testClientID, "client_secret": testClientSecret,
		"ca_cert": caPEM, "verify_credentials": false, "max_retries": 0})
	e.mustDo(logical.CreateOperation, "roles/r", nil)
	code, msg := statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("protocol %v: %d %s", proto.Load(), code, msg)
	if p, _ := proto.Load().(string); p != "HTTP/2.0" {
		t.Errorf("the request went over %q, want HTTP/2.0", p)
	}
	if code == http.StatusOK {
		t.Errorf("a reply with 4 MiB of headers was accepted over h2")
	}
}

// A 3xx answered over TLS must not downgrade: the TLS config keeps TLS 1.2+.
func TestReview_tlsMinimumVersion(t *testing.T) {
	c, err := newClient(clientOptions{BaseURL: "https://acme.example", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if v := c.http.Transport.(*http.Transport).TLSClientConfig.MinVersion; v < tls.VersionTLS12 {
		t.Errorf("min TLS version %x", v)
	}
}

// URL tricks an operator (or a confused one) might write.
func TestReview_urlTricks(t *testing.T) {
	refused := []string{
		"https://acme.example@evil.example/",
		`https://acme.example\@evil.example/`,
		"https://evil.example#@acme.example/",
		"https://evil.example?@acme.example/",
		"https://acme.example%2f@evil.example/",
		"http://evil.example/",
		"http://127.0.0.1.nip.io/",
		"http://localhost./",
		"https://[fe80::1%25eth0]/",
		"https:acme.example",
		"https:///acme.example",
		"ftp://acme.example/",
		"https://acme.example/\n",
		"https://acme_example.com/",
	}
	for _, raw := range refused {
		if got, err := normalizeURL(raw); err == nil {
			t.Errorf("normalizeURL(%q) = %q, want refused", raw, got)
		}
	}
	// A homograph (Cyrillic а) is stored and shown as punycode.
	if got, err := normalizeURL("https://аcme.example/"); err != nil || !strings.HasPrefix(got, "https://xn--") {
		t.Errorf("homograph host stored as %q, %v; want punycode", got, err)
	}
	for raw, want := range map[string]string{
		"HTTPS://ACME.Example/":          "https://acme.example",
		"http://[::1]:8200/":             "http://[::1]:8200",
		"http://LOCALHOST:8200":          "http://localhost:8200",
		"https://acme.example/a/../b//":  "https://acme.example/a/../b",
		"https://[::ffff:10.0.0.1]:443/": "https://10.0.0.1:443",
	} {
		if got, err := normalizeURL(raw); err != nil || got != want {
			t.Errorf("normalizeURL(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
}

// Config delete and recreate at another url: roles with their own secret
// stay bound to the old url and send nothing; back at the old url they
// work again (the secret was given for it).
func TestReview_configRecreatedElsewhereKeepsRoleSecretsHome(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	e.mustDo(logical.CreateOperation, "roles/own", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret, "token_reuse": true})
	e.mustDo(logical.ReadOperation, "creds/own", nil)

	var leaked atomic.Int64
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if secret, _ := requestSecret(r); secret == roleClientSecret {
			leaked.Add(1)
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(evil.Close)
	e.mustDo(logical.DeleteOperation, "config", nil)
	e.mustDo(logical.UpdateOperation, "config", map[string]any{"url": evil.URL, "client_id": "x", "client_secret": "y", "verify_credentials": false})
	if code, _ := statusOf(e.do(logical.ReadOperation, "creds/own", nil)); code != http.StatusConflict {
		t.Errorf("creds/own against the new url: %d, want 409", code)
	}
	if _, report := e.check(); report["roles"].(map[string]any)["own"].(map[string]any)["status"] != float64(http.StatusConflict) {
		t.Errorf("check against the new url: role own = %v, want 409", report["roles"])
	}
	// Re-enable verification: a PATCH of anything else must not rebind.
	e.mustDo(logical.PatchOperation, "roles/own", map[string]any{"ttl": 60, "client_id": roleClientID})
	if code, _ := statusOf(e.do(logical.ReadOperation, "creds/own", nil)); code != http.StatusConflict {
		t.Errorf("patching other role fields rebound the secret: %d", code)
	}
	if leaked.Load() != 0 {
		t.Errorf("the role's secret was sent to the new url %d times", leaked.Load())
	}
	e.mustDo(logical.UpdateOperation, "config", map[string]any{"url": e.server.URL, "client_id": testClientID, "client_secret": testClientSecret})
	e.mustDo(logical.ReadOperation, "creds/own", nil)
}

// Writers, readers, checks and invalidations at once: no deadlock, no race
// (run with -race), and every token a reader gets belongs to a credential
// that was configured at some point.
func TestReview_everythingAtOnce(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	e.mustDo(logical.CreateOperation, "roles/reuse", map[string]any{"token_reuse": true})
	e.mustDo(logical.CreateOperation, "roles/mint", nil)
	e.mustDo(logical.CreateOperation, "roles/own", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret, "token_reuse": true})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var reads atomic.Int64
	loop := func(f func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				f(i)
			}
		}()
	}
	creds := [][2]string{{testClientID, testClientSecret}, {roleClientID, roleClientSecret}}
	loop(func(i int) {
		c := creds[i%2]
		_, _ = e.do(logical.UpdateOperation, "config", map[string]any{"client_id": c[0], "client_secret": c[1]})
	})
	loop(func(i int) {
		_, _ = e.do(logical.PatchOperation, "roles/own", map[string]any{"ttl": i % 100, "token_reuse": i%2 == 0})
	})
	loop(func(i int) {
		if i%2 == 0 {
			_, _ = e.do(logical.DeleteOperation, "roles/mint", nil)
		} else {
			_, _ = e.do(logical.CreateOperation, "roles/mint", map[string]any{"token_reuse": true})
		}
	})
	loop(func(int) { e.b.invalidate(context.Background(), configStoragePath) })
	loop(func(int) { e.b.invalidate(context.Background(), roleStoragePrefix+"reuse") })
	loop(func(int) { _, _ = e.do(logical.ReadOperation, "check", nil) })
	for _, role := range []string{"reuse", "mint", "own", "reuse", "own"} {
		loop(func(int) {
			resp, err := e.do(logical.ReadOperation, "creds/"+role, nil)
			if err == nil && resp != nil && !resp.IsError() {
				reads.Add(1)
				if tok, _ := resp.Data["access_token"].(string); !e.piwik.TokenValid(tok) {
					t.Errorf("creds/%s handed out a token the stand-in did not issue", role)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("deadlock: the workers did not stop within 30s of the deadline")
	}
	t.Logf("%d successful creds reads", reads.Load())
	if reads.Load() == 0 {
		t.Errorf("no read succeeded")
	}
}

// kindLabel finds the kind label of a Prometheus sample line.
var kindLabel = regexp.MustCompile(`kind="[^"]*"`)

// Prometheus labels are the mount and a bounded set of kinds: no role
// names, client ids or upstream text.
func TestReview_prometheusLabelsCarryNothingUpstream(t *testing.T) {
	e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
		secret, _ := requestSecret(r)
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, `{"error":"`+secret+`"}`)
	}, nil)
	_, _ = e.do(logical.ReadOperation, "creds/r", nil)
	resp, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "metrics",
		Data: map[string]any{"format": "prometheus"}, Storage: e.storage, MountPoint: "piwik/"})
	if err != nil {
		t.Fatal(err)
	}
	text := string(resp.Data[logical.HTTPRawBody].([]byte))
	e.assertNoSecret("prometheus metrics", text)
	known := map[string]bool{}
	for _, kind := range allKinds {
		known[`kind="`+string(kind)+`"`] = true
	}
	for _, line := range strings.Split(text, "\n") {
		if label := kindLabel.FindString(line); label != "" && !known[label] {
			t.Errorf("unexpected kind label: %s", line)
		}
		if strings.Contains(line, testClientID) || strings.Contains(line, `"r"`) {
			t.Errorf("label names a client id or role: %s", line)
		}
	}
}

// ---------------------------------------------------------------------------
// Finding 8 (fixed): a reader whose own deadline ends while waiting for a
// token_reuse role's shared mint gets a 500 "context deadline exceeded",
// where a mint-per-read role in the same situation gets the 504 of the
// "one failure-to-status mapping": tokenCache.fetch returns the bare
// ctx.Err(), which issueFailure passes through unmapped.

func TestReview_reuseReaderOutOfTimeGetsA504(t *testing.T) {
	release := make(chan struct{})
	e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}, nil)
	t.Cleanup(func() { close(release) })
	e.mustDo(logical.CreateOperation, "roles/reuse", map[string]any{"token_reuse": true})
	for _, role := range []string{"r", "reuse"} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		resp, err := e.b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "creds/" + role, Storage: e.storage})
		cancel()
		code, msg := statusOf(resp, err)
		t.Logf("creds/%s with the reader's deadline passing: %d %s", role, code, msg)
		if code != http.StatusGatewayTimeout {
			t.Errorf("creds/%s: %d, want 504 like any other timeout", role, code)
		}
	}
}

// ---------------------------------------------------------------------------
// Finding 9 (fixed): over HTTP/2 a reply with oversized headers is classed
// as "unreachable" (transportError matches only HTTP/1's "server response
// headers exceeded" text), so it is retried max_retries times and counts
// towards the credential's backoff, where over HTTP/1 it is one attempt of
// kind invalid_reply.

func TestReview_oversizedHeadersOverHTTP2AreAnUnusableReply(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("X-Padding", strings.Repeat("p", 1<<20))
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, reply("Bearer", 60, testJWT(map[string]any{"sub": "u"})))
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	c, err := newClient(clientOptions{BaseURL: srv.URL, Timeout: 10 * time.Second, MaxRetries: 2, CACert: caPEM})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	_, err = c.mint(t.Context(), testCreds, nil)
	upErr, _ := asUpstreamError(err)
	t.Logf("%d requests; error: %v", requests.Load(), err)
	if upErr == nil || upErr.Kind != kindBadReply || requests.Load() != 1 {
		t.Errorf("oversized h2 headers: kind %v after %d requests, want invalid_reply after 1 (as over HTTP/1)", upErr.Kind, requests.Load())
	}
}

// ---------------------------------------------------------------------------
// Finding 10 (fixed): redactor.text replaced only C0 controls and DEL. C1
// controls (U+0080-U+009F, among them U+009B, the 8-bit CSI) and bidi
// overrides (U+202E) from an upstream's error or error_description reach
// the error a reader sees unquoted, and the vault CLI prints that error to
// the terminal as it is. (hclog quotes them in the server log; the HTML
// and body excerpts are %q-quoted; the oauth error fields are not.) What a
// given terminal makes of U+009B was not verified.

func TestReview_c1ControlsAndBidiOverridesAreReplaced(t *testing.T) {
	e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"invalid_request","error_description":"see \u009b2J\u009b31m and \u202edetacilpmoc\u202c"}`)
	}, nil)
	_, msg := statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("creds/r error: %q", msg)
	if strings.ContainsAny(msg, "\u009b\u202e") {
		t.Errorf("the reader's error carries raw C1 controls or bidi overrides from the upstream")
	}
}

// Slow-loris headers: a server that sends its status line and then one
// header byte at a time never holds a mint past request_timeout.
func TestReview_slowLorisHeadersEndWithTheTimeout(t *testing.T) {
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nX-Slow: ")
		_ = buf.Flush()
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := conn.Write([]byte("a")); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) })
	c, err := newClient(clientOptions{BaseURL: srv.URL, Timeout: 2 * time.Second, MaxRetries: 2})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.mint(t.Context(), testCreds, nil)
	took := time.Since(start)
	t.Logf("after %s: %v", took.Round(time.Millisecond), err)
	if upErr, ok := asUpstreamError(err); !ok || upErr.Kind != kindTimeout {
		t.Errorf("want a timeout, got %v", err)
	}
	if took > 4*time.Second {
		t.Errorf("a trickling header held the mint for %s with request_timeout 2s", took)
	}
}
