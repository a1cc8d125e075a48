package piwik

import (
	"context"
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

// callerError is a wait the caller ended: its own context was canceled or
// reached its deadline (Vault's max_request_duration, or the client's own
// timeout) before what it waited for happened. It says nothing about Piwik
// PRO: no gate learns from it and no metric counts it as a failure.
type callerError struct {
	// waitingFor is what had not happened yet, e.g. "acme.piwik.pro issued
	// a token".
	waitingFor string
	cause      error // context.DeadlineExceeded or context.Canceled
}

func (e *callerError) Error() string {
	if errors.Is(e.cause, context.DeadlineExceeded) {
		return "the request's deadline (Vault's max_request_duration, or the client's own timeout) ended before " + e.waitingFor
	}
	return "the request was canceled before " + e.waitingFor
}

func (e *callerError) Unwrap() error { return e.cause }

// isCallerError reports whether err is a wait the caller ended.
func isCallerError(err error) bool {
	var callerErr *callerError
	return errors.As(err, &callerErr)
}

// callerContextError explains why ctx, the caller's context, ended before
// waitingFor happened.
func callerContextError(ctx context.Context, waitingFor string) error {
	cause := context.Canceled
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		cause = context.DeadlineExceeded
	}
	return &callerError{waitingFor: waitingFor, cause: cause}
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
