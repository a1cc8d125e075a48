package standin

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
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

func mustReply(t *testing.T, resp *http.Response, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	return readAll(t, resp)
}

// clientReport returns the record of clientID; a zero one when there is
// none yet.
func clientReport(s *Server, clientID string) ClientReport {
	for _, c := range s.clientReports() {
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
