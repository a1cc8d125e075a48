package standin

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

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
