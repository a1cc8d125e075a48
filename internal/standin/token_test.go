package standin

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

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
