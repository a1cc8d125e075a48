package standin

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

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

func TestFaultKindValid(t *testing.T) {
	for _, k := range append([]FaultKind{FaultNone}, faultKinds...) {
		if !k.valid() {
			t.Errorf("%q.valid() = false", k)
		}
	}
	if FaultKind("Rate_Limit").valid() {
		t.Error(`"Rate_Limit".valid() = true`)
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
