package piwik

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Redirects of every shape: nothing is followed, nothing of the secret is
// quoted, whatever the Location looks like.
func TestClient_redirectsOfEveryShape(t *testing.T) {
	s := testClientSecret
	locations := []string{
		"/elsewhere/auth/token?s=" + s,                     // relative
		"//collector.invalid/" + s,                         // protocol-relative
		"https://" + s + ":" + s + "@collector.invalid/",   // userinfo
		"https://" + s + ".collector.invalid/",             // secret in the host
		"https://collector.invalid:" + s + "/",             // secret as port
		"https://collector.invalid/%74" + s[1:],            // percent-encoded
		"javascript:alert('" + s + "')",                    // opaque
		"https://collector.invalid/\r\nX-Leak: " + s,       // header injection attempt
		strings.Repeat("https://collector.invalid/", 2000), // long
	}
	for _, status := range []int{300, 301, 302, 303, 304, 305, 307, 308} {
		for i, loc := range locations {
			var hits atomic.Int64
			e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				w.Header()["Location"] = []string{loc}
				w.WriteHeader(status)
			}, nil)
			resp, err := e.do(logical.ReadOperation, "creds/r", nil)
			code, msg := statusOf(resp, err)
			if code != http.StatusBadGateway || hits.Load() != 1 {
				t.Errorf("%d location %d: status %d, %d requests; want 502 after 1", status, i, code, hits.Load())
			}
			if strings.Contains(strings.ToLower(msg), strings.ToLower(s)) {
				t.Errorf("%d location %d: error quotes the secret: %s", status, i, msg)
			}
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		"-3":                            0,
		"soon":                          0,
		"999999":                        24 * time.Hour,
		"Fri, 27 Nov 2026 12:01:00 GMT": time.Minute,
		"Fri, 27 Nov 2026 11:00:00 GMT": 0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}
