package piwik

import (
	"fmt"
	"net/http"
	"time"
)

// ErrorKind names one way a token request can fail. The kinds are what an
// operator needs to tell apart: each one has a different fix.
type ErrorKind string

const (
	KindUnreachable ErrorKind = "unreachable"   // DNS, connection refused or reset
	KindTLS         ErrorKind = "tls"           // certificate or handshake failure
	KindTimeout     ErrorKind = "timeout"       // no complete reply within request_timeout
	KindCredentials ErrorKind = "credentials"   // invalid_client: wrong or deleted credentials
	KindNoLicense   ErrorKind = "no_license"    // 402: the organisation has no active licence
	KindRateLimited ErrorKind = "rate_limited"  // 429
	KindServer      ErrorKind = "server_error"  // 5xx
	KindUnexpected  ErrorKind = "unexpected"    // any other status
	KindBadReply    ErrorKind = "invalid_reply" // 200 that is not a usable token reply
)

// UpstreamError is a failed token request. Its message never contains the
// client secret, the token, or more than a short excerpt of a reply.
type UpstreamError struct {
	Kind ErrorKind
	// Status is the HTTP status of the last reply, 0 when there was none.
	Status int
	// Detail is a short, safe description of what came back.
	Detail string
	// RetryAfter is how long Piwik PRO asked us to wait (429 only).
	RetryAfter time.Duration
	// Attempts is how many requests were made, retries included.
	Attempts int
}

func (e *UpstreamError) Error() string {
	msg := e.message()
	if e.Attempts > 1 {
		msg += fmt.Sprintf(" (after %d attempts)", e.Attempts)
	}
	return msg
}

func (e *UpstreamError) message() string {
	switch e.Kind {
	case KindUnreachable:
		return "Piwik PRO is unreachable: " + e.Detail
	case KindTLS:
		return e.Detail + " (check the url and ca_cert)"
	case KindTimeout:
		return "Piwik PRO timed out: " + e.Detail
	case KindCredentials:
		return fmt.Sprintf("Piwik PRO rejected the client credentials (HTTP %d, invalid_client): check client_id and client_secret, and that the API credential still exists", e.Status)
	case KindNoLicense:
		return fmt.Sprintf("Piwik PRO reports no active license for the organization (HTTP 402): %s", e.Detail)
	case KindRateLimited:
		if e.RetryAfter > 0 {
			return fmt.Sprintf("Piwik PRO rate limited the token request (HTTP 429): try again after %s", e.RetryAfter)
		}
		return "Piwik PRO rate limited the token request (HTTP 429): try again later"
	case KindServer:
		return fmt.Sprintf("Piwik PRO failed with HTTP %d %s: %s", e.Status, http.StatusText(e.Status), e.Detail)
	case KindBadReply:
		return "Piwik PRO sent an unusable token reply: " + e.Detail
	default:
		return fmt.Sprintf("unexpected reply from Piwik PRO: HTTP %d %s: %s", e.Status, http.StatusText(e.Status), e.Detail)
	}
}

// transient reports whether trying again may succeed.
func (e *UpstreamError) transient() bool {
	switch e.Kind {
	case KindUnreachable, KindRateLimited:
		return true
	case KindServer:
		switch e.Status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
	}
	return false
}
