// Package standin is a stand-in for Piwik PRO's auth API, for the plugin's
// tests and local development; cmd/piwik-standin serves it. It issues
// JWT-shaped tokens from POST <base>/auth/token, answers GET
// <base>/api/users/v2/me for them, and can be told to misbehave (rate
// limits, proxy errors, dropped connections, malformed replies) so the
// plugin's client can be tested against every failure it must survive, at
// once (SetFault, FailNext) or, through the control endpoints under
// /_standin/, on a schedule of phases. It records, per client id, how many
// token requests were in flight at once, each 429 it sent and any request
// that arrived before its Retry-After had passed, and when each token was
// issued and expires (GET /_standin/clients and /_standin/issued), so that
// a test can check how a client paced itself.
//
// The replies follow Piwik PRO's public API documentation: the token
// request and reply, the error bodies of 400, 401, 402 and 429, and the
// JWT claims. Tokens are not RSA signed: the signature has the size of an
// RS256 one but is a keyed hash, so minting is cheap and only this server
// can verify its own tokens.
package standin

import (
	"crypto/rand"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// DefaultLifetime is the token lifetime Piwik PRO documents.
	DefaultLifetime = 30 * time.Minute

	// defaultOrg is the organisation name in the example tokens.
	defaultOrg = "default"

	// tokenSuffix and meSuffix end the paths the stand-in serves; anything
	// before them is taken as the base URL's path prefix.
	tokenSuffix = "/auth/token"
	meSuffix    = "/api/users/v2/me"

	// controlPrefix starts the endpoints that reconfigure a running stand-in.
	controlPrefix = "/_standin/"
)

// Credential is one Piwik PRO API credential the stand-in accepts.
type Credential struct {
	ClientID     string
	ClientSecret string
	// UserID is the JWT "sub"; default: a UUID-shaped string derived from
	// ClientID, so it is stable across restarts.
	UserID string
	// Email is the JWT "eml"; default "<client_id>@example.com".
	Email string
	// Name is the JWT "aud", the credential's name; default
	// "Client-Name-<client_id>".
	Name string
	// NoLicense makes every token request with this credential get the 402
	// "no active license" reply.
	NoLicense bool
}

// Options configure a Server. The zero value is usable: no credentials, a
// 30 minute lifetime, organisation "default", the real clock.
type Options struct {
	Credentials []Credential
	// Lifetime is the token lifetime (expires_in, and exp-iat in the JWT),
	// in whole seconds; default 30 minutes.
	Lifetime time.Duration
	// Org is the JWT "org" and the organisation named in 402 replies;
	// default "default".
	Org string
	// Now is the clock for iat, exp and TokenValid, schedules and the
	// per-client records; default time.Now.
	Now func() time.Time
	// RetryAfterGrace is how long after a 429 a request of the same client
	// id may arrive without counting as a violation of its Retry-After;
	// default DefaultRetryAfterGrace. See GET /_standin/clients.
	RetryAfterGrace time.Duration
}

// Server is the stand-in. It implements http.Handler and is safe for
// concurrent use; the setters take effect for the next request.
type Server struct {
	org string
	now func() time.Time
	key []byte // signs and verifies this server's tokens

	mu        sync.Mutex
	creds     map[string]Credential
	lifetime  time.Duration
	skew      time.Duration // how far the stand-in's token clock runs ahead
	fault     Fault         // for every request, set by SetFault
	next      Fault         // for the next nextCount requests, set by FailNext
	nextCount int
	sched     *runningSchedule // set by setSchedule

	clients *clientTracker

	tokenRequests atomic.Int64
	tokensIssued  atomic.Int64
	// requestsBy counts token requests per known client id, under mu, so
	// that a benchmark can tell the roles of one Vault apart.
	requestsBy map[string]int64

	closeOnce sync.Once
	closed    chan struct{} // closed by Close; releases hung and slow replies
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	grace := opts.RetryAfterGrace
	if grace <= 0 {
		grace = DefaultRetryAfterGrace
	}
	s := &Server{
		org:        opts.Org,
		now:        opts.Now,
		key:        make([]byte, 32),
		creds:      make(map[string]Credential),
		requestsBy: make(map[string]int64),
		clients:    newClientTracker(grace),
		closed:     make(chan struct{}),
	}
	if s.org == "" {
		s.org = defaultOrg
	}
	if s.now == nil {
		s.now = time.Now
	}
	// crypto/rand.Read never fails; it panics instead.
	_, _ = rand.Read(s.key)
	s.SetLifetime(opts.Lifetime)
	for _, c := range opts.Credentials {
		s.AddCredential(c)
	}
	return s
}

// ServeHTTP routes a request to the token endpoint, the /me endpoint or the
// control endpoints. The first two are found by their path's suffix, so a
// base URL may carry any path prefix; a path with an empty segment ("//") is
// not found, as a URL joined without care would have one.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, controlPrefix):
		s.serveControl(w, r)
	case strings.Contains(p, "//"):
		http.NotFound(w, r)
	case strings.HasSuffix(p, tokenSuffix):
		s.serveToken(w, r)
	case strings.HasSuffix(p, meSuffix):
		s.serveMe(w, r)
	default:
		http.NotFound(w, r)
	}
}

// AddCredential adds c, or replaces the credential with the same ClientID.
// Tokens already issued stay valid until they expire, as with Piwik PRO.
func (s *Server) AddCredential(c Credential) {
	c = withDefaults(c)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creds[c.ClientID] = c
}

// SetLifetime sets the lifetime of tokens issued from now on. It is used in
// whole seconds (at least one); d <= 0 restores the 30 minute default.
func (s *Server) SetLifetime(d time.Duration) {
	switch {
	case d <= 0:
		d = DefaultLifetime
	case d < time.Second:
		d = time.Second
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = d.Truncate(time.Second)
}

// SetClockSkew makes the clock the stand-in issues and checks tokens by run
// d ahead of the real one (behind for a negative d), as a Piwik PRO whose
// clock is off would: iat and exp of the tokens issued from now on are
// shifted by d, and so is the moment /me checks exp against.
func (s *Server) SetClockSkew(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.skew = d.Truncate(time.Second)
}

// tokenClock returns the time on the stand-in's token clock, and how far
// it runs ahead of the real one.
func (s *Server) tokenClock() (time.Time, time.Duration) {
	s.mu.Lock()
	skew := s.skew
	s.mu.Unlock()
	return s.now().Add(skew), skew
}

// SetFault makes every later /auth/token request get f; Fault{} clears it.
// Faults armed by FailNext, and a running schedule's, come first.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// FailNext makes the next n /auth/token requests get f, whatever their
// outcome would have been; after them the server is back to normal, or to
// the fault of the schedule or SetFault. It replaces any earlier FailNext;
// n <= 0 cancels.
func (s *Server) FailNext(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next, s.nextCount = f, max(n, 0)
}

// TokenRequests returns how many /auth/token requests the server received,
// whatever their outcome.
func (s *Server) TokenRequests() int64 {
	return s.tokenRequests.Load()
}

// TokenRequestsBy returns how many /auth/token requests named each client
// id the server knows (right secret or not), by client id.
func (s *Server) TokenRequestsBy() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.requestsBy)
}

// TokensIssued returns how many signed tokens the server minted for a 200
// reply (including replies a fault altered, such as short_jwt, but not
// bad_jwt, whose token is not one).
func (s *Server) TokensIssued() int64 {
	return s.tokensIssued.Load()
}

// TokenValid reports whether token was issued by this server, is intact and
// has not expired by the server's clock.
func (s *Server) TokenValid(token string) bool {
	_, ok := s.verify(token)
	return ok
}

// Close releases every reply that is waiting, so an http.Server or
// httptest.Server in front can shut down even while clients stay connected:
// a hung request has its connection dropped, slow and trickled replies are
// sent without further pauses. Later requests get the same treatment; all
// else is served as before.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
}

// nextFault picks the fault for one token request and counts FailNext
// down: FailNext's, else the fault of the phase run the request arrived in
// (sr, when a schedule runs), else SetFault's.
func (s *Server) nextFault(sr *scheduledRun, phase Fault, clientID string) Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.nextCount > 0 && s.next.appliesTo(clientID):
		s.nextCount--
		return s.next
	case sr != nil:
		return phase
	case s.fault.appliesTo(clientID):
		return s.fault
	}
	return Fault{}
}

// lookup returns the credential for clientID and the current lifetime, and
// counts a token request for clientID if it is known.
func (s *Server) lookup(clientID string) (Credential, bool, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.creds[clientID]
	if ok {
		s.requestsBy[clientID]++
	}
	return c, ok, s.lifetime
}

// currentLifetime returns the lifetime of tokens issued now.
func (s *Server) currentLifetime() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lifetime
}
