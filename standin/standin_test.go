package standin

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testID     = "client-a"
	testSecret = "secret-a"
)

// testClock is a settable clock, safe for concurrent use.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *testClock {
	return &testClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTest starts a stand-in with the test credential (plus more) behind an
// httptest.Server, both closed when the test ends.
func newTest(t *testing.T, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	opts.Credentials = append([]Credential{{ClientID: testID, ClientSecret: testSecret}}, opts.Credentials...)
	s := New(opts)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	t.Cleanup(s.Close) // runs first, so no fault can hold ts.Close up
	return s, ts
}

func jsonCreds(grant, id, secret string) string {
	b, _ := json.Marshal(map[string]string{"grant_type": grant, "client_id": id, "client_secret": secret})
	return string(b)
}

func formCreds(grant, id, secret string) string {
	return url.Values{"grant_type": {grant}, "client_id": {id}, "client_secret": {secret}}.Encode()
}

// post sends a token request; a nil client means the server's own.
func post(t *testing.T, c *http.Client, ts *httptest.Server, path, contentType, body string) (*http.Response, error) {
	t.Helper()
	if c == nil {
		c = ts.Client()
	}
	req, err := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return c.Do(req)
}

// getToken requests a token for the test credential and returns the reply.
func getToken(t *testing.T, ts *httptest.Server) (*http.Response, []byte) {
	t.Helper()
	resp, err := post(t, nil, ts, "/auth/token", "application/json", jsonCreds("client_credentials", testID, testSecret))
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	return resp, readAll(t, resp)
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b
}

func decodeReply(t *testing.T, body []byte) tokenReply {
	t.Helper()
	var tr tokenReply
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatalf("decode token reply %q: %v", body, err)
	}
	return tr
}

// parseJWT splits a token and checks its header and signature size.
func parseJWT(t *testing.T, token string) claims {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	header, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatalf("decode header: %v", err)
	}
	var h map[string]string
	if err := json.Unmarshal(header, &h); err != nil || h["alg"] != "RS256" || h["typ"] != "JWT" {
		t.Fatalf("header = %s, want typ JWT and alg RS256", header)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 256 {
		t.Fatalf("signature: %d bytes, err %v; want 256 bytes", len(sig), err)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("decode payload: %v", err)
	}
	var raw map[string]any
	if err := json.Unmarshal(payload, &raw); err != nil {
		t.Fatalf("decode claims: %v", err)
	}
	for _, k := range []string{"iss", "aud", "iat", "exp", "sub", "org", "eml", "jti"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("claim %q missing from %s", k, payload)
		}
	}
	var cl claims
	if err := json.Unmarshal(payload, &cl); err != nil {
		t.Fatalf("decode claims: %v", err)
	}
	return cl
}

func wantStatus(t *testing.T, resp *http.Response, status int, contentType string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status = %d, want %d", resp.StatusCode, status)
	}
	if got := resp.Header.Get("Content-Type"); contentType != "" && got != contentType {
		t.Errorf("Content-Type = %q, want %q", got, contentType)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// eventually polls cond until it holds or five seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTokenSuccess(t *testing.T) {
	clock := newClock()
	custom := Credential{ClientID: "client-b", ClientSecret: "secret-b", UserID: "u-1", Email: "b@corp.test", Name: "Reporting"}
	s, ts := newTest(t, Options{Credentials: []Credential{custom}, Lifetime: 20 * time.Minute, Org: "acme", Now: clock.Now})
	tests := []struct {
		name        string
		contentType string
		body        string
		wantAud     string
		wantSub     string
		wantEml     string
	}{
		{"json", "application/json", jsonCreds("client_credentials", testID, testSecret),
			"Client-Name-" + testID, userID(testID), testID + "@example.com"},
		{"json with charset", "application/json; charset=utf-8", jsonCreds("client_credentials", testID, testSecret),
			"Client-Name-" + testID, userID(testID), testID + "@example.com"},
		{"form", "application/x-www-form-urlencoded", formCreds("client_credentials", testID, testSecret),
			"Client-Name-" + testID, userID(testID), testID + "@example.com"},
		{"form with charset", "application/x-www-form-urlencoded; charset=UTF-8", formCreds("client_credentials", "client-b", "secret-b"),
			"Reporting", "u-1", "b@corp.test"},
		{"json with custom credential fields", "application/json", jsonCreds("client_credentials", "client-b", "secret-b"),
			"Reporting", "u-1", "b@corp.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := post(t, nil, ts, "/auth/token", tt.contentType, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			wantStatus(t, resp, http.StatusOK, "application/json; charset=UTF-8")
			tr := decodeReply(t, body)
			if tr.TokenType != "Bearer" || tr.ExpiresIn != 1200 {
				t.Errorf("token_type %q, expires_in %d; want Bearer, 1200", tr.TokenType, tr.ExpiresIn)
			}
			cl := parseJWT(t, tr.AccessToken)
			want := claims{Iss: "oauth", Aud: tt.wantAud, Iat: clock.Now().Unix(), Exp: clock.Now().Unix() + 1200,
				Sub: tt.wantSub, Org: "acme", Eml: tt.wantEml, Jti: cl.Jti}
			if cl != want {
				t.Errorf("claims = %+v, want %+v", cl, want)
			}
			if len(cl.Jti) != 32 {
				t.Errorf("jti %q, want 32 hex digits", cl.Jti)
			}
			if !s.TokenValid(tr.AccessToken) {
				t.Error("TokenValid = false for a fresh token")
			}
		})
	}
	if got := s.TokensIssued(); got != int64(len(tests)) {
		t.Errorf("TokensIssued = %d, want %d", got, len(tests))
	}
}

func TestTokensDiffer(t *testing.T) {
	clock := newClock() // both tokens are minted in the same second
	_, ts := newTest(t, Options{Now: clock.Now})
	_, b1 := getToken(t, ts)
	_, b2 := getToken(t, ts)
	t1, t2 := decodeReply(t, b1).AccessToken, decodeReply(t, b2).AccessToken
	if t1 == t2 {
		t.Fatal("two tokens minted in the same second are equal")
	}
}

func TestUserIDIsStableAndUUIDShaped(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if id := userID("x"); !uuid.MatchString(id) || id != userID("x") || id == userID("y") {
		t.Errorf("userID(x) = %q: want a stable, distinct, UUID-shaped id", id)
	}
}

func TestTokenErrors(t *testing.T) {
	_, ts := newTest(t, Options{Credentials: []Credential{{ClientID: "unlicensed", ClientSecret: "s", NoLicense: true}}})
	const (
		unsupported = "{\"error\":\"unsupported_grant_type\",\"error_description\":\"The authorization grant type is not supported by the authorization server.\",\"hint\":\"Check the `grant_type` parameter\",\"message\":\"The authorization grant type is not supported by the authorization server.\"}"
		noClientID  = "{\"error\":\"invalid_client\",\"error_description\":\"Client authentication failed\",\"hint\":\"Check the `client_id` parameter\",\"message\":\"Client authentication failed\"}"
		badClient   = `{"error":"invalid_client","error_description":"Client authentication failed","message":"Client authentication failed"}`
		noLicense   = `{"code":402,"message":"There is no active license for \"default\" organization"}`
	)
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		wantStatus  int
		wantBody    string // exact, if set
		wantError   string // the "error" field, if wantBody is not set
	}{
		{"GET is not allowed", http.MethodGet, "", "", http.StatusMethodNotAllowed, "Method Not Allowed", ""},
		{"text/plain body", http.MethodPost, "text/plain", "grant_type=client_credentials", http.StatusBadRequest, "", "invalid_request"},
		{"no content type", http.MethodPost, "", jsonCreds("client_credentials", testID, testSecret), http.StatusBadRequest, "", "invalid_request"},
		{"broken JSON", http.MethodPost, "application/json", `{"grant_type":`, http.StatusBadRequest, "", "invalid_request"},
		{"JSON array", http.MethodPost, "application/json", `[]`, http.StatusBadRequest, "", "invalid_request"},
		{"JSON with wrong field type", http.MethodPost, "application/json", `{"client_id":1}`, http.StatusBadRequest, "", "invalid_request"},
		{"broken form", http.MethodPost, "application/x-www-form-urlencoded", "a=%zz", http.StatusBadRequest, "", "invalid_request"},
		{"body over 64 KiB", http.MethodPost, "application/x-www-form-urlencoded",
			formCreds("client_credentials", testID, testSecret) + "&pad=" + strings.Repeat("x", 70<<10), http.StatusBadRequest, "", "invalid_request"},
		{"wrong grant type", http.MethodPost, "application/json", jsonCreds("password", testID, testSecret), http.StatusBadRequest, unsupported, ""},
		{"no grant type", http.MethodPost, "application/x-www-form-urlencoded", "client_id=" + testID, http.StatusBadRequest, unsupported, ""},
		{"no client id", http.MethodPost, "application/json", jsonCreds("client_credentials", "", testSecret), http.StatusBadRequest, noClientID, ""},
		{"unknown client id", http.MethodPost, "application/json", jsonCreds("client_credentials", "nobody", testSecret), http.StatusUnauthorized, badClient, ""},
		{"wrong secret", http.MethodPost, "application/json", jsonCreds("client_credentials", testID, "wrong"), http.StatusUnauthorized, badClient, ""},
		{"no secret", http.MethodPost, "application/x-www-form-urlencoded", "grant_type=client_credentials&client_id=" + testID, http.StatusUnauthorized, badClient, ""},
		{"secret prefix", http.MethodPost, "application/json", jsonCreds("client_credentials", testID, testSecret[:3]), http.StatusUnauthorized, badClient, ""},
		{"credential without license", http.MethodPost, "application/json", jsonCreds("client_credentials", "unlicensed", "s"), http.StatusPaymentRequired, noLicense, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, ts.URL+"/auth/token", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			wantStatus(t, resp, tt.wantStatus, "")
			if tt.wantStatus == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != http.MethodPost {
				t.Errorf("Allow = %q, want POST", resp.Header.Get("Allow"))
			}
			if tt.wantBody != "" {
				if string(body) != tt.wantBody {
					t.Errorf("body = %s\nwant   %s", body, tt.wantBody)
				}
				return
			}
			var e oauthError
			if err := json.Unmarshal(body, &e); err != nil || e.Error != tt.wantError || e.Description == "" || e.Message != e.Description {
				t.Errorf("body = %s, want an OAuth error %q with description and message", body, tt.wantError)
			}
		})
	}
}

func TestTokenRequestCounters(t *testing.T) {
	s, ts := newTest(t, Options{})
	getToken(t, ts)
	resp, err := post(t, nil, ts, "/auth/token", "application/json", jsonCreds("client_credentials", testID, "wrong"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if s.TokenRequests() != 2 || s.TokensIssued() != 1 {
		t.Errorf("TokenRequests %d, TokensIssued %d; want 2, 1", s.TokenRequests(), s.TokensIssued())
	}
}

// faultCase is one fault and the check of what a token request gets.
type faultCase struct {
	name    string
	fault   Fault
	timeout time.Duration // client timeout; 0 for none
	check   func(t *testing.T, s *Server, resp *http.Response, err error)
}

func TestFaults(t *testing.T) {
	tests := []faultCase{
		{"rate limit", Fault{Kind: FaultRateLimit, RetryAfter: 7}, 0, wantPlain(http.StatusTooManyRequests, "7", "Too Many Requests")},
		{"rate limit default retry", Fault{Kind: FaultRateLimit}, 0, wantPlain(http.StatusTooManyRequests, "1", "Too Many Requests")},
		{"no license", Fault{Kind: FaultNoLicense}, 0, wantExact(http.StatusPaymentRequired, "application/json",
			`{"code":402,"message":"There is no active license for \"default\" organization"}`)},
		{"server error", Fault{Kind: FaultServerError}, 0, wantHTML(http.StatusInternalServerError, "500 Internal Server Error")},
		{"bad gateway", Fault{Kind: FaultBadGateway}, 0, wantHTML(http.StatusBadGateway, "502 Bad Gateway")},
		{"unavailable", Fault{Kind: FaultUnavailable}, 0, wantHTML(http.StatusServiceUnavailable, "503 Service Unavailable")},
		{"gateway timeout", Fault{Kind: FaultGatewayTimeout}, 0, wantHTML(http.StatusGatewayTimeout, "504 Gateway Timeout")},
		{"html login page", Fault{Kind: FaultHTML}, 0, wantHTML(http.StatusOK, "Login")},
		{"close connection", Fault{Kind: FaultCloseConnection}, 0, wantErr(false)},
		{"hang", Fault{Kind: FaultHang}, 100 * time.Millisecond, wantErr(true)},
		{"slow past the timeout", Fault{Kind: FaultSlow, Delay: 2 * time.Second}, 50 * time.Millisecond, wantErr(true)},
		{"slow within the timeout", Fault{Kind: FaultSlow, Delay: 30 * time.Millisecond}, 0, wantToken(1800, 1800, true)},
		{"trickle to the end", Fault{Kind: FaultTrickle, Delay: time.Microsecond}, 0, wantToken(1800, 1800, true)},
		{"trickle past the timeout", Fault{Kind: FaultTrickle, Delay: 100 * time.Millisecond}, 400 * time.Millisecond, wantTrickleTimeout},
		{"huge", Fault{Kind: FaultHuge}, 0, wantHuge},
		{"truncated", Fault{Kind: FaultTruncated}, 0, wantExact(http.StatusOK, jsonUTF8, `{"token_type":"Bearer","expires_in":18`)},
		{"no access token", Fault{Kind: FaultNoAccessToken}, 0, wantExact(http.StatusOK, jsonUTF8, `{"token_type":"Bearer","expires_in":1800}`)},
		{"zero expires_in", Fault{Kind: FaultZeroExpiry}, 0, wantToken(0, 1800, true)},
		{"negative expires_in", Fault{Kind: FaultNegativeExpiry}, 0, wantToken(-5, 1800, true)},
		{"absurd expires_in", Fault{Kind: FaultAbsurdExpiry}, 0, wantToken(315360000, 315360000, true)},
		{"wrong token type", Fault{Kind: FaultWrongTokenType}, 0, wantTokenType("MAC")},
		{"expired jwt", Fault{Kind: FaultExpiredJWT}, 0, wantExpiredJWT},
		{"short jwt", Fault{Kind: FaultShortJWT}, 0, wantToken(1800, 300, true)},
		{"bad jwt", Fault{Kind: FaultBadJWT}, 0, wantBadJWT},
		{"not implemented", Fault{Kind: FaultNotImplemented}, 0, wantHTML(http.StatusNotImplemented, "501 Not Implemented")},
		{"redirect", Fault{Kind: FaultRedirect, Status: http.StatusPermanentRedirect, Location: "https://elsewhere.invalid/auth/token"}, 0,
			wantLocation(http.StatusPermanentRedirect, "https://elsewhere.invalid/auth/token")},
		{"redirect default status", Fault{Kind: FaultRedirect, Location: "/x"}, 0, wantLocation(http.StatusTemporaryRedirect, "/x")},
		{"echo body", Fault{Kind: FaultEcho, Echo: EchoBody}, 0, wantEcho(http.StatusBadRequest, `\"client_secret\":\"`+testSecret)},
		{"echo raw", Fault{Kind: FaultEcho, Echo: EchoRaw}, 0, wantEcho(http.StatusInternalServerError, "client_secret="+testSecret)},
		{"echo json", Fault{Kind: FaultEcho, Echo: EchoJSON}, 0, wantEcho(http.StatusBadRequest, "client_secret "+testSecret)},
		{"echo url", Fault{Kind: FaultEcho, Echo: EchoURL}, 0, wantEcho(http.StatusBadRequest, "client_secret="+testSecret)},
		{"echo quoted", Fault{Kind: FaultEcho, Echo: EchoQuoted}, 0, wantEcho(http.StatusBadGateway, `"`+testSecret+`"`)},
		{"echo token_type", Fault{Kind: FaultEcho, Echo: EchoTokenType}, 0, wantEcho(http.StatusOK, `"token_type":"`+testSecret+`"`)},
		{"echo location", Fault{Kind: FaultEcho, Echo: EchoLocation}, 0, wantLocation(http.StatusFound, "https://collector.invalid/"+testSecret+"?s="+testSecret)},
		{"huge header", Fault{Kind: FaultHugeHeader}, 0, wantHugeHeader},
	}
	covered := map[FaultKind]bool{}
	for _, tt := range tests {
		covered[tt.fault.Kind] = true
		t.Run(tt.name, func(t *testing.T) {
			s, ts := newTest(t, Options{})
			s.SetFault(tt.fault)
			c := &http.Client{Transport: ts.Client().Transport, Timeout: tt.timeout,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := post(t, c, ts, "/auth/token", "application/json", jsonCreds("client_credentials", testID, testSecret))
			tt.check(t, s, resp, err)
		})
	}
	for _, k := range faultKinds {
		if !covered[k] {
			t.Errorf("fault kind %q has no test", k)
		}
	}
}

func wantErr(timeout bool) func(*testing.T, *Server, *http.Response, error) {
	return func(t *testing.T, _ *Server, resp *http.Response, err error) {
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got a %d reply, want a connection error", resp.StatusCode)
		}
		if timeout && !isTimeout(err) {
			t.Errorf("error %v is not a timeout", err)
		}
	}
}

func mustReply(t *testing.T, resp *http.Response, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	return readAll(t, resp)
}

func wantExact(status int, contentType, body string) func(*testing.T, *Server, *http.Response, error) {
	return func(t *testing.T, _ *Server, resp *http.Response, err error) {
		got := mustReply(t, resp, err)
		wantStatus(t, resp, status, contentType)
		if string(got) != body {
			t.Errorf("body = %s, want %s", got, body)
		}
	}
}

func wantPlain(status int, retryAfter, body string) func(*testing.T, *Server, *http.Response, error) {
	return func(t *testing.T, s *Server, resp *http.Response, err error) {
		wantExact(status, "text/plain; charset=utf-8", body)(t, s, resp, err)
		if got := resp.Header.Get("Retry-After"); got != retryAfter {
			t.Errorf("Retry-After = %q, want %q", got, retryAfter)
		}
	}
}

func wantLocation(status int, location string) func(*testing.T, *Server, *http.Response, error) {
	return func(t *testing.T, _ *Server, resp *http.Response, err error) {
		mustReply(t, resp, err)
		wantStatus(t, resp, status, "")
		if got := resp.Header.Get("Location"); got != location {
			t.Errorf("Location = %q, want %q", got, location)
		}
	}
}

// wantHugeHeader: net/http's client accepts up to 10 MiB of headers by
// default, so the 8 MiB header arrives, with a token after it.
func wantHugeHeader(t *testing.T, _ *Server, resp *http.Response, err error) {
	body := mustReply(t, resp, err)
	wantStatus(t, resp, http.StatusOK, "")
	if got := len(resp.Header.Get("X-Padding")); got != hugeHeaderSize {
		t.Errorf("X-Padding is %d bytes, want %d", got, hugeHeaderSize)
	}
	if !bytes.Contains(body, []byte(`"access_token"`)) {
		t.Errorf("body = %.200s, want a token reply", body)
	}
}

func wantEcho(status int, text string) func(*testing.T, *Server, *http.Response, error) {
	return func(t *testing.T, _ *Server, resp *http.Response, err error) {
		body := mustReply(t, resp, err)
		wantStatus(t, resp, status, "")
		if !bytes.Contains(body, []byte(text)) {
			t.Errorf("body = %s, want it to echo %s", body, text)
		}
	}
}

func wantHTML(status int, text string) func(*testing.T, *Server, *http.Response, error) {
	return func(t *testing.T, _ *Server, resp *http.Response, err error) {
		body := mustReply(t, resp, err)
		wantStatus(t, resp, status, "")
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("Content-Type = %q, want text/html", ct)
		}
		if !bytes.Contains(body, []byte("<html")) || !bytes.Contains(body, []byte(text)) {
			t.Errorf("body = %s, want an HTML page with %q", body, text)
		}
	}
}

// wantToken checks a 200 token reply's expires_in and the JWT's exp-iat.
func wantToken(expiresIn, jwtLifetime int64, valid bool) func(*testing.T, *Server, *http.Response, error) {
	return func(t *testing.T, s *Server, resp *http.Response, err error) {
		body := mustReply(t, resp, err)
		wantStatus(t, resp, http.StatusOK, jsonUTF8)
		tr := decodeReply(t, body)
		cl := parseJWT(t, tr.AccessToken)
		if tr.TokenType != "Bearer" || tr.ExpiresIn != expiresIn || cl.Exp-cl.Iat != jwtLifetime {
			t.Errorf("token_type %q, expires_in %d, exp-iat %d; want Bearer, %d, %d",
				tr.TokenType, tr.ExpiresIn, cl.Exp-cl.Iat, expiresIn, jwtLifetime)
		}
		if s.TokenValid(tr.AccessToken) != valid {
			t.Errorf("TokenValid = %v, want %v", !valid, valid)
		}
	}
}

func wantTokenType(tokenType string) func(*testing.T, *Server, *http.Response, error) {
	return func(t *testing.T, s *Server, resp *http.Response, err error) {
		tr := decodeReply(t, mustReply(t, resp, err))
		if tr.TokenType != tokenType || !s.TokenValid(tr.AccessToken) {
			t.Errorf("token_type %q, valid %v; want %q and a valid token", tr.TokenType, s.TokenValid(tr.AccessToken), tokenType)
		}
	}
}

func wantExpiredJWT(t *testing.T, s *Server, resp *http.Response, err error) {
	tr := decodeReply(t, mustReply(t, resp, err))
	cl := parseJWT(t, tr.AccessToken)
	if tr.ExpiresIn != 1800 || cl.Exp-cl.Iat != 1800 || time.Unix(cl.Exp, 0).After(time.Now().Add(-59*time.Second)) {
		t.Errorf("expires_in %d, exp-iat %d, exp %v; want 1800, 1800 and an exp a minute ago",
			tr.ExpiresIn, cl.Exp-cl.Iat, time.Unix(cl.Exp, 0))
	}
	if s.TokenValid(tr.AccessToken) {
		t.Error("TokenValid = true for an expired JWT")
	}
}

func wantBadJWT(t *testing.T, s *Server, resp *http.Response, err error) {
	tr := decodeReply(t, mustReply(t, resp, err))
	if tr.AccessToken != "not-a-jwt" || tr.TokenType != "Bearer" || tr.ExpiresIn != 1800 {
		t.Errorf("reply %+v, want access_token not-a-jwt in an otherwise normal reply", tr)
	}
	if s.TokensIssued() != 0 {
		t.Errorf("TokensIssued = %d, want 0", s.TokensIssued())
	}
}

func wantTrickleTimeout(t *testing.T, _ *Server, resp *http.Response, err error) {
	if err != nil {
		t.Fatalf("the headers should arrive before the timeout: %v", err)
	}
	defer resp.Body.Close()
	wantStatus(t, resp, http.StatusOK, jsonUTF8)
	got, err := io.ReadAll(resp.Body)
	if !isTimeout(err) {
		t.Errorf("reading the body: err %v, want a timeout", err)
	}
	if len(got) == 0 || len(got) > 10 {
		t.Errorf("read %d bytes before the timeout, want a few", len(got))
	}
}

func wantHuge(t *testing.T, _ *Server, resp *http.Response, err error) {
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	wantStatus(t, resp, http.StatusOK, jsonUTF8)
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n < 10<<20 {
		t.Errorf("read %d bytes, err %v; want more than 10 MiB", n, err)
	}
}

func TestFaultsBeforeOrAfterCredentialCheck(t *testing.T) {
	tests := []struct {
		kind       FaultKind
		wantStatus int
	}{
		{FaultRateLimit, http.StatusTooManyRequests}, // replaces the reply
		{FaultBadGateway, http.StatusBadGateway},
		{FaultZeroExpiry, http.StatusUnauthorized}, // shapes a token reply
		{FaultShortJWT, http.StatusUnauthorized},
		{FaultTrickle, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			s, ts := newTest(t, Options{})
			s.SetFault(Fault{Kind: tt.kind, Delay: time.Microsecond})
			resp, err := post(t, nil, ts, "/auth/token", "application/json", jsonCreds("client_credentials", testID, "wrong"))
			mustReply(t, resp, err)
			wantStatus(t, resp, tt.wantStatus, "")
		})
	}
}

func TestHangDoesNotBlockCloseOnceClientLeaves(t *testing.T) {
	s := New(Options{Credentials: []Credential{{ClientID: testID, ClientSecret: testSecret}}})
	ts := httptest.NewServer(s)
	s.SetFault(Fault{Kind: FaultHang})
	c := &http.Client{Transport: ts.Client().Transport, Timeout: 100 * time.Millisecond}
	if _, err := post(t, c, ts, "/auth/token", "application/json", jsonCreds("client_credentials", testID, testSecret)); !isTimeout(err) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	closed := make(chan struct{})
	go func() {
		ts.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("httptest.Server.Close blocked after the client gave up")
	}
}

func TestCloseReleasesHang(t *testing.T) {
	s, ts := newTest(t, Options{})
	s.SetFault(Fault{Kind: FaultHang})
	errc := make(chan error, 1)
	go func() {
		resp, err := post(t, nil, ts, "/auth/token", "application/json", jsonCreds("client_credentials", testID, testSecret))
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	eventually(t, "the request to arrive", func() bool { return s.TokenRequests() == 1 })
	s.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("a hung request released by Close got a reply, want a dropped connection")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not release a hung request")
	}
}

func TestFailNext(t *testing.T) {
	s, ts := newTest(t, Options{})
	steps := []struct {
		name       string
		arm        func()
		wantStatus []int
	}{
		{"counts down then back to normal", func() { s.FailNext(2, Fault{Kind: FaultRateLimit}) },
			[]int{429, 429, 200}},
		{"comes before SetFault, then SetFault applies", func() {
			s.SetFault(Fault{Kind: FaultServerError})
			s.FailNext(1, Fault{Kind: FaultRateLimit})
		}, []int{429, 500, 500}},
		{"Fault{} clears SetFault", func() { s.SetFault(Fault{}) }, []int{200}},
		{"n <= 0 cancels", func() {
			s.FailNext(3, Fault{Kind: FaultBadGateway})
			s.FailNext(0, Fault{Kind: FaultBadGateway})
		}, []int{200}},
		{"a later FailNext replaces an earlier one", func() {
			s.FailNext(3, Fault{Kind: FaultBadGateway})
			s.FailNext(1, Fault{Kind: FaultUnavailable})
		}, []int{503, 200}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.arm()
			for i, want := range st.wantStatus {
				resp, _ := getToken(t, ts)
				if resp.StatusCode != want {
					t.Errorf("request %d: status %d, want %d", i+1, resp.StatusCode, want)
				}
			}
		})
	}
}

func TestMe(t *testing.T) {
	clock := newClock()
	s, ts := newTest(t, Options{Now: clock.Now, Org: "acme"})
	_, body := getToken(t, ts)
	token := decodeReply(t, body).AccessToken
	other := New(Options{Credentials: []Credential{{ClientID: testID, ClientSecret: testSecret}}, Now: clock.Now})
	otherToken := other.mint(other.newClaims(withDefaults(Credential{ClientID: testID}), clock.Now(), time.Hour))

	parts := strings.Split(token, ".")
	forged := parseJWT(t, token)
	forged.Sub = "someone-else"
	forgedPayload, _ := json.Marshal(forged)
	sig := []byte(parts[2])
	if sig[10] == 'A' { // another base64url digit, so only the check can fail
		sig[10] = 'B'
	} else {
		sig[10] = 'A'
	}

	const unauthorized = `{"errors":[{"status":"401","detail":"No valid credentials provided."}]}`
	wantMe := fmt.Sprintf(`{"data":{"id":%q,"type":"user","attributes":{"email":%q,"organization":"acme"}}}`,
		userID(testID), testID+"@example.com")
	tests := []struct {
		name     string
		auth     string
		advance  time.Duration
		wantCode int
		wantBody string
	}{
		{"valid token", "Bearer " + token, 0, 200, wantMe},
		{"lower-case scheme", "bearer " + token, 0, 200, wantMe},
		{"no header", "", 0, 401, unauthorized},
		{"basic scheme", "Basic " + token, 0, 401, unauthorized},
		{"tampered claims", "Bearer " + parts[0] + "." + b64(forgedPayload) + "." + parts[2], 0, 401, unauthorized},
		{"tampered signature", "Bearer " + parts[0] + "." + parts[1] + "." + string(sig), 0, 401, unauthorized},
		{"another server's token", "Bearer " + otherToken, 0, 401, unauthorized},
		{"not a JWT", "Bearer not-a-jwt", 0, 401, unauthorized},
		{"valid a second before exp", "Bearer " + token, 1799 * time.Second, 200, wantMe},
		{"expired at exp", "Bearer " + token, time.Second, 401, unauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock.Add(tt.advance)
			req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/users/v2/me", nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := ts.Client().Do(req)
			got := mustReply(t, resp, err)
			wantStatus(t, resp, tt.wantCode, "application/vnd.api+json")
			if string(got) != tt.wantBody {
				t.Errorf("body = %s\nwant   %s", got, tt.wantBody)
			}
		})
	}
	if s.TokenValid(token) {
		t.Error("TokenValid = true after exp")
	}
	resp, err := post(t, nil, ts, "/api/users/v2/me", "", "")
	mustReply(t, resp, err)
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET" {
		t.Errorf("POST /me: %d, Allow %q; want 405 with Allow: GET", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestPaths(t *testing.T) {
	_, ts := newTest(t, Options{})
	_, body := getToken(t, ts)
	token := decodeReply(t, body).AccessToken
	tests := []struct {
		path string
		want int
	}{
		{"/auth/token", 200},
		{"/tenant-a/auth/token", 200},
		{"/a/b/c/auth/token", 200},
		{"/api/users/v2/me", 200},
		{"/tenant-a/api/users/v2/me", 200},
		{"/tenant-a//auth/token", 404},
		{"//auth/token", 404},
		{"/auth/token/", 404},
		{"/xauth/token", 404},
		{"/auth/tokens", 404},
		{"/", 404},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			var req *http.Request
			if strings.Contains(tt.path, "/me") {
				req, _ = http.NewRequest(http.MethodGet, ts.URL+tt.path, nil)
				req.Header.Set("Authorization", "Bearer "+token)
			} else {
				req, _ = http.NewRequest(http.MethodPost, ts.URL+tt.path,
					strings.NewReader(jsonCreds("client_credentials", testID, testSecret)))
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := ts.Client().Do(req)
			mustReply(t, resp, err)
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}

func TestSetLifetime(t *testing.T) {
	s, ts := newTest(t, Options{})
	tests := []struct {
		set  time.Duration
		want int64
	}{
		{20 * time.Second, 20},
		{1500 * time.Millisecond, 1},
		{time.Millisecond, 1},
		{0, 1800},
		{-time.Second, 1800},
	}
	for _, tt := range tests {
		t.Run(tt.set.String(), func(t *testing.T) {
			s.SetLifetime(tt.set)
			_, body := getToken(t, ts)
			tr := decodeReply(t, body)
			if cl := parseJWT(t, tr.AccessToken); tr.ExpiresIn != tt.want || cl.Exp-cl.Iat != tt.want {
				t.Errorf("expires_in %d, exp-iat %d; want %d", tr.ExpiresIn, cl.Exp-cl.Iat, tt.want)
			}
		})
	}
}

func TestAddCredentialReplaces(t *testing.T) {
	s, ts := newTest(t, Options{})
	s.AddCredential(Credential{ClientID: testID, ClientSecret: "rotated"})
	for secret, want := range map[string]int{testSecret: 401, "rotated": 200} {
		resp, err := post(t, nil, ts, "/auth/token", "application/json", jsonCreds("client_credentials", testID, secret))
		mustReply(t, resp, err)
		if resp.StatusCode != want {
			t.Errorf("secret %q: status %d, want %d", secret, resp.StatusCode, want)
		}
	}
}

// control sends a request to a control endpoint and returns status and body.
func control(t *testing.T, ts *httptest.Server, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	resp, err := ts.Client().Do(req)
	got := mustReply(t, resp, err)
	return resp.StatusCode, string(got)
}

func TestControlEndpoints(t *testing.T) {
	s, ts := newTest(t, Options{})
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		then       []int // statuses of token requests made afterwards
	}{
		{"fault for a count", "POST", "/_standin/fault", `{"kind":"rate_limit","retry_after":1,"delay_ms":200,"count":2}`, 204, []int{429, 429, 200}},
		{"fault for all", "POST", "/_standin/fault", `{"kind":"unavailable"}`, 204, []int{503, 503}},
		{"empty kind clears", "POST", "/_standin/fault", `{"kind":""}`, 204, []int{200}},
		{"unknown kind", "POST", "/_standin/fault", `{"kind":"meteor"}`, 400, []int{200}},
		{"unknown field", "POST", "/_standin/fault", `{"kind":"hang","cuont":1}`, 400, []int{200}},
		{"negative count", "POST", "/_standin/fault", `{"kind":"hang","count":-1}`, 400, []int{200}},
		{"not JSON", "POST", "/_standin/fault", `kind=hang`, 400, []int{200}},
		{"GET fault", "GET", "/_standin/fault", ``, 405, nil},
		{"lifetime", "POST", "/_standin/lifetime", `{"seconds":20}`, 204, []int{200}},
		{"zero lifetime", "POST", "/_standin/lifetime", `{"seconds":0}`, 400, nil},
		{"add credential", "POST", "/_standin/credentials", `{"client_id":"c2","client_secret":"s2","no_license":false}`, 204, nil},
		{"add unlicensed credential", "POST", "/_standin/credentials", `{"client_id":"c3","client_secret":"s3","no_license":true}`, 204, nil},
		{"credential without secret", "POST", "/_standin/credentials", `{"client_id":"c4"}`, 400, nil},
		{"unknown endpoint", "POST", "/_standin/reboot", `{}`, 404, nil},
		{"POST stats", "POST", "/_standin/stats", `{}`, 405, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := control(t, ts, tt.method, tt.path, tt.body)
			if status != tt.wantStatus {
				t.Fatalf("status %d (%s), want %d", status, body, tt.wantStatus)
			}
			for i, want := range tt.then {
				if resp, _ := getToken(t, ts); resp.StatusCode != want {
					t.Errorf("token request %d: status %d, want %d", i+1, resp.StatusCode, want)
				}
			}
		})
	}

	if resp, body := getToken(t, ts); decodeReply(t, body).ExpiresIn != 20 {
		t.Errorf("after POST lifetime 20: expires_in in %s (status %d)", body, resp.StatusCode)
	}
	for id, want := range map[string]int{"c2": 200, "c3": 402} {
		resp, err := post(t, nil, ts, "/auth/token", "application/json", jsonCreds("client_credentials", id, "s"+id[1:]))
		mustReply(t, resp, err)
		if resp.StatusCode != want {
			t.Errorf("credential %s: status %d, want %d", id, resp.StatusCode, want)
		}
	}

	status, body := control(t, ts, "GET", "/_standin/stats", "")
	by := s.TokenRequestsBy()
	// Requests a fault answered before reading them name no client.
	if len(by) != 3 || by["c2"] != 1 || by["c3"] != 1 || by["client-a"] == 0 || by["client-a"]+2 > s.TokenRequests() {
		t.Errorf("requests by client %v of %d; want c2 and c3 once each, some by client-a", by, s.TokenRequests())
	}
	want := fmt.Sprintf(`{"token_requests":%d,"tokens_issued":%d,"token_requests_by_client":{"c2":1,"c3":1,"client-a":%d}}`,
		s.TokenRequests(), s.TokensIssued(), by["client-a"])
	if status != 200 || body != want {
		t.Errorf("stats: %d %s, want 200 %s", status, body, want)
	}
}

func TestControlFaultDelay(t *testing.T) {
	s, ts := newTest(t, Options{})
	if status, body := control(t, ts, "POST", "/_standin/fault", `{"kind":"slow","delay_ms":250,"count":3}`); status != 204 {
		t.Fatalf("status %d: %s", status, body)
	}
	want := Fault{Kind: FaultSlow, Delay: 250 * time.Millisecond}
	if !reflect.DeepEqual(s.next, want) || s.nextCount != 3 {
		t.Errorf("armed %+v x%d, want %+v x3", s.next, s.nextCount, want)
	}
}

func TestConcurrentUse(t *testing.T) {
	s, ts := newTest(t, Options{})
	const workers, perWorker = 8, 25
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() { // reconfigures the server while the workers run
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			s.FailNext(1, Fault{Kind: FaultRateLimit})
			s.SetLifetime(time.Duration(60+i%60) * time.Second)
			s.AddCredential(Credential{ClientID: fmt.Sprintf("extra-%d", i%10), ClientSecret: "x"})
			_, _ = s.TokenRequests(), s.TokensIssued()
		}
	}()
	statuses := make(chan int, workers*perWorker)
	for range workers {
		wg.Go(func() {
			for range perWorker {
				resp, err := post(t, nil, ts, "/auth/token", "application/json", jsonCreds("client_credentials", testID, testSecret))
				if err != nil {
					t.Error(err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				statuses <- resp.StatusCode
				var tr tokenReply
				if resp.StatusCode == 200 && (json.Unmarshal(body, &tr) != nil || !s.TokenValid(tr.AccessToken)) {
					t.Errorf("a concurrently issued token is not valid: %s", body)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	close(statuses)
	var ok, limited int64
	for st := range statuses {
		switch st {
		case 200:
			ok++
		case 429:
			limited++
		default:
			t.Errorf("unexpected status %d", st)
		}
	}
	if s.TokenRequests() != workers*perWorker || s.TokensIssued() != ok || ok+limited != workers*perWorker {
		t.Errorf("requests %d, issued %d, 200s %d, 429s %d", s.TokenRequests(), s.TokensIssued(), ok, limited)
	}
}

func TestLogRequestsLeavesSecretsOut(t *testing.T) {
	var mu sync.Mutex
	var logs strings.Builder
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(&logs, format+"\n", args...)
	}
	s := New(Options{Credentials: []Credential{{ClientID: testID, ClientSecret: testSecret}}})
	ts := httptest.NewServer(LogRequests(s, logf))
	t.Cleanup(ts.Close)
	t.Cleanup(s.Close)

	resp, err := post(t, nil, ts, "/auth/token?client_secret="+testSecret, "application/x-www-form-urlencoded",
		formCreds("client_credentials", testID, testSecret))
	token := decodeReply(t, mustReply(t, resp, err)).AccessToken
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/users/v2/me", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = ts.Client().Do(req)
	mustReply(t, resp, err)
	s.SetFault(Fault{Kind: FaultCloseConnection})
	if _, err := post(t, nil, ts, "/auth/token", "application/json", "{}"); err == nil {
		t.Error("close_connection through LogRequests got a reply")
	}
	eventually(t, "three log lines", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Count(logs.String(), "\n") == 3
	})

	mu.Lock()
	got := logs.String()
	mu.Unlock()
	// A line is written when its handler returns, which may be after the
	// client has read the reply, so the order is not checked.
	for _, line := range []string{"POST /auth/token 200\n", "GET /api/users/v2/me 200\n", "POST /auth/token -\n"} {
		if !strings.Contains(got, line) {
			t.Errorf("log lacks %q:\n%s", line, got)
		}
	}
	if strings.Contains(got, testSecret) || strings.Contains(got, token) {
		t.Error("the log holds a secret or a token")
	}
}

func TestLoadCredentials(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		want    []Credential
		wantErr bool
	}{
		{"two credentials", `[{"client_id":"a","client_secret":"1"},{"client_id":"b","client_secret":"2","no_license":true,"email":"b@x.test"}]`,
			[]Credential{{ClientID: "a", ClientSecret: "1"}, {ClientID: "b", ClientSecret: "2", NoLicense: true, Email: "b@x.test"}}, false},
		{"empty list", `[]`, []Credential{}, false},
		{"missing secret", `[{"client_id":"a"}]`, nil, true},
		{"unknown field", `[{"client_id":"a","client_secret":"1","secret":"x"}]`, nil, true},
		{"not a list", `{"client_id":"a"}`, nil, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("creds-%d.json", i))
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := LoadCredentials(path)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if _, err := LoadCredentials(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("no error for a missing file")
	}
}

func TestFaultKindValid(t *testing.T) {
	for _, k := range append([]FaultKind{FaultNone}, faultKinds...) {
		if !k.Valid() {
			t.Errorf("%q.Valid() = false", k)
		}
	}
	if FaultKind("Rate_Limit").Valid() {
		t.Error(`"Rate_Limit".Valid() = true`)
	}
}

// clientReport returns the record of clientID; a zero one when there is
// none yet.
func clientReport(s *Server, clientID string) ClientReport {
	for _, c := range s.ClientReports() {
		if c.ClientID == clientID {
			return c
		}
	}
	return ClientReport{}
}

// tokenStatus requests a token for id and secret and returns the status.
func tokenStatus(t *testing.T, ts *httptest.Server, id, secret string) int {
	t.Helper()
	resp, err := post(t, nil, ts, "/auth/token", "application/json", jsonCreds("client_credentials", id, secret))
	mustReply(t, resp, err)
	return resp.StatusCode
}

func TestSchedule(t *testing.T) {
	clock := newClock()
	s, ts := newTest(t, Options{Now: clock.Now})
	s.SetFault(Fault{Kind: FaultBadGateway})
	err := s.SetSchedule(Schedule{Phases: []Phase{
		{Name: "limited", Duration: 10 * time.Second, Fault: Fault{Kind: FaultRateLimit, RetryAfter: 1}},
		{Name: "failing", Duration: 5 * time.Second, Fault: Fault{Kind: FaultServerError}},
		{Name: "normal", Duration: 5 * time.Second},
	}})
	if err != nil {
		t.Fatal(err)
	}
	start := clock.Now()
	steps := []struct {
		at   time.Duration // since the schedule started
		want int
	}{
		{0, 429}, {9 * time.Second, 429}, {10 * time.Second, 500}, {14 * time.Second, 500},
		{15 * time.Second, 200}, {19 * time.Second, 200},
		{20 * time.Second, 502}, // the schedule is over: SetFault's fault again
	}
	for _, st := range steps {
		clock.Add(start.Add(st.at).Sub(clock.Now()))
		if got := tokenStatus(t, ts, testID, testSecret); got != st.want {
			t.Errorf("at %s: status %d, want %d", st.at, got, st.want)
		}
	}
	s.FailNext(1, Fault{Kind: FaultUnavailable})
	if got := tokenStatus(t, ts, testID, testSecret); got != 503 {
		t.Errorf("FailNext after the schedule: status %d, want 503", got)
	}

	rep := s.ScheduleReport()
	if rep.Running || len(rep.Phases) != 3 {
		t.Fatalf("report: running %v, %d phase runs; want a finished schedule of 3", rep.Running, len(rep.Phases))
	}
	for i, want := range []struct {
		name  string
		start time.Duration
		count OutcomeCounts
	}{
		{"limited", 0, OutcomeCounts{"429": 2}},
		{"failing", 10 * time.Second, OutcomeCounts{"500": 2}},
		{"normal", 15 * time.Second, OutcomeCounts{"200": 2}},
	} {
		p := rep.Phases[i]
		if p.Name != want.name || p.Cycle != 0 || p.Index != i || !p.Start.Equal(start.Add(want.start)) || fmt.Sprint(p.Clients[testID]) != fmt.Sprint(want.count) {
			t.Errorf("phase run %d = %+v, want %s from %s with %v", i, p, want.name, want.start, want.count)
		}
	}
}

func TestScheduleRepeats(t *testing.T) {
	clock := newClock()
	s, ts := newTest(t, Options{Now: clock.Now})
	if err := s.SetSchedule(Schedule{Repeat: true, Phases: []Phase{
		{Name: "up", Duration: time.Second},
		{Name: "down", Duration: 2 * time.Second, Fault: Fault{Kind: FaultUnavailable}},
	}}); err != nil {
		t.Fatal(err)
	}
	// Cycles of 3s: up at 0-1s, down at 1-3s, up at 3-4s, ...
	var got []int
	for range 7 {
		got = append(got, tokenStatus(t, ts, testID, testSecret))
		clock.Add(time.Second)
	}
	if want := []int{200, 503, 503, 200, 503, 503, 200}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
	rep := s.ScheduleReport()
	// The clock is at 7s: the down phase of cycle 2 has just begun.
	if !rep.Running || len(rep.Phases) != 6 || rep.Phases[5].Cycle != 2 || rep.Phases[5].Name != "down" || rep.Phases[4].Clients[testID]["200"] != 1 {
		t.Errorf("report: running %v, %d phase runs, last %+v; want 6 runs, the last the down of cycle 2",
			rep.Running, len(rep.Phases), rep.Phases[len(rep.Phases)-1])
	}
	if err := s.SetSchedule(Schedule{}); err != nil {
		t.Fatal(err)
	}
	if got := tokenStatus(t, ts, testID, testSecret); got != 200 || s.ScheduleReport().Running {
		t.Errorf("after the schedule stopped: status %d, running %v", got, s.ScheduleReport().Running)
	}
}

func TestScheduleRevokesCredentials(t *testing.T) {
	clock := newClock()
	other := Credential{ClientID: "client-b", ClientSecret: "secret-b"}
	s, ts := newTest(t, Options{Now: clock.Now, Credentials: []Credential{other}})
	if err := s.SetSchedule(Schedule{Phases: []Phase{
		{Name: "deleted", Duration: time.Minute, Revoked: []string{testID}},
	}}); err != nil {
		t.Fatal(err)
	}
	if got := tokenStatus(t, ts, testID, testSecret); got != 401 {
		t.Errorf("revoked credential: status %d, want 401", got)
	}
	if got := tokenStatus(t, ts, other.ClientID, other.ClientSecret); got != 200 {
		t.Errorf("another credential: status %d, want 200", got)
	}
	clock.Add(time.Minute)
	if got := tokenStatus(t, ts, testID, testSecret); got != 200 {
		t.Errorf("after the phase: status %d, want 200 (restored)", got)
	}
}

func TestScheduleInvalid(t *testing.T) {
	s := New(Options{})
	for name, sc := range map[string]Schedule{
		"zero duration":      {Phases: []Phase{{Name: "x"}}},
		"unknown fault":      {Phases: []Phase{{Name: "x", Duration: time.Second, Fault: Fault{Kind: "meteor"}}}},
		"empty revoked id":   {Phases: []Phase{{Name: "x", Duration: time.Second, Revoked: []string{""}}}},
		"negative duration":  {Phases: []Phase{{Name: "x", Duration: -time.Second}}},
		"second phase wrong": {Phases: []Phase{{Name: "x", Duration: time.Second}, {Name: "y"}}},
	} {
		if err := s.SetSchedule(sc); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestPeakInFlight(t *testing.T) {
	s := New(Options{Credentials: []Credential{{ClientID: testID, ClientSecret: testSecret}, {ClientID: "client-b", ClientSecret: "secret-b"}}})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	const concurrent = 3
	s.FailNext(concurrent, Fault{Kind: FaultSlow, Delay: time.Minute})
	var wg sync.WaitGroup
	for range concurrent {
		wg.Go(func() {
			if resp, err := post(t, nil, ts, "/auth/token", "application/json", jsonCreds("client_credentials", testID, testSecret)); err == nil {
				resp.Body.Close()
			}
		})
	}
	eventually(t, "three requests in flight", func() bool { return clientReport(s, testID).InFlight == concurrent })
	if got := tokenStatus(t, ts, "client-b", "secret-b"); got != 200 {
		t.Errorf("client-b: status %d, want 200", got)
	}
	s.Close() // releases the slow replies
	wg.Wait()
	eventually(t, "nothing in flight", func() bool { return clientReport(s, testID).InFlight == 0 })
	c := clientReport(s, testID)
	if c.PeakInFlight != concurrent || c.Requests != concurrent || c.Outcomes["200"] != concurrent {
		t.Errorf("client %s: %+v; want a peak of %d and %d replies 200", testID, c, concurrent, concurrent)
	}
	if b := clientReport(s, "client-b"); b.PeakInFlight != 1 {
		t.Errorf("client-b: peak %d, want 1: in-flight counts are per client id", b.PeakInFlight)
	}
}

func TestPeakAnsweredLeavesOutHungRequests(t *testing.T) {
	s := New(Options{Credentials: []Credential{{ClientID: testID, ClientSecret: testSecret}}})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	s.FailNext(2, Fault{Kind: FaultHang})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if resp, err := post(t, nil, ts, "/auth/token", "application/json", jsonCreds("client_credentials", testID, testSecret)); err == nil {
				resp.Body.Close()
			}
		})
	}
	eventually(t, "two hung requests", func() bool { return clientReport(s, testID).InFlight == 2 })
	if got := tokenStatus(t, ts, testID, testSecret); got != 200 {
		t.Errorf("status %d, want 200", got)
	}
	s.Close() // drops the hung requests
	wg.Wait()
	if c := clientReport(s, testID); c.PeakInFlight != 3 || c.PeakAnswered != 1 {
		t.Errorf("peak %d, answered %d; want 3 in all and 1 answered", c.PeakInFlight, c.PeakAnswered)
	}
}

func TestRetryAfterViolations(t *testing.T) {
	clock := newClock()
	other := Credential{ClientID: "client-b", ClientSecret: "secret-b"}
	s, ts := newTest(t, Options{Now: clock.Now, RetryAfterGrace: 300 * time.Millisecond, Credentials: []Credential{other}})
	s.FailNext(1, Fault{Kind: FaultRateLimit, RetryAfter: 10})
	if got := tokenStatus(t, ts, testID, testSecret); got != 429 {
		t.Fatalf("status %d, want 429", got)
	}
	opened := clock.Now()
	steps := []struct {
		after time.Duration
		id    string
	}{
		{100 * time.Millisecond, testID},    // within the grace: sent before the 429 arrived
		{300 * time.Millisecond, testID},    // the grace's last instant
		{2 * time.Second, testID},           // a violation
		{3 * time.Second, other.ClientID},   // another client id: its own windows
		{10 * time.Second, testID},          // the window is over
		{10*time.Second + 1, testID},        // still over
		{9999 * time.Millisecond, "nobody"}, // unknown client: no window
	}
	for _, st := range steps {
		clock.Add(opened.Add(st.after).Sub(clock.Now()))
		tokenStatus(t, ts, st.id, "x")
	}
	c := clientReport(s, testID)
	want := Violation{At: opened.Add(2 * time.Second), WindowStart: opened, WindowEnd: opened.Add(10 * time.Second)}
	if c.RateLimitWindows != 1 || c.RequestsInGrace != 2 || c.MaxInGrace != 2 || c.MaxGraceDelayMS != 300 || c.Violations != 1 || len(c.ViolationList) != 1 || c.ViolationList[0] != want {
		t.Errorf("client %s: windows %d, in grace %d (max %d, latest %vms in), violations %d %+v; want 1, 2 (2, 300ms), 1 [%+v]",
			testID, c.RateLimitWindows, c.RequestsInGrace, c.MaxInGrace, c.MaxGraceDelayMS, c.Violations, c.ViolationList, want)
	}
	if b := clientReport(s, other.ClientID); b.Violations != 0 || b.RequestsInGrace != 0 {
		t.Errorf("client-b: %+v; want no violation", b)
	}
	if got := s.RetryAfterGrace(); got != 300*time.Millisecond {
		t.Errorf("RetryAfterGrace = %s", got)
	}
	if got := New(Options{}).RetryAfterGrace(); got != DefaultRetryAfterGrace {
		t.Errorf("default RetryAfterGrace = %s, want %s", got, DefaultRetryAfterGrace)
	}
}

func TestOutcomesAndIssuedTokens(t *testing.T) {
	clock := newClock()
	s, ts := newTest(t, Options{Now: clock.Now, Lifetime: time.Minute})
	if got := tokenStatus(t, ts, testID, testSecret); got != 200 {
		t.Fatalf("status %d", got)
	}
	issuedAt := clock.Now()
	clock.Add(time.Second)
	tokenStatus(t, ts, testID, "wrong")
	s.FailNext(1, Fault{Kind: FaultBadJWT})
	tokenStatus(t, ts, testID, testSecret) // a 200 without a token
	s.FailNext(1, Fault{Kind: FaultCloseConnection})
	if _, err := post(t, nil, ts, "/auth/token", "application/json", jsonCreds("client_credentials", testID, testSecret)); err == nil {
		t.Error("close_connection: got a reply")
	}
	s.FailNext(1, Fault{Kind: FaultHang})
	c := &http.Client{Transport: ts.Client().Transport, Timeout: 100 * time.Millisecond}
	if _, err := post(t, c, ts, "/auth/token", "application/json", jsonCreds("client_credentials", testID, testSecret)); !isTimeout(err) {
		t.Errorf("hang: err %v, want a timeout", err)
	}
	eventually(t, "the hung request to end", func() bool { return clientReport(s, testID).InFlight == 0 })

	got := clientReport(s, testID)
	want := OutcomeCounts{"200": 2, "401": 1, OutcomeDropped: 1, OutcomeClientGone: 1}
	if fmt.Sprint(got.Outcomes) != fmt.Sprint(want) || got.Requests != 5 || got.TokensIssued != 1 {
		t.Errorf("outcomes %v, requests %d, tokens %d; want %v, 5, 1", got.Outcomes, got.Requests, got.TokensIssued, want)
	}
	issued := s.Issued(testID)
	if len(issued) != 1 || !issued[0].At.Equal(issuedAt) || !issued[0].Exp.Equal(issuedAt.Add(time.Minute)) {
		t.Errorf("issued %+v, want one token at %s expiring a minute later", issued, issuedAt)
	}
	if n := len(s.Issued("nobody")); n != 0 {
		t.Errorf("issued to an unknown client: %d", n)
	}
}

func TestControlSchedule(t *testing.T) {
	s, ts := newTest(t, Options{})
	tests := []struct {
		name       string
		method     string
		body       string
		wantStatus int
		wantToken  int // status of a token request made afterwards; 0 for none
	}{
		{"a schedule", "POST", `{"phases":[{"name":"down","duration_ms":60000,"fault":{"kind":"unavailable"}}]}`, 204, 503},
		{"a revoking schedule", "POST", `{"repeat":true,"phases":[{"name":"gone","duration_ms":60000,"revoke":["` + testID + `"]}]}`, 204, 401},
		{"stop", "POST", `{"stop":true}`, 204, 200},
		{"no phases", "POST", `{"phases":[]}`, 400, 200},
		{"stop with phases", "POST", `{"stop":true,"phases":[{"name":"x","duration_ms":1}]}`, 400, 200},
		{"a count", "POST", `{"phases":[{"name":"x","duration_ms":1000,"fault":{"kind":"hang","count":1}}]}`, 400, 200},
		{"zero duration", "POST", `{"phases":[{"name":"x","fault":{"kind":"hang"}}]}`, 400, 200},
		{"unknown kind", "POST", `{"phases":[{"name":"x","duration_ms":1000,"fault":{"kind":"meteor"}}]}`, 400, 200},
		{"unknown field", "POST", `{"phases":[{"name":"x","duration_ms":1000,"fualt":{}}]}`, 400, 200},
		{"PUT", "PUT", `{}`, 405, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := control(t, ts, tt.method, "/_standin/schedule", tt.body)
			if status != tt.wantStatus {
				t.Fatalf("status %d (%s), want %d", status, body, tt.wantStatus)
			}
			if tt.wantToken != 0 {
				if got := tokenStatus(t, ts, testID, testSecret); got != tt.wantToken {
					t.Errorf("token request: status %d, want %d", got, tt.wantToken)
				}
			}
		})
	}

	if err := s.SetSchedule(Schedule{Phases: []Phase{{Name: "limited", Duration: time.Minute, Fault: Fault{Kind: FaultRateLimit, RetryAfter: 30}}}}); err != nil {
		t.Fatal(err)
	}
	tokenStatus(t, ts, testID, testSecret)
	tokenStatus(t, ts, testID, testSecret) // inside the window, after the grace or not
	var sched ScheduleReport
	status, body := control(t, ts, "GET", "/_standin/schedule", "")
	if err := json.Unmarshal([]byte(body), &sched); status != 200 || err != nil || !sched.Running || len(sched.Phases) != 1 || sched.Phases[0].Clients[testID]["429"] != 2 {
		t.Errorf("GET schedule: %d %s (err %v); want the running phase with two 429s", status, body, err)
	}
	var clients clientsReport
	status, body = control(t, ts, "GET", "/_standin/clients", "")
	if err := json.Unmarshal([]byte(body), &clients); status != 200 || err != nil || clients.RetryAfterGraceMS != 250 || len(clients.Clients) != 1 ||
		clients.Clients[0].ClientID != testID || clients.Clients[0].RateLimitWindows != 2 || clients.Clients[0].Requests != 11 {
		t.Errorf("GET clients: %d %s (err %v); want %s with 11 requests and 2 windows, grace 250ms", status, body, err, testID)
	}
	var issued issuedReport
	status, body = control(t, ts, "GET", "/_standin/issued?client_id="+testID, "")
	if err := json.Unmarshal([]byte(body), &issued); status != 200 || err != nil || issued.ClientID != testID || len(issued.Tokens) != 7 {
		t.Errorf("GET issued: %d %s (err %v); want the 7 tokens issued to %s", status, body, err, testID)
	}
	for _, path := range []string{"/_standin/clients", "/_standin/issued"} {
		if status, _ := control(t, ts, "POST", path, "{}"); status != 405 {
			t.Errorf("POST %s: %d, want 405", path, status)
		}
	}
}

func TestSetClockSkewShiftsIatAndExpAndTheValidityCheck(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s, ts := newTest(t, Options{Now: func() time.Time { return now }, Lifetime: 600 * time.Second})
	s.SetClockSkew(2 * time.Minute)
	_, body := getToken(t, ts)
	tr := decodeReply(t, body)
	cl := parseJWT(t, tr.AccessToken)
	if cl.Iat != now.Unix()+120 || cl.Exp != now.Unix()+720 || tr.ExpiresIn != 600 {
		t.Errorf("iat %d, exp %d, expires_in %d; want iat and exp 120s ahead of the real clock, expires_in 600", cl.Iat-now.Unix(), cl.Exp-now.Unix(), tr.ExpiresIn)
	}
	now = now.Add(700 * time.Second) // 20s before exp on the real clock, 100s past it on Piwik PRO's
	if s.TokenValid(tr.AccessToken) {
		t.Errorf("a token past exp on the stand-in's clock is still valid")
	}
}

func TestFaultForSomeClientIDsLeavesTheOthersAlone(t *testing.T) {
	_, ts := newTest(t, Options{Credentials: []Credential{{ClientID: "other", ClientSecret: "other-secret"}}})
	if status, body := control(t, ts, "POST", "/_standin/fault", `{"kind":"unavailable","count":1,"client_ids":["`+testID+`"]}`); status != 204 {
		t.Fatalf("status %d: %s", status, body)
	}
	for _, tc := range []struct {
		id, secret string
		want       int
	}{{"other", "other-secret", 200}, {testID, testSecret, 503}, {testID, testSecret, 200}} {
		resp, err := post(t, nil, ts, "/auth/token", "application/json", jsonCreds("client_credentials", tc.id, tc.secret))
		mustReply(t, resp, err)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.id, resp.StatusCode, tc.want)
		}
	}
}
