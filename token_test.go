package piwik

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

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
		{"legacy day-long token", "application/json", reply("Bearer", 86400, testJWT(map[string]any{"sub": "u-1"})), 24 * time.Hour, ""},
		{"exp shorter than expires_in", "application/json", reply("Bearer", 1800, shortExp), 300 * time.Second, ""},
		{"JWT-shaped token without readable claims", "application/json", reply("Bearer", 600, "aaa.bbb.ccc"), 600 * time.Second, ""},
		{"opaque token", "application/json", reply("Bearer", 600, "opaque"), 0, "not a JWT"},
		{"token with a newline", "application/json", reply("Bearer", 600, fresh+"\r\nX-Injected: 1"), 0, "characters"},
		{"token with a space", "application/json", reply("Bearer", 600, "a.b c.d"), 0, "characters"},
		{"token with an empty part", "application/json", reply("Bearer", 600, "a..c"), 0, "empty part"},
		{"token with a quote", "application/json", reply("Bearer", 600, `a.b".c`), 0, "characters"},
		{"fractional expires_in is cut", "application/json", reply("Bearer", 1800.9, testJWT(map[string]any{"sub": "u"})), 1800 * time.Second, ""},
		{"expires_in under a second", "application/json", reply("Bearer", 0.5, fresh), 0, "positive"},
		{"no content type", "", reply("Bearer", 1800, fresh), 1800 * time.Second, ""},
		{"array audience", "application/json", reply("Bearer", 1800, arrayAud), 1800 * time.Second, ""},
		{"HTML page", "text/html", "<html><body>Sign in</body></html>", 0, "HTML page"},
		{"HTML without type", "", "  <!DOCTYPE html><html>", 0, "HTML page"},
		{"other content type", "text/plain", reply("Bearer", 1800, fresh), 0, "not JSON"},
		{"truncated JSON", "application/json", `{"token_type":"Bearer","expires_in":18`, 0, "truncated"},
		{"empty body", "application/json", ``, 0, "truncated"},
		{"no access_token", "application/json", `{"token_type":"Bearer","expires_in":1800}`, 0, "no access_token"},
		{"MAC token", "application/json", reply("MAC", 1800, fresh), 0, "token_type"},
		{"missing expires_in", "application/json", `{"token_type":"Bearer","access_token":"a.b.c"}`, 0, "no expires_in"},
		{"zero expires_in", "application/json", reply("Bearer", 0, fresh), 0, "positive"},
		{"negative expires_in", "application/json", reply("Bearer", -5, fresh), 0, "positive"},
		{"absurd expires_in", "application/json", reply("Bearer", 315360000, fresh), 0, "longer than"},
		{"expires_in as numeric string", "application/json", `{"token_type":"Bearer","expires_in":"1800","access_token":"a.b.c"}`, 1800 * time.Second, ""},
		{"expires_in as word", "application/json", `{"token_type":"Bearer","expires_in":"soon","access_token":"x"}`, 0, "malformed"},
		{"exp already passed", "application/json", reply("Bearer", 1800, pastExp), 0, "already passed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := parseTokenReply(tc.contentType, []byte(tc.body), testNow, testNow, redactor{})
			if tc.wantErr != "" {
				var upErr *upstreamError
				if !errors.As(err, &upErr) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want an upstreamError containing %q", err, tc.wantErr)
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

func TestParseTokenReply_deadlineIsTheEarlierOfExpAndSentPlusExpiresIn(t *testing.T) {
	exp := testNow.Unix() + 1800 // whole seconds, as Piwik PRO writes it
	body := []byte(reply("Bearer", 1800, testJWT(map[string]any{"exp": exp})))
	for _, tc := range []struct {
		name      string
		sent      time.Time
		wantAt    time.Time
		wantLife  time.Duration
		wantLease time.Duration // at sent + 10ms
	}{
		// The request left before exp-1800: sent+expires_in comes first.
		{"sent before iat", testNow.Add(-400 * time.Millisecond), testNow.Add(1800*time.Second - 400*time.Millisecond), 1800 * time.Second, 1799 * time.Second},
		// The request left after iat (exp is cut to the second): exp comes first.
		{"sent after iat", testNow.Add(600 * time.Millisecond), testNow.Add(1800 * time.Second), 1800*time.Second - 600*time.Millisecond, 1799 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := parseTokenReply("application/json", body, tc.sent, tc.sent.Add(5*time.Millisecond), redactor{})
			if err != nil {
				t.Fatal(err)
			}
			if !tok.ExpiresAt.Equal(tc.wantAt) || tok.Lifetime != tc.wantLife {
				t.Errorf("expires_at %s, lifetime %s; want %s, %s", tok.ExpiresAt, tok.Lifetime, tc.wantAt, tc.wantLife)
			}
			if tok.ExpiresAt.After(time.Unix(exp, 0)) {
				t.Errorf("expires_at %s is after the JWT's exp", tok.ExpiresAt)
			}
			if tok.ExpCut {
				t.Errorf("a sub-second difference is reported as exp cutting the token short")
			}
			if ttl, _ := leaseTTL(tok, tc.sent.Add(10*time.Millisecond), 0, 0); ttl != tc.wantLease {
				t.Errorf("lease %s, want %s (truncated, never rounded up)", ttl, tc.wantLease)
			}
		})
	}
}

func TestReadClaims(t *testing.T) {
	iat := testNow.Unix()
	got, err := readClaims(testJWT(map[string]any{"sub": "u-1", "org": "default", "aud": "Client-Name-1", "iat": iat, "exp": iat + 1800, "eml": "x@example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	want := claims{Subject: "u-1", Org: "default", Audience: []string{"Client-Name-1"}, IssuedAt: testNow, Expiry: testNow.Add(30 * time.Minute)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("claims = %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "a.b", "a.!!!.c", "a." + base64.RawURLEncoding.EncodeToString([]byte("[1,2]")) + ".c", "a.b.c.d"} {
		if c, err := readClaims(bad); c.Subject != "" || !c.Expiry.IsZero() || err != nil {
			t.Errorf("readClaims(%q) = %+v, %v; want no claims", bad, c, err)
		}
	}
	for _, exp := range []any{"soon", -1, 1e20, map[string]any{}} {
		if _, err := readClaims(testJWT(map[string]any{"exp": exp})); err == nil {
			t.Errorf("exp %v: accepted, want an error (the deadline cannot be read)", exp)
		}
	}
}

func TestParseTokenReply_remoteClockSkewOnlyShortensTheToken(t *testing.T) {
	sent := testNow
	for _, tc := range []struct {
		name     string
		skew     time.Duration // Piwik PRO's clock minus Vault's
		claims   func(iat int64) map[string]any
		expires  int
		want     time.Duration
		wantsCut bool
	}{
		{"clocks agree", 0, func(iat int64) map[string]any { return map[string]any{"iat": iat, "exp": iat + 1800} }, 1800, 1800 * time.Second, false},
		{"Piwik PRO 2 minutes ahead, exp cuts expires_in", 2 * time.Minute, func(iat int64) map[string]any { return map[string]any{"iat": iat, "exp": iat + 600} }, 1800, 600 * time.Second, true},
		{"Piwik PRO 2 minutes behind, exp cuts expires_in", -2 * time.Minute, func(iat int64) map[string]any { return map[string]any{"iat": iat, "exp": iat + 600} }, 1800, 480 * time.Second, true},
		{"Piwik PRO 2 minutes ahead, no iat", 2 * time.Minute, func(iat int64) map[string]any { return map[string]any{"exp": iat + 600} }, 1800, 720 * time.Second, true},
		{"Piwik PRO 2 minutes ahead, exp past expires_in", 2 * time.Minute, func(iat int64) map[string]any { return map[string]any{"iat": iat, "exp": iat + 1800} }, 1800, 1800 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iat := sent.Add(tc.skew).Unix()
			body := reply("Bearer", tc.expires, testJWT(tc.claims(iat)))
			tok, err := parseTokenReply("application/json", []byte(body), sent, sent, redactor{})
			if err != nil {
				t.Fatal(err)
			}
			if tok.Lifetime != tc.want || !tok.ExpiresAt.Equal(sent.Add(tc.want)) {
				t.Errorf("lifetime %s (until %s), want %s", tok.Lifetime, tok.ExpiresAt, tc.want)
			}
			if tok.ExpCut != tc.wantsCut {
				t.Errorf("ExpCut = %v, want %v", tok.ExpCut, tc.wantsCut)
			}
		})
	}
}

func TestParseTokenReply_expNotAfterIatIsRefused(t *testing.T) {
	iat := testNow.Unix()
	body := reply("Bearer", 1800, testJWT(map[string]any{"iat": iat + 3600, "exp": iat + 1800}))
	if _, err := parseTokenReply("application/json", []byte(body), testNow, testNow, redactor{}); err == nil {
		t.Error("a token whose exp is before its iat was accepted")
	}
}

// The JWT's exp bounds the token's life whatever else the JWT holds: an alg
// outside the usual list, padded segments, or claims of unexpected types
// (aud or sub a number).
func TestParseTokenReply_leaseFollowsExpWhateverTheJWTHeader(t *testing.T) {
	exp := testNow.Unix() + 60
	rs := `{"typ":"JWT","alg":"RS256"}`
	for _, tc := range []struct{ name, token string }{
		{"alg HS256", jwtWith(base64.RawURLEncoding, `{"typ":"JWT","alg":"HS256"}`, fmt.Sprintf(`{"sub":"u","exp":%d}`, exp))},
		{"alg none", jwtWith(base64.RawURLEncoding, `{"typ":"JWT","alg":"none"}`, fmt.Sprintf(`{"sub":"u","exp":%d}`, exp))},
		{"padded segments", jwtWith(base64.URLEncoding, rs, fmt.Sprintf(`{"sub":"u1","exp":%d}`, exp))},
		{"aud a number", jwtWith(base64.RawURLEncoding, rs, fmt.Sprintf(`{"sub":"u","aud":42,"exp":%d}`, exp))},
		{"sub a number", jwtWith(base64.RawURLEncoding, rs, fmt.Sprintf(`{"sub":42,"exp":%d}`, exp))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkJWTShape(tc.token); err != nil {
				t.Fatalf("token not JWT-shaped: %v", err)
			}
			tok, err := parseTokenReply("application/json", []byte(reply("Bearer", 1800, tc.token)), testNow, testNow, redactor{})
			if err != nil {
				t.Fatalf("parseTokenReply: %v", err)
			}
			ttl, _ := leaseTTL(tok, testNow, 0, 0)
			if tok.ExpiresAt.After(time.Unix(exp, 0)) {
				t.Errorf("the token's exp is in 60s, the lease is %s", ttl)
			}
		})
	}
}

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
