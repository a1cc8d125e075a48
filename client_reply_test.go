package piwik

import (
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

func TestClient_hugeHeadersAreRefused(t *testing.T) {
	client, piwik := newTestClient(t, 5*time.Second, 0)
	piwik.SetFault(standin.Fault{Kind: standin.FaultHugeHeader})
	_, err := client.mint(t.Context(), testCreds, nil)
	if upErr, ok := asUpstreamError(err); !ok || upErr.Kind != kindBadReply || !strings.Contains(err.Error(), "headers are larger than 64 KiB") {
		t.Fatalf("err = %v, want an unusable reply because of its headers", err)
	}
}

// Redirects of every shape: nothing is followed, nothing of the secret is
// quoted, whatever the Location looks like.
func TestClient_redirectsOfEveryShape(t *testing.T) {
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

// HTTP/2 over TLS with ca_cert: the 64 KiB header cap holds on h2 too.
func TestClient_hugeHeadersOverHTTP2(t *testing.T) {
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

// Over HTTP/2, a reply with oversized headers is one attempt of kind
// invalid_reply, as over HTTP/1: not retried, and not taken for an
// unreachable host.
func TestClient_oversizedHeadersOverHTTP2AreAnUnusableReply(t *testing.T) {
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

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		"-3":                            0,
		"soon":                          0,
		"999999":                        24 * time.Hour,
		"Fri, 27 Nov 2026 12:01:00 GMT": time.Minute,
		"Fri, 27 Nov 2026 11:00:00 GMT": 0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}
