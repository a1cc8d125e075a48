package piwik

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
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

func TestClient_retriesTransientFailures(t *testing.T) {
	for _, kind := range []standin.FaultKind{standin.FaultServerError, standin.FaultBadGateway, standin.FaultUnavailable, standin.FaultGatewayTimeout, standin.FaultCloseConnection, standin.FaultRateLimit} {
		t.Run(string(kind), func(t *testing.T) {
			client, piwik := newTestClient(t, 10*time.Second, 3)
			piwik.FailNext(2, standin.Fault{Kind: kind, RetryAfter: 1})
			if _, err := client.mint(t.Context(), testCreds, nil); err != nil {
				t.Fatalf("Token after two transient failures: %v", err)
			}
			if got := piwik.TokenRequests(); got != 3 {
				t.Errorf("%d requests, want 3 (two failures, one success)", got)
			}
		})
	}
}

func TestClient_givesUpAfterMaxRetries(t *testing.T) {
	client, piwik := newTestClient(t, 10*time.Second, 2)
	piwik.SetFault(standin.Fault{Kind: standin.FaultUnavailable})
	_, err := client.mint(t.Context(), testCreds, nil)
	var upErr *upstreamError
	if !errors.As(err, &upErr) || upErr.Status != http.StatusServiceUnavailable || upErr.Attempts != 3 {
		t.Fatalf("err = %v, want a 503 after 3 attempts", err)
	}
	if !strings.Contains(err.Error(), "after 3 attempts") {
		t.Errorf("error does not say how often it tried: %q", err)
	}
}

func TestClient_neverRetriesClientErrors(t *testing.T) {
	for _, kind := range []standin.FaultKind{standin.FaultNoLicense, standin.FaultNotImplemented, standin.FaultHTML, standin.FaultExpiredJWT, standin.FaultRedirect, standin.FaultBadJWT} {
		t.Run(string(kind), func(t *testing.T) {
			client, piwik := newTestClient(t, 10*time.Second, 3)
			piwik.SetFault(standin.Fault{Kind: kind})
			if _, err := client.mint(t.Context(), testCreds, nil); err == nil {
				t.Fatal("Token succeeded")
			}
			if got := piwik.TokenRequests(); got != 1 {
				t.Errorf("%d requests, want 1: this failure is not transient", got)
			}
		})
	}
	client, piwik := newTestClient(t, 10*time.Second, 3)
	if _, err := client.mint(t.Context(), credentials{ClientID: testClientID, ClientSecret: "wrong"}, nil); err == nil || piwik.TokenRequests() != 1 {
		t.Errorf("rejected credentials: err=%v requests=%d, want an error after 1 request", err, piwik.TokenRequests())
	}
}

func TestClient_retryAfterBeyondBudgetSaysWhen(t *testing.T) {
	client, piwik := newTestClient(t, 2*time.Second, 3)
	piwik.SetFault(standin.Fault{Kind: standin.FaultRateLimit, RetryAfter: 30})
	_, err := client.mint(t.Context(), testCreds, nil)
	if err == nil || !strings.Contains(err.Error(), "try again after 30s") {
		t.Fatalf("err = %v, want it to say to try again after 30s", err)
	}
	if got := piwik.TokenRequests(); got != 1 {
		t.Errorf("%d requests; a Retry-After beyond the budget must not be waited for", got)
	}
}

func TestClient_retriesStayWithinTimeout(t *testing.T) {
	client, piwik := newTestClient(t, time.Second, 10)
	piwik.SetFault(standin.Fault{Kind: standin.FaultHang})
	start := time.Now()
	_, err := client.mint(t.Context(), testCreds, nil)
	var upErr *upstreamError
	if !errors.As(err, &upErr) || upErr.Kind != kindTimeout {
		t.Fatalf("err = %v, want a timeout", err)
	}
	// Not a timing assertion on speed: a retry loop that ignored the budget
	// would take 10 x 1s here.
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("gave up after %s, want about the 1s budget", elapsed)
	}
}

func TestClient_callerCancellationStopsRetries(t *testing.T) {
	client, piwik := newTestClient(t, 30*time.Second, 10)
	piwik.SetFault(standin.Fault{Kind: standin.FaultHang})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for piwik.TokenRequests() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, err := client.mint(ctx, testCreds, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestClient_sendsJSONClientCredentials(t *testing.T) {
	var gotType, gotUA atomic.Value
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotType.Store(r.Header.Get("Content-Type"))
		gotUA.Store(r.Header.Get("User-Agent"))
		http.Error(w, "no", http.StatusTeapot)
	}))
	t.Cleanup(server.Close)
	client, err := newClient(clientOptions{BaseURL: server.URL, Timeout: time.Second, UserAgent: "vault-plugin-secrets-piwik/v9"})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = client.mint(t.Context(), testCreds, nil)
	if gotType.Load() != "application/json" || gotUA.Load() != "vault-plugin-secrets-piwik/v9" {
		t.Errorf("Content-Type %v, User-Agent %v", gotType.Load(), gotUA.Load())
	}
}

func TestClient_callersDeadlineIsTheCallersAndTeachesTheGateNothing(t *testing.T) {
	client, piwik := newTestClient(t, 30*time.Second, 3)
	piwik.SetFault(standin.Fault{Kind: standin.FaultHang})
	g := newGate(time.Now)
	for range 3 { // more than failuresBeforeBackoff
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		_, err := client.mint(ctx, testCreds, g)
		cancel()
		if _, upstream := asUpstreamError(err); upstream || !isCallerError(err) {
			t.Fatalf("err = %#v, want the caller's own deadline, not an upstream failure", err)
		}
		if !strings.Contains(err.Error(), "the request's deadline") || strings.Contains(err.Error(), "timed out") {
			t.Errorf("message %q, want it to say the request's deadline ended, not that Piwik PRO timed out", err)
		}
		if status := failureStatus(err); status != http.StatusGatewayTimeout {
			t.Errorf("status %d, want 504", status)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failures != 0 || !g.until.IsZero() || g.probing {
		t.Errorf("the gate learned from the caller's deadline: failures=%d until=%v probing=%v", g.failures, g.until, g.probing)
	}
}

func TestClient_ownRequestTimeoutIsAnUpstreamTimeout(t *testing.T) {
	client, piwik := newTestClient(t, 200*time.Millisecond, 0)
	piwik.SetFault(standin.Fault{Kind: standin.FaultHang})
	_, err := client.mint(t.Context(), testCreds, nil)
	if upErr, ok := asUpstreamError(err); !ok || upErr.Kind != kindTimeout {
		t.Fatalf("err = %v, want an upstream timeout: Piwik PRO did not answer within request_timeout", err)
	}
}

func TestClient_redirectsAreNeverFollowed(t *testing.T) {
	for _, status := range []int{301, 302, 303, 307, 308} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			collector, hits := countingServer(t)
			client, piwik := newTestClient(t, 5*time.Second, 3)
			piwik.SetFault(standin.Fault{Kind: standin.FaultRedirect, Status: status,
				Location: collector.URL + "/auth/token?leak=" + testClientSecret})
			_, err := client.mint(t.Context(), testCreds, nil)
			upErr, ok := asUpstreamError(err)
			if !ok || upErr.Kind != kindRedirect || upErr.Status != status {
				t.Fatalf("err = %v, want a redirect error for %d", err, status)
			}
			host := strings.TrimPrefix(collector.URL, "http://")
			if msg := err.Error(); !strings.Contains(msg, fmt.Sprint(status)) || !strings.Contains(msg, host) ||
				strings.Contains(msg, "leak") || strings.Contains(msg, testClientSecret) {
				t.Errorf("error %q: want the status and Location host, not its path or query", msg)
			}
			if hits.Load() != 0 || piwik.TokenRequests() != 1 {
				t.Errorf("second listener got %d requests, the token endpoint %d; want 0 and 1", hits.Load(), piwik.TokenRequests())
			}
		})
	}
}

func TestClient_hungAttemptIsRetriedWithinTheTimeout(t *testing.T) {
	client, piwik := newTestClient(t, 3*time.Second, 2)
	piwik.FailNext(1, standin.Fault{Kind: standin.FaultHang})
	if _, err := client.mint(t.Context(), testCreds, nil); err != nil {
		t.Fatalf("an upstream that hangs once, then answers: %v", err)
	}
	if got := piwik.TokenRequests(); got != 2 {
		t.Errorf("%d requests, want 2 (the hung one and its retry)", got)
	}
}

// Transparent gzip is on (Go's transport asks for it), and the 64 KiB cap
// applies to the decompressed body: a bomb is refused after 64 KiB.
func TestClient_gzipBombIsCappedAfterDecompression(t *testing.T) {
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

// A 3xx answered over TLS must not downgrade: the TLS config keeps TLS 1.2+.
func TestClient_tlsMinimumVersion(t *testing.T) {
	c, err := newClient(clientOptions{BaseURL: "https://acme.example", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if v := c.http.Transport.(*http.Transport).TLSClientConfig.MinVersion; v < tls.VersionTLS12 {
		t.Errorf("min TLS version %x", v)
	}
}

// Slow-loris headers: a server that sends its status line and then one
// header byte at a time never holds a mint past request_timeout.
func TestClient_slowLorisHeadersEndWithTheTimeout(t *testing.T) {
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

func TestClient_hugeHeadersAreRefused(t *testing.T) {
	client, piwik := newTestClient(t, 5*time.Second, 0)
	piwik.SetFault(standin.Fault{Kind: standin.FaultHugeHeader})
	_, err := client.mint(t.Context(), testCreds, nil)
	if upErr, ok := asUpstreamError(err); !ok || upErr.Kind != kindBadReply || !strings.Contains(err.Error(), "headers are larger than 64 KiB") {
		t.Fatalf("err = %v, want an unusable reply because of its headers", err)
	}
}

// paddedHTTP2Server serves a token reply with padding bytes of headers over
// HTTP/2 and TLS, calling seen with each request; it returns its URL and
// the PEM of its certificate.
func paddedHTTP2Server(t *testing.T, padding int, seen func(*http.Request)) (url, caPEM string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen(r)
		w.Header().Set("X-Padding", strings.Repeat("p", padding))
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, reply("Bearer", 60, testJWT(map[string]any{"sub": "u"})))
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
}

// HTTP/2 over TLS with ca_cert: the 64 KiB header cap holds on h2 too.
func TestClient_hugeHeadersOverHTTP2(t *testing.T) {
	e := newEnv(t)
	var proto atomic.Value
	url, caPEM := paddedHTTP2Server(t, 4<<20, func(r *http.Request) { proto.Store(r.Proto) })
	e.mustDo(logical.UpdateOperation, "config", map[string]any{"url": url, "client_id": testClientID, "client_secret": testClientSecret,
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
	url, caPEM := paddedHTTP2Server(t, 1<<20, func(*http.Request) { requests.Add(1) })
	c, err := newClient(clientOptions{BaseURL: url, Timeout: 10 * time.Second, MaxRetries: 2, CACert: caPEM})
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
