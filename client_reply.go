package piwik

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// transportError classifies a failure to get a complete reply at all.
// Errors net/http returns can quote what the server sent, so their text
// goes through the redactor too.
func (c *client) transportError(ctx, attemptCtx context.Context, err error, red redactor) error {
	if ctx.Err() != nil {
		return c.contextError(ctx)
	}
	var netErr net.Error
	if attemptCtx.Err() != nil || errors.As(err, &netErr) && netErr.Timeout() {
		return &upstreamError{Kind: kindTimeout, Detail: fmt.Sprintf("no complete reply from %s within %s (request_timeout %s)", c.host, c.attemptTimeout, c.timeout)}
	}
	if isTLSError(err) {
		return &upstreamError{Kind: kindTLS, Detail: fmt.Sprintf("TLS with %s failed: %s", c.host, red.text(rootCause(err)))}
	}
	if headersTooLarge(err) {
		return &upstreamError{Kind: kindBadReply, Detail: fmt.Sprintf("reply headers are larger than %d KiB", maxHeaderBytes>>10)}
	}
	return &upstreamError{Kind: kindUnreachable, Detail: fmt.Sprintf("cannot reach %s: %s", c.host, red.text(rootCause(err)))}
}

// errRequestTimeout is the cause of a mint's context ending at its own
// request_timeout, as opposed to the caller's deadline.
var errRequestTimeout = errors.New("request_timeout")

// contextError explains why ctx ended: our own request_timeout, which is
// Piwik PRO's failure to answer in time, or the caller's deadline or
// cancellation, which is the caller's (a callerError).
func (c *client) contextError(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), errRequestTimeout) {
		return &upstreamError{Kind: kindTimeout, Detail: fmt.Sprintf("no token from %s within request_timeout %s", c.host, c.timeout)}
	}
	return callerContextError(ctx, c.host+" issued a token")
}

// headersTooLarge reports whether err is net/http refusing a reply's
// headers for their size, over HTTP/1 or HTTP/2 (where the HPACK decoder
// gives up with a COMPRESSION_ERROR when the list passes the limit).
func headersTooLarge(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "server response headers exceeded") ||
		strings.Contains(msg, "header list larger than") ||
		strings.Contains(msg, "COMPRESSION_ERROR")
}

// isTLSError reports whether err came from certificate checks or the TLS
// handshake.
func isTLSError(err error) bool {
	var (
		unknownAuth x509.UnknownAuthorityError
		hostname    x509.HostnameError
		invalid     x509.CertificateInvalidError
		verify      *tls.CertificateVerificationError
		record      tls.RecordHeaderError
		alert       tls.AlertError
	)
	return errors.As(err, &unknownAuth) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &record) || errors.As(err, &alert)
}

// rootCause drops the "Post <url>:" wrapping net/http adds, which repeats
// what the error already says about the host.
func rootCause(err error) string {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	return err.Error()
}

// statusError turns a non-200 reply into an upstreamError. Every piece of
// the reply it quotes goes through red.
func statusError(resp *http.Response, reply []byte, red redactor) error {
	e := &upstreamError{Status: resp.StatusCode}
	var oauth struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		Message     string `json:"message"`
	}
	_ = json.Unmarshal(reply, &oauth)
	contentType := resp.Header.Get("Content-Type")
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		e.Kind = kindRedirect
		e.Detail = redirectTarget(resp.Header.Get("Location"), red)
	case resp.StatusCode == http.StatusTooManyRequests:
		e.Kind = kindRateLimited
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	case resp.StatusCode == http.StatusPaymentRequired:
		e.Kind = kindNoLicense
		e.Detail = red.text(oauth.Message)
	case oauth.Error == "invalid_client", resp.StatusCode == http.StatusUnauthorized:
		e.Kind = kindCredentials
	case resp.StatusCode >= 500:
		e.Kind = kindServer
		e.Detail = red.describeBody(contentType, reply)
	default:
		e.Kind = kindUnexpected
		if oauth.Error != "" {
			e.Detail = red.text(oauth.Error + ": " + firstNonEmpty(oauth.Description, oauth.Message))
		} else {
			e.Detail = red.describeBody(contentType, reply)
		}
	}
	return e
}

// redirectTarget names where a redirect pointed: its host only, since the
// path and query are where a hostile server would echo a secret.
func redirectTarget(location string, red redactor) string {
	if location == "" {
		return "without a Location"
	}
	u, err := url.Parse(location)
	if err != nil {
		return "to an unparseable Location"
	}
	if u.Host == "" {
		return "to a path on the same host"
	}
	return fmt.Sprintf("to host %q", red.text(u.Host))
}

// parseRetryAfter reads a Retry-After header in either of its forms
// (seconds, or an HTTP date). It returns 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(min(secs, 86400)) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return min(at.Sub(now), 24*time.Hour)
	}
	return 0
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// describeBody summarises a reply body for an error message: a short,
// printable excerpt of JSON or text, and never the markup of an HTML page.
func (r redactor) describeBody(contentType string, body []byte) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return "empty body"
	}
	if looksLikeHTML(contentType, body) {
		return fmt.Sprintf("an HTML page (%d bytes), not JSON", len(body))
	}
	return fmt.Sprintf("body %q", r.text(string(body)))
}

// looksLikeHTML reports whether a reply is an HTML page, by its declared
// type or by its first byte.
func looksLikeHTML(contentType string, body []byte) bool {
	mediaType, _, _ := mime.ParseMediaType(contentType)
	if mediaType == "text/html" || mediaType == "application/xhtml+xml" {
		return true
	}
	return bytes.HasPrefix(bytes.TrimSpace(body), []byte("<"))
}
