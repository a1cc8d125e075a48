package piwik

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// errorKind names one way a token request can fail. The kinds are what an
// operator needs to tell apart: each one has a different fix.
type errorKind string

const (
	kindUnreachable errorKind = "unreachable"   // DNS, connection refused or reset
	kindTLS         errorKind = "tls"           // certificate or handshake failure
	kindTimeout     errorKind = "timeout"       // no complete reply in time
	kindRedirect    errorKind = "redirect"      // a 3xx, never followed
	kindCredentials errorKind = "credentials"   // invalid_client: wrong or deleted credentials
	kindNoLicense   errorKind = "no_license"    // 402: the organisation has no active licence
	kindRateLimited errorKind = "rate_limited"  // 429
	kindServer      errorKind = "server_error"  // 5xx
	kindUnexpected  errorKind = "unexpected"    // any other status
	kindBadReply    errorKind = "invalid_reply" // a reply that is not a usable token reply
)

// upstreamError is a failed token request. Its message never contains the
// client secret, the token, or more than a short, scrubbed excerpt of a
// reply: every upstream string in it went through a redactor.
type upstreamError struct {
	Kind errorKind
	// Status is the HTTP status of the last reply, 0 when there was none.
	Status int
	// Detail is a short, safe description of what came back.
	Detail string
	// RetryAfter is how long Piwik PRO asked us to wait (429 only).
	RetryAfter time.Duration
	// Attempts is how many requests were made, retries included.
	Attempts int
	// NotSent marks an error given without a request: the credential is
	// inside a rate-limit or backoff window (see gate). RetryAfter is then
	// what is left of the window.
	NotSent bool
}

func (e *upstreamError) Error() string {
	msg := e.message()
	switch {
	case e.NotSent && e.Kind == kindRateLimited:
		msg += " (no request sent: this credential is waiting out Piwik PRO's rate limit)"
	case e.NotSent:
		msg += fmt.Sprintf(" (no request sent: this credential is backing off; next attempt in %s)", e.RetryAfter.Round(time.Second))
	case e.Attempts > 1:
		msg += fmt.Sprintf(" (after %d attempts)", e.Attempts)
	}
	return msg
}

func (e *upstreamError) message() string {
	switch e.Kind {
	case kindUnreachable:
		return "Piwik PRO is unreachable: " + e.Detail
	case kindTLS:
		return e.Detail + " (check the url and ca_cert)"
	case kindTimeout:
		return "Piwik PRO timed out: " + e.Detail
	case kindRedirect:
		return fmt.Sprintf("Piwik PRO answered HTTP %d %s, a redirect %s; redirects are never followed, so that the client secret goes only to the configured url: check the url", e.Status, http.StatusText(e.Status), e.Detail)
	case kindCredentials:
		return fmt.Sprintf("Piwik PRO rejected the client credentials (HTTP %d, invalid_client): check client_id and client_secret, and that the API credential still exists", e.Status)
	case kindNoLicense:
		return fmt.Sprintf("Piwik PRO reports no active license for the organization (HTTP 402): %s", e.Detail)
	case kindRateLimited:
		if e.RetryAfter > 0 {
			return fmt.Sprintf("Piwik PRO rate limited the token request (HTTP 429): try again after %s", e.RetryAfter.Round(time.Second))
		}
		return "Piwik PRO rate limited the token request (HTTP 429): try again later"
	case kindServer:
		return fmt.Sprintf("Piwik PRO failed with HTTP %d %s: %s", e.Status, http.StatusText(e.Status), e.Detail)
	case kindBadReply:
		return "Piwik PRO sent an unusable token reply: " + e.Detail
	default:
		return fmt.Sprintf("unexpected reply from Piwik PRO: HTTP %d %s: %s", e.Status, http.StatusText(e.Status), e.Detail)
	}
}

// transient reports whether trying again may succeed. Minting a token has
// no side effects, so every failure that may be passing is retried: no
// connection, a hung attempt, 429 and 5xx except 501 Not Implemented.
func (e *upstreamError) transient() bool {
	switch e.Kind {
	case kindUnreachable, kindTimeout, kindRateLimited:
		return true
	case kindServer:
		return e.Status != http.StatusNotImplemented
	}
	return false
}

// failureStatus is the one mapping from a failed token request to the HTTP
// status Vault answers with, on every path: 429 when Piwik PRO rate limited
// us (the message says when to retry), 504 when it did not answer in time,
// 502 for anything else Piwik PRO or the network did. The caller's own bad
// input is a 400 and never comes through here.
func failureStatus(err error) int {
	upErr, ok := asUpstreamError(err)
	if !ok {
		return http.StatusInternalServerError
	}
	switch upErr.Kind {
	case kindRateLimited:
		return http.StatusTooManyRequests
	case kindTimeout:
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// rejectedCredentials reports whether Piwik PRO refused the credentials
// themselves (wrong, deleted, or of an unlicensed organization), as
// opposed to failing to answer.
func rejectedCredentials(err error) bool {
	upErr, ok := asUpstreamError(err)
	return ok && (upErr.Kind == kindCredentials || upErr.Kind == kindNoLicense)
}

// asUpstreamError returns err as an *upstreamError when it is one.
func asUpstreamError(err error) (*upstreamError, bool) {
	var upErr *upstreamError
	ok := errors.As(err, &upErr)
	return upErr, ok
}
