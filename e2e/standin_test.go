package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// standin is a running Piwik PRO stand-in with one API credential.
type standin struct {
	url          string // base URL, http://127.0.0.1:PORT
	clientID     string
	clientSecret string
	proc         *process
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// startStandin starts a stand-in with a fresh credential; keep decides how
// long it lives (t.Cleanup or atSuiteEnd). Its files go in dir.
func startStandin(t *testing.T, dir, name string, keep func(func())) *standin {
	t.Helper()
	s := &standin{
		clientID:     name + "-client",
		clientSecret: randomString(t, 32),
	}
	rememberSecret(t, "client secret of stand-in "+name, s.clientSecret)

	addrFile := filepath.Join(dir, name+".addr")
	p, err := startProcess("stand-in "+name, filepath.Join(dir, name+".log"), dir,
		[]string{"PIWIK_STANDIN_CLIENT_SECRET=" + s.clientSecret},
		suite.standinBin, "-listen", "127.0.0.1:0", "-client-id", s.clientID, "-addr-file", addrFile)
	if err != nil {
		t.Fatal(err)
	}
	keep(p.stop)
	s.proc = p

	err = waitFor(30*time.Second, 50*time.Millisecond, p, func() (bool, error) {
		data, err := os.ReadFile(addrFile)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			return false, nil
		}
		s.url = strings.TrimSpace(string(data))
		return true, nil
	})
	if err != nil {
		t.Fatal(p.failure("no address in " + addrFile + ": " + err.Error()))
	}
	return s
}

// control posts body to one of the stand-in's /_standin/ endpoints.
func (s *standin) control(t *testing.T, endpoint string, body any) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Post(s.url+"/_standin/"+endpoint, "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatalf("stand-in %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		t.Fatalf("stand-in %s: %s: %s", endpoint, resp.Status, redact(string(reply)))
	}
}

// setLifetime makes the stand-in issue tokens valid for seconds.
func (s *standin) setLifetime(t *testing.T, seconds int) {
	t.Helper()
	s.control(t, "lifetime", map[string]int{"seconds": seconds})
}

// me calls GET /api/users/v2/me with token and returns the status code.
func (s *standin) me(t *testing.T, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.url+"/api/users/v2/me", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("GET /api/users/v2/me: %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// requireTokenWorks fails t unless the stand-in accepts token.
func (s *standin) requireTokenWorks(t *testing.T, what, token string) {
	t.Helper()
	if code := s.me(t, token); code != http.StatusOK {
		t.Fatalf("%s: GET /api/users/v2/me answered %d, want 200", what, code)
	}
}

// tokenResponse is the stand-in's (and Piwik PRO's) /auth/token answer.
type tokenResponse struct {
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	AccessToken string `json:"access_token"`
}

// mintDirectly asks the stand-in for a token without Vault, to learn what
// the stand-in currently issues.
func (s *standin) mintDirectly(t *testing.T) tokenResponse {
	t.Helper()
	body, _ := json.Marshal(map[string]string{
		"grant_type":    "client_credentials",
		"client_id":     s.clientID,
		"client_secret": s.clientSecret,
	})
	resp, err := httpClient.Post(s.url+"/auth/token", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /auth/token: %v", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /auth/token: %s", resp.Status)
	}
	var tr tokenResponse
	if err := json.Unmarshal(data, &tr); err != nil {
		t.Fatalf("POST /auth/token: decode answer: %v", err)
	}
	rememberSecret(t, "access token minted directly by "+t.Name(), tr.AccessToken)
	return tr
}

// jwtExpiry returns the exp claim of a JWT, read without verifying it.
func jwtExpiry(t *testing.T, token string) time.Time {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a JWT (%d parts)", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == 0 {
		t.Fatalf("JWT payload has no exp claim (err %v)", err)
	}
	return time.Unix(claims.Exp, 0)
}

// randomString returns n random URL-safe characters.
func randomString(t *testing.T, n int) string {
	t.Helper()
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%.*s", n, base64.RawURLEncoding.EncodeToString(buf))
}

// standinCounters is the stand-in's GET /_standin/stats.
type standinCounters struct {
	TokenRequests int64 `json:"token_requests"`
	TokensIssued  int64 `json:"tokens_issued"`
}

// stats reads the stand-in's counters.
func (s *standin) stats(t *testing.T) standinCounters {
	t.Helper()
	resp, err := httpClient.Get(s.url + "/_standin/stats")
	if err != nil {
		t.Fatalf("stand-in stats: %v", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stand-in stats: %s", resp.Status)
	}
	var c standinCounters
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("stand-in stats: %v", err)
	}
	return c
}
