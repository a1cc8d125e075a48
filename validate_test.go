package piwik

import (
	"strings"
	"testing"
	"time"
)

func TestValidate_internationalHostIsStoredAndDialledAsPunycode(t *testing.T) {
	got, err := normalizeURL("https://BÜCHER.example/piwik/")
	if err != nil || got != "https://xn--bcher-kva.example/piwik" {
		t.Fatalf("normalizeURL = %q, %v; want the punycode host", got, err)
	}
	c, err := newClient(clientOptions{BaseURL: got, Timeout: time.Second})
	if err != nil || c.tokenURL != "https://xn--bcher-kva.example/piwik/auth/token" {
		t.Errorf("dialled %q, want what is stored", c.tokenURL)
	}
	for _, bad := range []string{"https://exa mple.com", "https://a_b.example", "https://\u202eevil.example"} {
		if _, err := normalizeURL(bad); err == nil {
			t.Errorf("normalizeURL(%q) accepted", bad)
		}
	}
}

// An escape in the url's path (%2F) is kept as written or refused, so that
// the token request never goes to another path than the one written.
func TestValidate_encodedSlashInTheURLPathIsRefused(t *testing.T) {
	got, err := normalizeURL("https://acme.example/tenant%2Fa")
	if err == nil && got != "https://acme.example/tenant%2Fa" {
		t.Errorf("normalizeURL(.../tenant%%2Fa) = %q: the token request goes to another path than written", got)
	}
	if err != nil && !strings.Contains(err.Error(), "%2F") {
		t.Errorf("refused with %q, want it to name the escape", err)
	}
}

// URL tricks an operator (or a confused one) might write.
func TestValidate_urlTricks(t *testing.T) {
	refused := []string{
		"https://acme.example@evil.example/",
		`https://acme.example\@evil.example/`,
		"https://evil.example#@acme.example/",
		"https://evil.example?@acme.example/",
		"https://acme.example%2f@evil.example/",
		"http://evil.example/",
		"http://127.0.0.1.nip.io/",
		"http://localhost./",
		"https://[fe80::1%25eth0]/",
		"https:acme.example",
		"https:///acme.example",
		"ftp://acme.example/",
		"https://acme.example/\n",
		"https://acme_example.com/",
	}
	for _, raw := range refused {
		if got, err := normalizeURL(raw); err == nil {
			t.Errorf("normalizeURL(%q) = %q, want refused", raw, got)
		}
	}
	// A homograph (Cyrillic а) is stored and shown as punycode.
	if got, err := normalizeURL("https://аcme.example/"); err != nil || !strings.HasPrefix(got, "https://xn--") {
		t.Errorf("homograph host stored as %q, %v; want punycode", got, err)
	}
	for raw, want := range map[string]string{
		"HTTPS://ACME.Example/":          "https://acme.example",
		"http://[::1]:8200/":             "http://[::1]:8200",
		"http://LOCALHOST:8200":          "http://localhost:8200",
		"https://acme.example/a/../b//":  "https://acme.example/a/../b",
		"https://[::ffff:10.0.0.1]:443/": "https://10.0.0.1:443",
	} {
		if got, err := normalizeURL(raw); err != nil || got != want {
			t.Errorf("normalizeURL(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
}

func TestValidate_acceptsPlainHTTPOnlyOnLoopback(t *testing.T) {
	for _, u := range []string{"http://localhost:1", "http://127.0.0.2:8200", "http://[::1]:8200/x", "https://acme.piwik.pro"} {
		if _, err := normalizeURL(u); err != nil {
			t.Errorf("normalizeURL(%q) = %v, want accepted", u, err)
		}
	}
}
