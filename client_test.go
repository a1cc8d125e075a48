package piwik

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

// newTestClient returns a Client for a stand-in served by httptest.
func newTestClient(t *testing.T, timeout time.Duration, retries int) (*client, *standin.Server) {
	t.Helper()
	piwik := standin.New(standin.Options{Credentials: []standin.Credential{{ClientID: testClientID, ClientSecret: testClientSecret}}})
	server := httptest.NewServer(piwik)
	t.Cleanup(server.Close)
	client, err := newClient(clientOptions{BaseURL: server.URL, Timeout: timeout, MaxRetries: retries, UserAgent: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.close)
	return client, piwik
}

var testCreds = credentials{ClientID: testClientID, ClientSecret: testClientSecret}

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

func TestRedactorText_redactsAndBounds(t *testing.T) {
	got := newRedactor("s3cr3t").text("bad secret s3cr3t\n" + strings.Repeat("x", 500))
	if strings.Contains(got, "s3cr3t") || strings.Contains(got, "\n") || len([]rune(got)) > excerptLen+1 {
		t.Errorf("text = %q", got)
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
