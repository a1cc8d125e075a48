package standin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FaultKind names a way the token endpoint misbehaves. The values are
// snake_case because the control endpoint takes them over HTTP.
type FaultKind string

// The faults the token endpoint can be given. Each is applied after the
// request body is read and before the credentials are checked; the ones that
// alter a token reply (the expiry, token type and JWT faults, slow and
// trickle) still check the credentials and send the usual error if they are
// wrong.
const (
	// FaultNone is no fault: Fault{} clears an earlier one.
	FaultNone FaultKind = ""
	// FaultRateLimit replies 429 with Retry-After and a plain text body.
	FaultRateLimit FaultKind = "rate_limit"
	// FaultNoLicense replies 402 as for an organisation without a license.
	FaultNoLicense FaultKind = "no_license"
	// FaultServerError replies 500 with an HTML page.
	FaultServerError FaultKind = "server_error"
	// FaultBadGateway replies 502 with an HTML page, as a proxy would.
	FaultBadGateway FaultKind = "bad_gateway"
	// FaultUnavailable replies 503 with an HTML page, as a proxy would.
	FaultUnavailable FaultKind = "unavailable"
	// FaultGatewayTimeout replies 504 with an HTML page, as a proxy would.
	FaultGatewayTimeout FaultKind = "gateway_timeout"
	// FaultCloseConnection closes the connection without a reply.
	FaultCloseConnection FaultKind = "close_connection"
	// FaultHang sends nothing until the client gives up (or Close).
	FaultHang FaultKind = "hang"
	// FaultSlow waits Delay, then replies normally.
	FaultSlow FaultKind = "slow"
	// FaultTrickle sends the normal reply one byte per Delay.
	FaultTrickle FaultKind = "trickle"
	// FaultHuge replies 200 with a JSON body of about 20 MiB, streamed.
	FaultHuge FaultKind = "huge"
	// FaultHTML replies 200 with a login page, as a captive portal would.
	FaultHTML FaultKind = "html"
	// FaultTruncated replies 200 with a JSON body cut in the middle.
	FaultTruncated FaultKind = "truncated"
	// FaultNoAccessToken replies 200 with a token reply lacking access_token.
	FaultNoAccessToken FaultKind = "no_access_token"
	// FaultZeroExpiry replies normally but with expires_in 0.
	FaultZeroExpiry FaultKind = "zero_expires_in"
	// FaultNegativeExpiry replies normally but with expires_in -5.
	FaultNegativeExpiry FaultKind = "negative_expires_in"
	// FaultAbsurdExpiry replies with expires_in and a JWT lifetime of ten
	// years.
	FaultAbsurdExpiry FaultKind = "absurd_expires_in"
	// FaultWrongTokenType replies normally but with token_type "MAC".
	FaultWrongTokenType FaultKind = "wrong_token_type"
	// FaultExpiredJWT replies with the usual expires_in but a JWT whose exp
	// passed 60 seconds ago.
	FaultExpiredJWT FaultKind = "expired_jwt"
	// FaultShortJWT replies with the usual expires_in but a JWT whose exp is
	// iat+300: shorter than expires_in, which a client may cross-check.
	FaultShortJWT FaultKind = "short_jwt"
	// FaultBadJWT replies normally but with access_token "not-a-jwt".
	FaultBadJWT FaultKind = "bad_jwt"
	// FaultNotImplemented replies 501 with an HTML page, as a proxy would.
	FaultNotImplemented FaultKind = "not_implemented"

	// The faults below are a hostile server's, for the attacker's tests.

	// FaultRedirect replies Status (default 307) with Location.
	FaultRedirect FaultKind = "redirect"
	// FaultEcho replies with the request's client secret echoed in the way
	// Echo names; see the Echo* constants.
	FaultEcho FaultKind = "echo"
	// FaultHugeHeader replies 200 with an 8 MiB header before the body.
	FaultHugeHeader FaultKind = "huge_header"
)

// The ways FaultEcho echoes the secret.
const (
	// EchoBody: a 400 invalid_request whose description quotes the whole
	// request body (so the secret is JSON-escaped twice in the reply).
	EchoBody = "body"
	// EchoRaw: a 500 text/plain body with the secret as it is.
	EchoRaw = "raw"
	// EchoJSON: a 400 invalid_request whose description holds the secret,
	// JSON-escaped once.
	EchoJSON = "json"
	// EchoURL: a 400 text/plain body with the secret query-escaped.
	EchoURL = "url"
	// EchoQuoted: a 502 text/plain body with the secret Go-quoted.
	EchoQuoted = "quoted"
	// EchoTokenType: a 200 token reply whose token_type is the secret.
	EchoTokenType = "token_type"
	// EchoLocation: a 302 whose Location carries the secret in its path
	// and query.
	EchoLocation = "location"
)

// echoModes lists the Echo* constants, for validation.
var echoModes = []string{EchoBody, EchoRaw, EchoJSON, EchoURL, EchoQuoted, EchoTokenType, EchoLocation}

// faultKinds lists every kind but FaultNone, for valid.
var faultKinds = []FaultKind{
	FaultRateLimit, FaultNoLicense, FaultServerError, FaultBadGateway,
	FaultUnavailable, FaultGatewayTimeout, FaultCloseConnection, FaultHang,
	FaultSlow, FaultTrickle, FaultHuge, FaultHTML, FaultTruncated,
	FaultNoAccessToken, FaultZeroExpiry, FaultNegativeExpiry,
	FaultAbsurdExpiry, FaultWrongTokenType, FaultExpiredJWT, FaultShortJWT,
	FaultBadJWT, FaultNotImplemented, FaultRedirect, FaultEcho, FaultHugeHeader,
}

// valid reports whether k is a known fault kind or FaultNone.
func (k FaultKind) valid() bool {
	if k == FaultNone {
		return true
	}
	for _, known := range faultKinds {
		if k == known {
			return true
		}
	}
	return false
}

// Fault is a misbehaviour of the token endpoint; see the FaultKind constants.
type Fault struct {
	Kind FaultKind
	// RetryAfter is the Retry-After of FaultRateLimit, in seconds; default 1.
	RetryAfter int
	// Delay is the pause between bytes for FaultTrickle (default 200ms) and
	// the pause before the reply for FaultSlow (default 200ms).
	Delay time.Duration
	// Status and Location are the reply of FaultRedirect.
	Status   int
	Location string
	// Echo is how FaultEcho echoes the secret (EchoBody, EchoRaw, ...).
	Echo string
	// ClientIDs, when not empty, limits the fault to the token requests
	// of these client ids; the others are served as if it were not set.
	ClientIDs []string
}

// appliesTo reports whether f is meant for a token request of clientID.
func (f Fault) appliesTo(clientID string) bool {
	return len(f.ClientIDs) == 0 || slices.Contains(f.ClientIDs, clientID)
}

const (
	defaultRetryAfter = 1
	defaultDelay      = 200 * time.Millisecond

	// absurdSeconds is ten years, the expires_in of FaultAbsurdExpiry.
	absurdSeconds = 10 * 365 * 24 * 60 * 60

	// shortSeconds is the JWT lifetime of FaultShortJWT.
	shortSeconds = 300

	// hugeSize is about how large the body of FaultHuge is.
	hugeSize = 20 << 20

	// hugeHeaderSize is the size of the header FaultHugeHeader sends.
	hugeHeaderSize = 8 << 20
)

// retryAfter returns the Retry-After of f in seconds.
func (f Fault) retryAfter() int {
	if f.RetryAfter <= 0 {
		return defaultRetryAfter
	}
	return f.RetryAfter
}

// delay returns the Delay of f.
func (f Fault) delay() time.Duration {
	if f.Delay <= 0 {
		return defaultDelay
	}
	return f.Delay
}

// serveFault sends the reply of a fault that replaces the whole reply and
// reports whether it did; for the other faults it does nothing.
func (s *Server) serveFault(w http.ResponseWriter, r *http.Request, f Fault, lifetime time.Duration, body []byte) bool {
	switch f.Kind {
	case FaultRedirect:
		w.Header().Set("Location", f.Location)
		status := f.Status
		if status == 0 {
			status = http.StatusTemporaryRedirect
		}
		textReply(status, http.StatusText(status)).write(w)
	case FaultEcho:
		s.echoReply(r, f.Echo, body, lifetime).write(w)
	case FaultHugeHeader:
		w.Header().Set("X-Padding", strings.Repeat("p", hugeHeaderSize))
		s.tokenReply(r.Header.Get("Content-Type"), body, nil, FaultNone, false).write(w)
	case FaultNotImplemented:
		proxyReply(http.StatusNotImplemented).write(w)
	case FaultRateLimit:
		w.Header().Set("Retry-After", strconv.Itoa(f.retryAfter()))
		textReply(http.StatusTooManyRequests, "Too Many Requests").write(w)
	case FaultNoLicense:
		s.noLicenseReply().write(w)
	case FaultServerError, FaultBadGateway, FaultUnavailable, FaultGatewayTimeout:
		proxyReply(faultStatus[f.Kind]).write(w)
	case FaultCloseConnection:
		dropConnection(w)
	case FaultHang:
		s.hang(w, r)
	case FaultHuge:
		streamHuge(w, lifetime)
	case FaultHTML:
		loginPageReply().write(w)
	case FaultTruncated:
		jsonBytesReply(http.StatusOK, []byte(`{"token_type":"Bearer","expires_in":18`)).write(w)
	case FaultNoAccessToken:
		body := fmt.Sprintf(`{"token_type":"Bearer","expires_in":%d}`, seconds(lifetime))
		jsonBytesReply(http.StatusOK, []byte(body)).write(w)
	default:
		return false
	}
	return true
}

// echoReply is the reply of FaultEcho: the client secret of the request
// echoed back in the way mode names.
func (s *Server) echoReply(r *http.Request, mode string, body []byte, lifetime time.Duration) reply {
	req, _ := parseTokenRequest(r.Header.Get("Content-Type"), body, nil)
	secret := req.ClientSecret
	switch mode {
	case EchoBody:
		return errorReply(http.StatusBadRequest, oauthError{Error: "invalid_request", Description: "The request was: " + string(body)})
	case EchoJSON:
		return errorReply(http.StatusBadRequest, oauthError{Error: "invalid_request", Description: "client_secret " + secret + " is not accepted here"})
	case EchoURL:
		return textReply(http.StatusBadRequest, "bad request: client_secret="+url.QueryEscape(secret))
	case EchoQuoted:
		return textReply(http.StatusBadGateway, fmt.Sprintf("upstream said %q", secret))
	case EchoTokenType:
		c, _, _ := s.lookup(req.ClientID)
		rp := s.issue(c, lifetime, FaultNone)
		var tok map[string]any
		_ = json.Unmarshal(rp.body, &tok)
		tok["token_type"] = secret
		return jsonReply(http.StatusOK, jsonUTF8, tok)
	case EchoLocation:
		return reply{status: http.StatusFound, contentType: "text/plain", body: []byte("Found"),
			location: "https://collector.invalid/" + url.PathEscape(secret) + "?s=" + url.QueryEscape(secret)}
	default: // EchoRaw
		return textReply(http.StatusInternalServerError, "internal error for client_secret="+secret)
	}
}

// faultStatus maps the proxy error faults to their status codes.
var faultStatus = map[FaultKind]int{
	FaultServerError:    http.StatusInternalServerError,
	FaultBadGateway:     http.StatusBadGateway,
	FaultUnavailable:    http.StatusServiceUnavailable,
	FaultGatewayTimeout: http.StatusGatewayTimeout,
}

// proxyReply is the HTML error page a reverse proxy sends for status.
func proxyReply(status int) reply {
	title := fmt.Sprintf("%d %s", status, http.StatusText(status))
	page := "<html>\r\n<head><title>" + title + "</title></head>\r\n<body>\r\n" +
		"<center><h1>" + title + "</h1></center>\r\n<hr><center>nginx</center>\r\n" +
		"</body>\r\n</html>\r\n"
	return reply{status: status, contentType: "text/html", body: []byte(page)}
}

// loginPageReply is the page a captive portal or single sign-on proxy sends
// instead of the API's reply.
func loginPageReply() reply {
	page := `<!DOCTYPE html><html><head><title>Login</title></head><body>` +
		`<h1>Login</h1><form method="post" action="/login">` +
		`<input name="username"><input name="password" type="password">` +
		`<button>Sign in</button></form></body></html>`
	return reply{status: http.StatusOK, contentType: "text/html; charset=utf-8", body: []byte(page)}
}

// dropConnection closes the client's connection without a reply. Where the
// connection cannot be taken over (HTTP/2), it aborts the stream instead.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// hang sends nothing until the client gives up, then returns; if the server
// is closed first, it drops the connection.
func (s *Server) hang(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.closed:
		dropConnection(w)
	}
}

// pause waits d and reports whether the request is still wanted: false if
// the request's context ended first. Close ends every pause at once.
func (s *Server) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-s.closed:
		return true
	case <-t.C:
		return true
	}
}

// trickle sends rp one byte at a time, flushing each and pausing d between
// them, until it is sent or the client gives up. It reports whether the
// whole reply was sent.
func (s *Server) trickle(w http.ResponseWriter, r *http.Request, rp reply, d time.Duration) bool {
	rp.writeHeader(w)
	rc := http.NewResponseController(w)
	for i := range rp.body {
		if i > 0 && !s.pause(r.Context(), d) {
			return false
		}
		if _, err := w.Write(rp.body[i : i+1]); err != nil {
			return false
		}
		if err := rc.Flush(); err != nil {
			return false
		}
	}
	return true
}

// streamHuge sends a 200 token reply whose access_token is about 20 MiB,
// in chunks, with no Content-Length: the client must cap what it reads.
func streamHuge(w http.ResponseWriter, lifetime time.Duration) {
	w.Header().Set("Content-Type", jsonUTF8)
	w.WriteHeader(http.StatusOK)
	head := fmt.Sprintf(`{"token_type":"Bearer","expires_in":%d,"access_token":"`, seconds(lifetime))
	if _, err := w.Write([]byte(head)); err != nil {
		return
	}
	chunk := []byte(strings.Repeat("A", 64<<10))
	for sent := 0; sent < hugeSize; sent += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
	_, _ = w.Write([]byte(`"}`))
}
