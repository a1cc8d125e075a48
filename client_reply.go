package piwik

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

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
