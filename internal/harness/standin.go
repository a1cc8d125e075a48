package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

// Standin is a Piwik PRO stand-in (cmd/piwik-standin) with one API
// credential, and a client of its endpoints. A Standin with only URL set
// talks to a stand-in started elsewhere.
type Standin struct {
	URL          string // base URL, http://127.0.0.1:PORT
	ClientID     string
	ClientSecret string
	Proc         *Process
}

// StandinSpec is a stand-in to start.
type StandinSpec struct {
	Dir, Name string
	ClientID  string // default <Name>-client
	// Quiet leaves out the log line per request (the benchmark's
	// thousands of token requests a second).
	Quiet bool
}

// standinHTTP is the client of the stand-in's endpoints.
var standinHTTP = &http.Client{Timeout: 10 * time.Second}

// StartStandin starts a stand-in on a free loopback port with a fresh
// credential, whose secret goes to it through the environment (out of ps).
// Its log is <Name>.log in s.Dir.
func (l *Lab) StartStandin(s StandinSpec) (*Standin, error) {
	st := &Standin{ClientID: s.ClientID, ClientSecret: RandomString(32)}
	if st.ClientID == "" {
		st.ClientID = s.Name + "-client"
	}
	l.remember("client secret of stand-in "+s.Name, st.ClientSecret)
	addrFile := filepath.Join(s.Dir, s.Name+".addr")
	args := []string{"-listen", "127.0.0.1:0", "-client-id", st.ClientID, "-addr-file", addrFile}
	if s.Quiet {
		args = append(args, "-quiet")
	}
	logPath := filepath.Join(s.Dir, s.Name+".log")
	l.logf("starting the Piwik PRO stand-in %s (log: %s)", s.Name, logPath)
	p, err := l.Start(Spec{
		Name: "stand-in " + s.Name, Bin: l.StandinBin, Args: args, Dir: s.Dir, LogPath: logPath,
		Env: []string{"PIWIK_STANDIN_CLIENT_SECRET=" + st.ClientSecret},
	})
	if err != nil {
		return nil, err
	}
	st.Proc = p
	err = WaitFor(30*time.Second, 50*time.Millisecond, p, func() (bool, error) {
		data, err := os.ReadFile(addrFile)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			return false, nil
		}
		st.URL = strings.TrimSpace(string(data))
		return true, nil
	})
	if err != nil {
		p.Stop()
		return nil, p.Failure("no address in " + addrFile + ": " + err.Error())
	}
	return st, nil
}

// Control posts body, as JSON, to the control endpoint /_standin/<name>.
func (s *Standin) Control(name string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	resp, err := standinHTTP.Post(s.URL+"/_standin/"+name, "application/json", bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("stand-in %s: %w", name, err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("stand-in %s: %s: %s", name, resp.Status, reply)
	}
	return nil
}

// GetJSON decodes the JSON answer of GET path on the stand-in into out.
func (s *Standin) GetJSON(path string, out any) error {
	resp, err := standinHTTP.Get(s.URL + path)
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

// SetLifetime makes the stand-in issue tokens valid for d, in whole
// seconds.
func (s *Standin) SetLifetime(d time.Duration) error {
	return s.Control("lifetime", map[string]int{"seconds": int(d / time.Second)})
}

// AddCredential makes the stand-in accept another credential.
func (s *Standin) AddCredential(clientID, secret string) error {
	return s.Control("credentials", map[string]string{"client_id": clientID, "client_secret": secret})
}

// Phase is one phase of a fault schedule, as POST /_standin/schedule takes
// it.
type Phase struct {
	Name       string         `json:"name"`
	DurationMS int64          `json:"duration_ms"`
	Fault      map[string]any `json:"fault,omitempty"`
	Revoke     []string       `json:"revoke,omitempty"`
}

// Schedule starts a fault schedule on the stand-in.
func (s *Standin) Schedule(phases []Phase, repeat bool) error {
	return s.Control("schedule", map[string]any{"phases": phases, "repeat": repeat})
}

// Stats reads the stand-in's counters.
func (s *Standin) Stats() (standin.Stats, error) {
	var st standin.Stats
	err := s.GetJSON("/_standin/stats", &st)
	return st, err
}

// Clients reads the stand-in's records of every client id.
func (s *Standin) Clients() (standin.ClientsReport, error) {
	var c standin.ClientsReport
	err := s.GetJSON("/_standin/clients", &c)
	return c, err
}

// ScheduleReport reads the stand-in's phase runs so far.
func (s *Standin) ScheduleReport() (standin.ScheduleReport, error) {
	var r standin.ScheduleReport
	err := s.GetJSON("/_standin/schedule", &r)
	return r, err
}

// Issued reads when the stand-in sent each token to clientID.
func (s *Standin) Issued(clientID string) ([]standin.IssuedToken, error) {
	var r struct {
		Tokens []standin.IssuedToken `json:"tokens"`
	}
	err := s.GetJSON("/_standin/issued?client_id="+url.QueryEscape(clientID), &r)
	return r.Tokens, err
}

// Me calls GET /api/users/v2/me with token and returns the status code.
func (s *Standin) Me(token string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, s.URL+"/api/users/v2/me", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := standinHTTP.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET /api/users/v2/me: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// TokenResponse is the stand-in's (and Piwik PRO's) /auth/token answer.
type TokenResponse struct {
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	AccessToken string `json:"access_token"`
}

// Mint asks the stand-in for a token with s's credential, without Vault.
func (s *Standin) Mint() (TokenResponse, error) {
	var tr TokenResponse
	body, _ := json.Marshal(map[string]string{
		"grant_type":    "client_credentials",
		"client_id":     s.ClientID,
		"client_secret": s.ClientSecret,
	})
	resp, err := standinHTTP.Post(s.URL+"/auth/token", "application/json", bytes.NewReader(body))
	if err != nil {
		return tr, fmt.Errorf("POST /auth/token: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return tr, fmt.Errorf("POST /auth/token: %s", resp.Status)
	}
	if err := json.Unmarshal(data, &tr); err != nil {
		return tr, fmt.Errorf("POST /auth/token: decode answer: %w", err)
	}
	return tr, nil
}
