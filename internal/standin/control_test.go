package standin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

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

	if err := s.setSchedule(faultSchedule{Phases: []schedulePhase{{Name: "limited", Duration: time.Minute, Fault: Fault{Kind: FaultRateLimit, RetryAfter: 30}}}}); err != nil {
		t.Fatal(err)
	}
	tokenStatus(t, ts, testID, testSecret)
	tokenStatus(t, ts, testID, testSecret) // inside the window, after the grace or not
	var sched ScheduleReport
	status, body := control(t, ts, "GET", "/_standin/schedule", "")
	if err := json.Unmarshal([]byte(body), &sched); status != 200 || err != nil || !sched.Running || len(sched.Phases) != 1 || sched.Phases[0].Clients[testID]["429"] != 2 {
		t.Errorf("GET schedule: %d %s (err %v); want the running phase with two 429s", status, body, err)
	}
	var clients ClientsReport
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

func TestControlClockSkew(t *testing.T) {
	s, ts := newTest(t, Options{})
	if status, body := control(t, ts, "POST", "/_standin/clock", `{"skew_seconds":120}`); status != 204 {
		t.Fatalf("status %d: %s", status, body)
	}
	if _, skew := s.tokenClock(); skew != 2*time.Minute {
		t.Errorf("skew %s, want 2m", skew)
	}
}
