package standin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

const (
	// maxBodyBytes caps how much of a token request is read.
	maxBodyBytes = 64 << 10

	// jsonUTF8 is the content type of Piwik PRO's token replies.
	jsonUTF8 = "application/json; charset=UTF-8"

	grantClientCredentials = "client_credentials"
)

// The OAuth error replies of the token endpoint, as Piwik PRO words them.
var (
	errUnsupportedGrant = oauthError{
		Error:       "unsupported_grant_type",
		Description: "The authorization grant type is not supported by the authorization server.",
		Hint:        "Check the `grant_type` parameter",
	}
	errMissingClientID = oauthError{
		Error:       "invalid_client",
		Description: "Client authentication failed",
		Hint:        "Check the `client_id` parameter",
	}
	errClientAuth = oauthError{
		Error:       "invalid_client",
		Description: "Client authentication failed",
	}
)

// tokenRequest holds the fields of a token request, from JSON or a form.
type tokenRequest struct {
	GrantType    string `json:"grant_type"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// tokenReply is the body of a successful token reply.
type tokenReply struct {
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	AccessToken string `json:"access_token"`
}

// oauthError is the body of an OAuth error reply; Message repeats
// Description, as Piwik PRO's replies do.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Hint        string `json:"hint,omitempty"`
	Message     string `json:"message"`
}

// reply is a complete reply, built before it is sent so that a fault can
// choose how to send it.
type reply struct {
	status      int
	contentType string
	body        []byte
	location    string // a Location header, when set
	// exp is the exp claim of the token the reply carries, 0 for none.
	exp int64
}

// writeHeader sends the status line and headers of rp.
func (rp reply) writeHeader(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", rp.contentType)
	h.Set("Content-Length", strconv.Itoa(len(rp.body)))
	if rp.location != "" {
		h.Set("Location", rp.location)
	}
	w.WriteHeader(rp.status)
}

// write sends rp at once.
func (rp reply) write(w http.ResponseWriter) {
	_ = rp.send(w)
}

// send sends rp at once and reports whether the body could not be written.
func (rp reply) send(w http.ResponseWriter) error {
	rp.writeHeader(w)
	_, err := w.Write(rp.body)
	return err
}

// jsonReply encodes v as the body of a JSON reply.
func jsonReply(status int, contentType string, v any) reply {
	body, err := json.Marshal(v)
	if err != nil {
		// Every value passed here holds only strings and numbers.
		panic(fmt.Sprintf("standin: encode reply: %v", err))
	}
	return reply{status: status, contentType: contentType, body: body}
}

// jsonBytesReply is a token-endpoint JSON reply with a ready body.
func jsonBytesReply(status int, body []byte) reply {
	return reply{status: status, contentType: jsonUTF8, body: body}
}

// textReply is a plain text reply.
func textReply(status int, text string) reply {
	return reply{status: status, contentType: "text/plain; charset=utf-8", body: []byte(text)}
}

// methodNotAllowed replies 405, naming the one method allowed.
func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	textReply(http.StatusMethodNotAllowed, "Method Not Allowed").write(w)
}

// errorReply is an OAuth error reply.
func errorReply(status int, e oauthError) reply {
	e.Message = e.Description
	return jsonReply(status, "application/json", e)
}

// invalidRequest is the 400 reply to a body that cannot be read or parsed;
// the hint says what was wrong.
func invalidRequest(hint string) reply {
	return errorReply(http.StatusBadRequest, oauthError{
		Error: "invalid_request",
		Description: "The request is missing a required parameter, includes an invalid " +
			"parameter value, includes a parameter more than once, or is otherwise malformed.",
		Hint: hint,
	})
}

// noLicenseReply is the 402 reply for an organisation without a license.
func (s *Server) noLicenseReply() reply {
	return jsonReply(http.StatusPaymentRequired, "application/json", struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{
		Code:    http.StatusPaymentRequired,
		Message: fmt.Sprintf("There is no active license for %q organization", s.org),
	})
}

// serveToken serves POST <prefix>/auth/token: it reads the body, applies the
// fault for this request, then checks the request and issues a token. Each
// request is recorded under its client id (see ClientReports) and, while a
// schedule runs, under the phase it arrived in.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	arrived := s.now()
	s.tokenRequests.Add(1)
	if r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodPost)
		return
	}
	// The body is read first, also for faults that ignore it: net/http only
	// notices a client hanging up once the body has been read.
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	req, _ := parseTokenRequest(r.Header.Get("Content-Type"), body, readErr)
	run, phaseFault, revoked := s.phaseAt(arrived, req.ClientID)
	tr := s.clients.arrive(req.ClientID, arrived)
	tw := &trackedWriter{ResponseWriter: w, tr: tr}
	dropped := false
	defer func() {
		outcome := tw.outcome(r, dropped)
		tr.done(outcome)
		s.countInPhase(run, req.ClientID, outcome)
	}()

	f := s.nextFault(run, phaseFault, req.ClientID)
	switch f.Kind {
	case FaultSlow:
		if !s.pause(r.Context(), f.delay()) {
			return
		}
	case FaultRateLimit:
		tr.rateLimited(s.now(), time.Duration(f.retryAfter())*time.Second)
	case FaultCloseConnection:
		tr.replying()
		dropped = true
	case FaultHang:
		tr.hang()
	}
	if s.serveFault(tw, r, f, s.currentLifetime(), body) {
		return
	}
	rp := s.tokenReply(r.Header.Get("Content-Type"), body, readErr, f.Kind, revoked)
	complete := false
	if f.Kind == FaultTrickle {
		complete = s.trickle(tw, r, rp, f.delay())
	} else {
		complete = rp.send(tw) == nil
	}
	if complete && rp.exp != 0 {
		_, skew := s.tokenClock()
		tr.issued(s.now(), time.Unix(rp.exp, 0).Add(-skew))
	}
}

// tokenReply checks a token request and returns the reply to it: an error,
// or a token altered by fault kind k. A revoked credential is refused as an
// unknown one.
func (s *Server) tokenReply(contentType string, body []byte, readErr error, k FaultKind, revoked bool) reply {
	req, hint := parseTokenRequest(contentType, body, readErr)
	switch {
	case hint != "":
		return invalidRequest(hint)
	case req.GrantType != grantClientCredentials:
		return errorReply(http.StatusBadRequest, errUnsupportedGrant)
	case req.ClientID == "":
		return errorReply(http.StatusBadRequest, errMissingClientID)
	}
	c, lifetime, ok := s.authenticate(req.ClientID, req.ClientSecret)
	switch {
	case !ok || revoked:
		return errorReply(http.StatusUnauthorized, errClientAuth)
	case c.NoLicense:
		return s.noLicenseReply()
	}
	return s.issue(c, lifetime, k)
}

// parseTokenRequest decodes a JSON or form token request. On failure it
// returns a hint for the client saying what was wrong.
func parseTokenRequest(contentType string, body []byte, readErr error) (tokenRequest, string) {
	var req tokenRequest
	if readErr != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](readErr); ok {
			return req, fmt.Sprintf("The request body is larger than %d bytes", maxBodyBytes)
		}
		return req, "The request body could not be read"
	}
	mediaType, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mediaType = ""
	}
	switch mediaType {
	case "application/json":
		if json.Unmarshal(body, &req) != nil {
			return req, "The request body is not a valid JSON object"
		}
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return req, "The request body is not a valid form"
		}
		req.GrantType = form.Get("grant_type")
		req.ClientID = form.Get("client_id")
		req.ClientSecret = form.Get("client_secret")
	default:
		return req, "Send the request as application/json or application/x-www-form-urlencoded"
	}
	return req, ""
}

// authenticate checks a client id and secret in constant time, also when the
// id is unknown, and returns the credential and the current lifetime.
func (s *Server) authenticate(clientID, secret string) (Credential, time.Duration, bool) {
	c, known, lifetime := s.lookup(clientID)
	want := c.ClientSecret
	if !known {
		want = "\x00unknown client\x00"
	}
	match := subtle.ConstantTimeCompare([]byte(secret), []byte(want)) == 1
	return c, lifetime, known && match
}

// issue mints a token for c and returns the 200 reply carrying it, altered
// by fault kind k where k is one of the reply-shaping faults.
func (s *Server) issue(c Credential, lifetime time.Duration, k FaultKind) reply {
	issuedAt, _ := s.tokenClock()
	cl := s.newClaims(c, issuedAt, lifetime)
	out := tokenReply{TokenType: "Bearer", ExpiresIn: seconds(lifetime)}
	switch k {
	case FaultZeroExpiry:
		out.ExpiresIn = 0
	case FaultNegativeExpiry:
		out.ExpiresIn = -5
	case FaultAbsurdExpiry:
		out.ExpiresIn = absurdSeconds
		cl.Exp = cl.Iat + absurdSeconds
	case FaultWrongTokenType:
		out.TokenType = "MAC"
	case FaultExpiredJWT:
		cl.Exp = cl.Iat - 60
		cl.Iat = cl.Exp - seconds(lifetime)
	case FaultShortJWT:
		cl.Exp = cl.Iat + shortSeconds
	}
	if k == FaultBadJWT {
		out.AccessToken = "not-a-jwt"
		return jsonReply(http.StatusOK, jsonUTF8, out)
	}
	out.AccessToken = s.mint(cl)
	s.tokensIssued.Add(1)
	rp := jsonReply(http.StatusOK, jsonUTF8, out)
	rp.exp = cl.Exp
	return rp
}

// seconds returns d in whole seconds.
func seconds(d time.Duration) int64 {
	return int64(d / time.Second)
}
