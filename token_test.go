package piwik

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// testJWT builds an RS256-shaped JWT with the given claims.
func testJWT(claims map[string]any) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"typ": "JWT", "alg": "RS256"}) + "." + enc(claims) + "." + strings.Repeat("A", 342)
}

func reply(tokenType string, expiresIn any, token string) string {
	b, _ := json.Marshal(map[string]any{"token_type": tokenType, "expires_in": expiresIn, "access_token": token})
	return string(b)
}

func TestParseTokenReply(t *testing.T) {
	iat := testNow.Unix()
	fresh := testJWT(map[string]any{"iss": "oauth", "sub": "u-1", "org": "default", "aud": "Client-Name-1", "iat": iat, "exp": iat + 1800})
	shortExp := testJWT(map[string]any{"iat": iat, "exp": iat + 300})
	pastExp := testJWT(map[string]any{"iat": iat - 3600, "exp": iat - 60})
	arrayAud := testJWT(map[string]any{"aud": []string{"a", "b"}, "exp": iat + 1800})

	cases := []struct {
		name         string
		contentType  string
		body         string
		wantLifetime time.Duration
		wantErr      string
	}{
		{"fresh token", "application/json; charset=UTF-8", reply("Bearer", 1800, fresh), 1800 * time.Second, ""},
		{"bearer in lower case", "application/json", reply("bearer", 1800, fresh), 1800 * time.Second, ""},
		{"legacy day-long token", "application/json", reply("Bearer", 86400, "opaque"), 24 * time.Hour, ""},
		{"exp shorter than expires_in", "application/json", reply("Bearer", 1800, shortExp), 300 * time.Second, ""},
		{"opaque token without claims", "application/json", reply("Bearer", 600, "opaque"), 600 * time.Second, ""},
		{"no content type", "", reply("Bearer", 1800, fresh), 1800 * time.Second, ""},
		{"array audience", "application/json", reply("Bearer", 1800, arrayAud), 1800 * time.Second, ""},
		{"HTML page", "text/html", "<html><body>Sign in</body></html>", 0, "HTML page"},
		{"HTML without type", "", "  <!DOCTYPE html><html>", 0, "HTML page"},
		{"other content type", "text/plain", reply("Bearer", 1800, fresh), 0, "not JSON"},
		{"truncated JSON", "application/json", `{"token_type":"Bearer","expires_in":18`, 0, "truncated"},
		{"empty body", "application/json", ``, 0, "truncated"},
		{"no access_token", "application/json", `{"token_type":"Bearer","expires_in":1800}`, 0, "no access_token"},
		{"MAC token", "application/json", reply("MAC", 1800, fresh), 0, "token_type"},
		{"missing expires_in", "application/json", `{"token_type":"Bearer","access_token":"x"}`, 0, "no expires_in"},
		{"zero expires_in", "application/json", reply("Bearer", 0, fresh), 0, "positive"},
		{"negative expires_in", "application/json", reply("Bearer", -5, fresh), 0, "positive"},
		{"absurd expires_in", "application/json", reply("Bearer", 315360000, fresh), 0, "longer than"},
		{"expires_in as numeric string", "application/json", `{"token_type":"Bearer","expires_in":"1800","access_token":"x"}`, 1800 * time.Second, ""},
		{"expires_in as word", "application/json", `{"token_type":"Bearer","expires_in":"soon","access_token":"x"}`, 0, "malformed"},
		{"exp already passed", "application/json", reply("Bearer", 1800, pastExp), 0, "already passed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := parseTokenReply(tc.contentType, []byte(tc.body), testNow)
			if tc.wantErr != "" {
				var upErr *UpstreamError
				if !errors.As(err, &upErr) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want an UpstreamError containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if tok.Lifetime != tc.wantLifetime {
				t.Errorf("lifetime = %s, want %s", tok.Lifetime, tc.wantLifetime)
			}
			if want := testNow.Add(tc.wantLifetime); !tok.ExpiresAt.Equal(want) {
				t.Errorf("expires_at = %s, want %s", tok.ExpiresAt, want)
			}
		})
	}
}

func TestParseTokenReply_expSlackKeepsExpiresIn(t *testing.T) {
	// exp has whole-second resolution: a token whose exp is a second short
	// of receipt+expires_in still gets the full expires_in.
	now := testNow.Add(900 * time.Millisecond)
	tok, err := parseTokenReply("application/json", []byte(reply("Bearer", 1800, testJWT(map[string]any{"exp": testNow.Unix() + 1800}))), now)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Lifetime != 1800*time.Second {
		t.Errorf("lifetime = %s, want 30m", tok.Lifetime)
	}
}

func TestReadClaims(t *testing.T) {
	iat := testNow.Unix()
	got := readClaims(testJWT(map[string]any{"sub": "u-1", "org": "default", "aud": "Client-Name-1", "iat": iat, "exp": iat + 1800, "eml": "x@example.com"}))
	want := Claims{Subject: "u-1", Org: "default", Audience: []string{"Client-Name-1"}, IssuedAt: testNow, Expiry: testNow.Add(30 * time.Minute)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("claims = %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "a.b", "a.!!!.c", "a." + base64.RawURLEncoding.EncodeToString([]byte("[1,2]")) + ".c", "a.b.c.d"} {
		if c := readClaims(bad); c.Subject != "" || !c.Expiry.IsZero() {
			t.Errorf("readClaims(%q) = %+v, want no claims", bad, c)
		}
	}
}

func TestLeaseTTL(t *testing.T) {
	tok := &Token{ExpiresIn: 30 * time.Minute, Lifetime: 30 * time.Minute, ExpiresAt: testNow.Add(30 * time.Minute)}
	cases := []struct {
		name           string
		roleTTL, max   time.Duration
		want           time.Duration
		wantWarnings   int
		warningContent string
	}{
		{"no caps", 0, 0, 30 * time.Minute, 0, ""},
		{"role ttl", 10 * time.Minute, 0, 10 * time.Minute, 1, "role's ttl"},
		{"mount max", 0, 5 * time.Minute, 5 * time.Minute, 1, "max lease TTL"},
		{"both, mount smaller", 10 * time.Minute, 5 * time.Minute, 5 * time.Minute, 2, "max lease TTL"},
		{"caps above the token", time.Hour, 2 * time.Hour, 30 * time.Minute, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ttl, warnings := leaseTTL(tok, testNow, tc.roleTTL, tc.max)
			if ttl != tc.want || len(warnings) != tc.wantWarnings {
				t.Fatalf("ttl = %s, warnings = %v; want %s and %d warnings", ttl, warnings, tc.want, tc.wantWarnings)
			}
			if tc.warningContent != "" && !strings.Contains(strings.Join(warnings, " "), tc.warningContent) {
				t.Errorf("warnings %v lack %q", warnings, tc.warningContent)
			}
		})
	}
}
