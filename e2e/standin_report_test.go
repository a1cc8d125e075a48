package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// What the stand-in records per client id and per phase of a fault
// schedule (GET /_standin/clients, /_standin/schedule, /_standin/issued).

// standinClient is the stand-in's record of one client id.
type standinClient struct {
	ClientID         string           `json:"client_id"`
	Requests         int64            `json:"requests"`
	Outcomes         map[string]int64 `json:"outcomes"`
	InFlight         int              `json:"in_flight"`
	PeakInFlight     int              `json:"peak_in_flight"`
	PeakAnswered     int              `json:"peak_in_flight_answered"`
	PeakAt           time.Time        `json:"peak_at"`
	RateLimitWindows int64            `json:"rate_limit_windows"`
	RequestsInGrace  int64            `json:"requests_in_grace"`
	MaxInGrace       int              `json:"max_in_grace"`
	MaxGraceDelayMS  float64          `json:"max_grace_delay_ms"`
	Violations       int64            `json:"violations"`
	ViolationList    []struct {
		At          time.Time `json:"at"`
		WindowStart time.Time `json:"window_start"`
		WindowEnd   time.Time `json:"window_end"`
	} `json:"violation_list"`
	TokensIssued int64 `json:"tokens_issued"`
}

// standinClients is GET /_standin/clients.
type standinClients struct {
	RetryAfterGraceMS int64           `json:"retry_after_grace_ms"`
	Clients           []standinClient `json:"clients"`
}

// byID returns the record of clientID, a zero one when there is none.
func (c standinClients) byID(clientID string) standinClient {
	for _, r := range c.Clients {
		if r.ClientID == clientID {
			return r
		}
	}
	return standinClient{ClientID: clientID, Outcomes: map[string]int64{}}
}

// phaseSpec is one phase of a fault schedule, as POST /_standin/schedule
// takes it.
type phaseSpec struct {
	Name       string         `json:"name"`
	DurationMS int64          `json:"duration_ms"`
	Fault      map[string]any `json:"fault,omitempty"`
	Revoke     []string       `json:"revoke,omitempty"`
}

// phaseRun is one run of a phase, as GET /_standin/schedule reports it.
type phaseRun struct {
	Cycle   int                         `json:"cycle"`
	Index   int                         `json:"index"`
	Name    string                      `json:"name"`
	Start   time.Time                   `json:"start"`
	End     time.Time                   `json:"end"`
	Clients map[string]map[string]int64 `json:"clients"`
}

// requests returns how many token requests clientID sent in the run.
func (p phaseRun) requests(clientID string) int64 {
	var n int64
	for _, c := range p.Clients[clientID] {
		n += c
	}
	return n
}

// scheduleReport is GET /_standin/schedule.
type scheduleReport struct {
	Running bool       `json:"running"`
	Start   time.Time  `json:"start"`
	Repeat  bool       `json:"repeat"`
	Phases  []phaseRun `json:"phases"`
}

// issuedToken is when the stand-in sent a token and when it expires.
type issuedToken struct {
	At  time.Time `json:"at"`
	Exp time.Time `json:"exp"`
}

// schedule starts a fault schedule on the stand-in.
func (s *standin) schedule(t *testing.T, phases []phaseSpec, repeat bool) {
	t.Helper()
	s.control(t, "schedule", map[string]any{"phases": phases, "repeat": repeat})
}

// getJSON decodes the JSON answer of GET path on the stand-in into out. It
// returns errors instead of failing a test, for goroutines that sample.
func (s *standin) getJSON(path string, out any) error {
	resp, err := httpClient.Get(s.url + path)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// clients reads the stand-in's records of every client id.
func (s *standin) clients(t *testing.T) standinClients {
	t.Helper()
	var c standinClients
	if err := s.getJSON("/_standin/clients", &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// scheduleReport reads the stand-in's phase runs so far.
func (s *standin) scheduleReport(t *testing.T) scheduleReport {
	t.Helper()
	var r scheduleReport
	if err := s.getJSON("/_standin/schedule", &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// issued reads when the stand-in sent each token to clientID.
func (s *standin) issued(t *testing.T, clientID string) []issuedToken {
	t.Helper()
	var r struct {
		Tokens []issuedToken `json:"tokens"`
	}
	if err := s.getJSON("/_standin/issued?client_id="+url.QueryEscape(clientID), &r); err != nil {
		t.Fatal(err)
	}
	return r.Tokens
}

// addCredential makes the stand-in accept another credential, with a fresh
// secret it returns (and remembers for the log scan).
func (s *standin) addCredential(t *testing.T, clientID string) string {
	t.Helper()
	secret := randomString(t, 32)
	rememberSecret(t, "client secret of "+clientID, secret)
	s.control(t, "credentials", map[string]string{"client_id": clientID, "client_secret": secret})
	return secret
}
