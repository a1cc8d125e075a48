package standin

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

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
