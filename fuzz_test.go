package piwik

import (
	"maps"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/framework"
)

// The fuzz targets run their seed corpus (f.Add and testdata/fuzz) in every
// `go test`; `make fuzz` explores beyond it.

// FuzzParseTokenReply: whatever a token endpoint sends, parsing returns a
// usable token or an upstreamError, never panics, and never lets a token
// through that is already expired or has a non-positive lifetime.
func FuzzParseTokenReply(f *testing.F) {
	f.Add("application/json", reply("Bearer", 1800, testJWT(map[string]any{"exp": testNow.Unix() + 1800})))
	f.Add("application/json; charset=UTF-8", `{"token_type":"bearer","expires_in":1e3,"access_token":"a.b.c"}`)
	f.Add("text/html", "<html>")
	f.Add("", `{"token_type":"Bearer","expires_in":-1,"access_token":"x"}`)
	f.Add("application/json", `{"token_type":"Bearer","expires_in":1800.7,"access_token":"x.eyJleHAiOjF9.y"}`)
	f.Fuzz(func(t *testing.T, contentType, body string) {
		tok, err := parseTokenReply(contentType, []byte(body), testNow, testNow, redactor{})
		if err != nil {
			if _, ok := err.(*upstreamError); !ok {
				t.Fatalf("error of type %T, want *upstreamError", err)
			}
			return
		}
		if tok.AccessToken == "" || tok.Lifetime <= 0 || tok.Lifetime > maxTokenLifetime {
			t.Fatalf("accepted an unusable token: lifetime %s", tok.Lifetime)
		}
		if !tok.ExpiresAt.After(testNow) {
			t.Fatalf("accepted a token that expires at %s", tok.ExpiresAt)
		}
	})
}

// FuzzReadClaims: any string is read as claims or as none, without panic,
// and an exp it returns is a real time.
func FuzzReadClaims(f *testing.F) {
	f.Add(testJWT(map[string]any{"sub": "u", "aud": []string{"a"}, "exp": 1}))
	f.Add("a.eyJleHAiOiIxIn0.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, token string) {
		c, _ := readClaims(token)
		if !c.Expiry.IsZero() && (c.Expiry.Year() < 1970 || c.Expiry.Year() > 40000) {
			t.Fatalf("exp out of range: %s", c.Expiry)
		}
	})
}

// FuzzConfigUpdate: any combination of config fields is either refused or
// yields a config that satisfies every rule the engine relies on.
func FuzzConfigUpdate(f *testing.F) {
	f.Add("https://acme.piwik.pro/", "id", "secret", "10s", 3, "")
	f.Add("http://127.0.0.1:8210", "id", "s", "-1s", -1, "-----BEGIN CERTIFICATE-----\n")
	f.Add("http://evil.example", "", "", "0", 11, "x")
	f.Add("https://[::1]:1/a//", "i\x00d", "s", "5m", 0, "")
	schema := configFields()
	f.Fuzz(func(t *testing.T, url, id, secret, timeout string, retries int, caCert string) {
		d := &framework.FieldData{Schema: schema, Raw: map[string]any{
			"url": url, "client_id": id, "client_secret": secret,
			"request_timeout": timeout, "max_retries": retries, "ca_cert": caCert,
		}}
		if d.Validate() != nil {
			return
		}
		checkBinding(t, schema, d.Raw)
		cfg := defaultConfig()
		if err := cfg.update(d, nil); err != nil {
			return
		}
		if _, err := normalizeURL(cfg.URL); err != nil {
			t.Fatalf("stored url %q does not validate again: %v", cfg.URL, err)
		}
		if strings.ContainsFunc(cfg.URL, func(r rune) bool { return r > 0x7e }) {
			t.Fatalf("stored url %q is not ASCII", cfg.URL)
		}
		if strings.HasSuffix(cfg.URL, "/") {
			t.Fatalf("stored url %q keeps a trailing slash", cfg.URL)
		}
		if cfg.ClientID == "" || cfg.ClientSecret == "" {
			t.Fatal("stored a config without credentials")
		}
		if cfg.RequestTimeout <= 0 || cfg.RequestTimeout > maxRequestTimeout {
			t.Fatalf("stored request_timeout %s", cfg.RequestTimeout)
		}
		if cfg.MaxRetries < 0 || cfg.MaxRetries > maxMaxRetries {
			t.Fatalf("stored max_retries %d", cfg.MaxRetries)
		}
		if _, err := newClient(cfg.clientOptions()); err != nil {
			t.Fatalf("stored a config no client can be built from: %v", err)
		}
	})
}

// checkBinding: a write over a stored config that keeps the stored secret
// (no client_secret given) never changes where the secret goes.
func checkBinding(t *testing.T, schema map[string]*framework.FieldSchema, raw map[string]any) {
	t.Helper()
	stored := defaultConfig()
	stored.URL, stored.ClientID, stored.ClientSecret = "https://acme.piwik.pro", "id", "stored-secret"
	withoutSecret := maps.Clone(raw)
	delete(withoutSecret, "client_secret")
	cfg := *stored
	if err := cfg.update(&framework.FieldData{Schema: schema, Raw: withoutSecret}, stored); err != nil {
		return
	}
	if cfg.URL != stored.URL || cfg.CACert != stored.CACert || cfg.ClientID != stored.ClientID {
		t.Fatalf("without a new secret, the stored one would go to %q (ca changed: %v, client_id %q)", cfg.URL, cfg.CACert != "", cfg.ClientID)
	}
}

// FuzzRoleUpdate: a role that passes validation has sane durations and
// either both credentials or neither.
func FuzzRoleUpdate(f *testing.F) {
	f.Add("10m", "", "", true, "5m")
	f.Add("-1s", "id", "", false, "0")
	f.Add("9999999999h", "", "s", true, "x")
	schema := roleFields()
	f.Fuzz(func(t *testing.T, ttl, id, secret string, reuse bool, floor string) {
		raw := map[string]any{"ttl": ttl, "token_reuse": reuse, "reuse_min_remaining": floor}
		if id != "" || secret != "" {
			raw["client_id"], raw["client_secret"] = id, secret
		}
		d := &framework.FieldData{Schema: schema, Raw: raw}
		if d.Validate() != nil {
			return
		}
		role := &piwikRole{}
		if _, err := role.update(d); err != nil {
			return
		}
		if role.TTL < 0 || role.TTL > maxTokenLifetime || role.ReuseMinRemaining < 0 || role.ReuseMinRemaining > maxTokenLifetime {
			t.Fatalf("stored durations ttl=%s floor=%s", role.TTL, role.ReuseMinRemaining)
		}
		if (role.ClientID == "") != (role.ClientSecret == "") {
			t.Fatal("stored one of client_id and client_secret without the other")
		}
	})
}
