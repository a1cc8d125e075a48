package standin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"time"
)

// The control endpoints, under /_standin/, let a test in another process
// reconfigure a running stand-in (POST fault, lifetime, credentials,
// schedule, clock) and read what it recorded (GET stats, schedule, clients,
// issued). The POSTs take JSON bodies (whatever the Content-Type, so that a
// bare curl -d works) and reject unknown fields.
const (
	controlFault       = controlPrefix + "fault"
	controlLifetime    = controlPrefix + "lifetime"
	controlCredentials = controlPrefix + "credentials"
	controlStats       = controlPrefix + "stats"
	controlSchedule    = controlPrefix + "schedule"
	controlClients     = controlPrefix + "clients"
	controlIssued      = controlPrefix + "issued"
	controlClock       = controlPrefix + "clock"
)

// faultRequest is the body of POST /_standin/fault. Count > 0 arms the fault
// for that many requests (FailNext), otherwise for all (SetFault).
type faultRequest struct {
	Kind       FaultKind `json:"kind"`
	RetryAfter int       `json:"retry_after"`
	DelayMS    int       `json:"delay_ms"`
	Count      int       `json:"count"`
	Status     int       `json:"status"`
	Location   string    `json:"location"`
	Echo       string    `json:"echo"`
	ClientIDs  []string  `json:"client_ids"`
}

// scheduleRequest is the body of POST /_standin/schedule: the phases of a
// faultSchedule, or "stop" to end the one that runs.
type scheduleRequest struct {
	Phases []phaseRequest `json:"phases"`
	Repeat bool           `json:"repeat"`
	Stop   bool           `json:"stop"`
}

// phaseRequest is one schedulePhase of a scheduleRequest; its fault has
// no count.
type phaseRequest struct {
	Name       string       `json:"name"`
	DurationMS int          `json:"duration_ms"`
	Fault      faultRequest `json:"fault"`
	Revoke     []string     `json:"revoke"`
}

// clockRequest is the body of POST /_standin/clock.
type clockRequest struct {
	SkewSeconds int `json:"skew_seconds"`
}

// lifetimeRequest is the body of POST /_standin/lifetime.
type lifetimeRequest struct {
	Seconds int `json:"seconds"`
}

// credentialJSON is a credential as POST /_standin/credentials and the
// command's -extra-credentials file give it.
type credentialJSON struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	UserID       string `json:"user_id"`
	Email        string `json:"email"`
	Name         string `json:"name"`
	NoLicense    bool   `json:"no_license"`
}

// Stats is the body of GET /_standin/stats.
type Stats struct {
	TokenRequests int64 `json:"token_requests"`
	TokensIssued  int64 `json:"tokens_issued"`
	// TokenRequestsBy counts token requests per known client id.
	TokenRequestsBy map[string]int64 `json:"token_requests_by_client"`
}

// serveControl serves the /_standin/ endpoints. A POST replies 204 when it
// succeeds and 400 with {"error": "..."} when its body is wrong.
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	if report := s.controlReport(r); report != nil {
		if r.Method != http.MethodGet {
			allow := http.MethodGet
			if r.URL.Path == controlSchedule {
				allow = "GET, POST"
			}
			methodNotAllowed(w, allow)
			return
		}
		jsonReply(http.StatusOK, "application/json", report()).write(w)
		return
	}
	update := s.controlUpdate(r.URL.Path)
	switch {
	case update == nil:
		http.NotFound(w, r)
	case r.Method != http.MethodPost:
		methodNotAllowed(w, http.MethodPost)
	default:
		if err := update(r); err != nil {
			jsonReply(http.StatusBadRequest, "application/json", map[string]string{"error": err.Error()}).write(w)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// controlUpdate returns the handler of a POST control path, or nil.
func (s *Server) controlUpdate(path string) func(*http.Request) error {
	switch path {
	case controlFault:
		return s.controlFault
	case controlLifetime:
		return s.controlLifetime
	case controlCredentials:
		return s.controlCredentials
	case controlSchedule:
		return s.controlSchedule
	case controlClock:
		return s.controlClock
	}
	return nil
}

// controlReport returns the function that computes the body of a GET
// control path (stats, schedule, clients, issued), or nil for the others.
// POST /_standin/schedule is an update, not a report.
func (s *Server) controlReport(r *http.Request) func() any {
	switch r.URL.Path {
	case controlStats:
		return func() any {
			return Stats{TokenRequests: s.TokenRequests(), TokensIssued: s.TokensIssued(), TokenRequestsBy: s.TokenRequestsBy()}
		}
	case controlSchedule:
		if r.Method == http.MethodPost {
			return nil
		}
		return func() any { return s.scheduleReport() }
	case controlClients:
		return func() any {
			return ClientsReport{RetryAfterGraceMS: s.retryAfterGrace().Milliseconds(), Clients: s.clientReports()}
		}
	case controlIssued:
		id := r.URL.Query().Get("client_id")
		return func() any { return issuedReport{ClientID: id, Tokens: s.issued(id)} }
	}
	return nil
}

// ClientsReport is the body of GET /_standin/clients.
type ClientsReport struct {
	RetryAfterGraceMS int64          `json:"retry_after_grace_ms"`
	Clients           []ClientReport `json:"clients"`
}

// ByID returns the record of clientID, a zero one when it sent no token
// request.
func (r ClientsReport) ByID(clientID string) ClientReport {
	for _, c := range r.Clients {
		if c.ClientID == clientID {
			return c
		}
	}
	return ClientReport{ClientID: clientID, Outcomes: OutcomeCounts{}}
}

// issuedReport is the body of GET /_standin/issued?client_id=...
type issuedReport struct {
	ClientID string        `json:"client_id"`
	Tokens   []IssuedToken `json:"tokens"`
}

// fault checks a fault request and converts it.
func (req faultRequest) fault() (Fault, error) {
	switch {
	case !req.Kind.valid():
		return Fault{}, fmt.Errorf("unknown fault kind %q", req.Kind)
	case req.RetryAfter < 0 || req.DelayMS < 0 || req.Count < 0:
		return Fault{}, errors.New("retry_after, delay_ms and count must not be negative")
	case req.Status != 0 && (req.Status < 300 || req.Status > 399):
		return Fault{}, fmt.Errorf("status %d is not a redirect", req.Status)
	case req.Echo != "" && !slices.Contains(echoModes, req.Echo):
		return Fault{}, fmt.Errorf("unknown echo mode %q", req.Echo)
	}
	return Fault{
		Kind:       req.Kind,
		RetryAfter: req.RetryAfter,
		Delay:      time.Duration(req.DelayMS) * time.Millisecond,
		Status:     req.Status,
		Location:   req.Location,
		Echo:       req.Echo,
		ClientIDs:  req.ClientIDs,
	}, nil
}

// controlFault serves POST /_standin/fault.
func (s *Server) controlFault(r *http.Request) error {
	var req faultRequest
	if err := decodeStrict(r.Body, &req); err != nil {
		return err
	}
	f, err := req.fault()
	if err != nil {
		return err
	}
	switch {
	case req.Count > 0:
		s.FailNext(req.Count, f)
	case f.Kind == FaultNone:
		// {"kind":""} clears everything: the persistent fault and any
		// counted ones still armed.
		s.FailNext(0, Fault{})
		s.SetFault(Fault{})
	default:
		s.SetFault(f)
	}
	return nil
}

// errNoPhases is what a schedule request without phases and without
// "stop" gets: an empty list is more likely a mistake than a wish to stop.
var errNoPhases = errors.New(`phases: at least one phase, or "stop": true`)

// controlSchedule serves POST /_standin/schedule.
func (s *Server) controlSchedule(r *http.Request) error {
	var req scheduleRequest
	if err := decodeStrict(r.Body, &req); err != nil {
		return err
	}
	switch {
	case req.Stop && len(req.Phases) > 0:
		return errors.New(`"stop" and "phases" exclude each other`)
	case req.Stop:
		return s.setSchedule(faultSchedule{})
	case len(req.Phases) == 0:
		return errNoPhases
	}
	sc := faultSchedule{Repeat: req.Repeat}
	for i, p := range req.Phases {
		if p.Fault.Count != 0 {
			return fmt.Errorf("phase %d (%q): a phase's fault has no count", i, p.Name)
		}
		f, err := p.Fault.fault()
		if err != nil {
			return fmt.Errorf("phase %d (%q): %w", i, p.Name, err)
		}
		sc.Phases = append(sc.Phases, schedulePhase{Name: p.Name, Duration: time.Duration(p.DurationMS) * time.Millisecond, Fault: f, Revoked: p.Revoke})
	}
	return s.setSchedule(sc)
}

// controlLifetime serves POST /_standin/lifetime.
func (s *Server) controlLifetime(r *http.Request) error {
	var req lifetimeRequest
	if err := decodeStrict(r.Body, &req); err != nil {
		return err
	}
	if req.Seconds <= 0 {
		return errors.New("seconds must be positive")
	}
	s.SetLifetime(time.Duration(req.Seconds) * time.Second)
	return nil
}

// controlClock serves POST /_standin/clock.
func (s *Server) controlClock(r *http.Request) error {
	var req clockRequest
	if err := decodeStrict(r.Body, &req); err != nil {
		return err
	}
	s.SetClockSkew(time.Duration(req.SkewSeconds) * time.Second)
	return nil
}

// controlCredentials serves POST /_standin/credentials.
func (s *Server) controlCredentials(r *http.Request) error {
	var req credentialJSON
	if err := decodeStrict(r.Body, &req); err != nil {
		return err
	}
	c, err := req.credential()
	if err != nil {
		return err
	}
	s.AddCredential(c)
	return nil
}

// credential checks cj and converts it.
func (cj credentialJSON) credential() (Credential, error) {
	if cj.ClientID == "" || cj.ClientSecret == "" {
		return Credential{}, errors.New("client_id and client_secret are required")
	}
	return Credential(cj), nil
}

// decodeStrict decodes one JSON value from at most 64 KiB of body into v,
// rejecting unknown fields and trailing data.
func decodeStrict(body io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(body, maxBodyBytes+1))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if len(data) > maxBodyBytes {
		return fmt.Errorf("body larger than %d bytes", maxBodyBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode body: %w", err)
	}
	if dec.More() {
		return errors.New("decode body: trailing data after the JSON value")
	}
	return nil
}

// LoadCredentials reads credentials from a JSON file holding an array of
// {"client_id", "client_secret"} objects; "user_id", "email", "name" and
// "no_license" are optional.
func LoadCredentials(path string) ([]Credential, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	var list []credentialJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf("decode credentials %s: %w", path, err)
	}
	creds := make([]Credential, 0, len(list))
	for i, cj := range list {
		c, err := cj.credential()
		if err != nil {
			return nil, fmt.Errorf("credential %d in %s: %w", i, path, err)
		}
		creds = append(creds, c)
	}
	return creds, nil
}
