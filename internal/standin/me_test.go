package standin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

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
