package piwik

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// maxTokenLifetime is the longest expires_in taken at face value. Piwik PRO
// issues 30-minute tokens (24 hours before 2018); a reply claiming more than
// a week is broken, and a lease that long would outlive any sane rotation.
const maxTokenLifetime = 7 * 24 * time.Hour

// expSlack is how far the JWT's exp may fall short of expires_in before the
// lease's warning mentions it: exp has whole-second resolution and the
// reply spent some time on the wire, so a second or two is normal.
const expSlack = 2 * time.Second

// jwtAlgorithms are the signature algorithms a token's header may name.
// Piwik PRO signs with RS256; the signature is never verified here (no key
// is published), so the list only decides which headers parse.
var jwtAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// token is an access token Piwik PRO issued.
type token struct {
	AccessToken string
	TokenType   string
	// ExpiresIn is the lifetime the reply announced.
	ExpiresIn time.Duration
	// ExpiresAt is when the token stops working, taken conservatively:
	// the earlier of the JWT's exp and the moment the request was sent
	// plus expires_in.
	ExpiresAt time.Time
	// Lifetime is how long the token was valid when the request was sent:
	// ExpiresAt minus that moment.
	Lifetime time.Duration
	// ExpCut is true when the JWT's claims (exp, or exp - iat) end the
	// token noticeably before expires_in would.
	ExpCut bool
	// Claims are read from the JWT without verifying its signature: Piwik
	// PRO publishes no key, and they only describe the token, they grant
	// nothing.
	Claims claims
}

// claims are the JWT claims that say whom a token acts for and until when.
// Zero values mean the claim was absent.
type claims struct {
	Subject  string
	Org      string
	Audience []string
	IssuedAt time.Time
	Expiry   time.Time
}

// tokenReply is the body of a successful POST /auth/token.
type tokenReply struct {
	TokenType   string      `json:"token_type"`
	ExpiresIn   json.Number `json:"expires_in"`
	AccessToken string      `json:"access_token"`
}

// parseTokenReply checks a 200 reply and turns it into a token. sent is when
// the request left, received when the reply arrived. Every upstream string
// quoted in an error goes through red.
func parseTokenReply(contentType string, body []byte, sent, received time.Time, red redactor) (*token, error) {
	bad := func(format string, args ...any) error {
		return &upstreamError{Kind: kindBadReply, Status: 200, Detail: fmt.Sprintf(format, args...)}
	}
	if looksLikeHTML(contentType, body) {
		return nil, bad("got an HTML page (%d bytes) instead of JSON; is the url the Piwik PRO account URL?", len(body))
	}
	if mediaType, _, _ := mime.ParseMediaType(contentType); mediaType != "" && mediaType != "application/json" {
		return nil, bad("content type %q is not JSON", red.text(contentType))
	}
	var reply tokenReply
	if err := json.Unmarshal(body, &reply); err != nil {
		return nil, bad("malformed or truncated JSON (%d bytes)", len(body))
	}
	if reply.AccessToken == "" {
		return nil, bad("no access_token in the reply")
	}
	if err := checkJWTShape(reply.AccessToken); err != nil {
		return nil, bad("access_token %s", err)
	}
	if !strings.EqualFold(reply.TokenType, "Bearer") {
		return nil, bad("token_type is %q, want Bearer", red.text(reply.TokenType))
	}
	expiresIn, err := parseExpiresIn(reply.ExpiresIn, red)
	if err != nil {
		return nil, bad("%s", err)
	}

	claims, err := readClaims(reply.AccessToken)
	if err != nil {
		return nil, bad("access_token %s", err)
	}
	tok := &token{
		AccessToken: reply.AccessToken,
		TokenType:   "Bearer",
		ExpiresIn:   expiresIn,
		Claims:      claims,
	}
	tok.ExpiresAt, err = deadline(sent, received, expiresIn, claims)
	if err != nil {
		return nil, bad("%s", err)
	}
	tok.ExpCut = sent.Add(expiresIn).Sub(tok.ExpiresAt) > expSlack
	tok.Lifetime = tok.ExpiresAt.Sub(sent)
	tok.ExpiresAt = tok.ExpiresAt.UTC()
	return tok, nil
}

// deadline is when a token stops working, on Vault's clock, taken so that
// a clock of Piwik PRO's that runs ahead or behind can only shorten it: the
// earliest of sent + expires_in, the JWT's exp, and, when iat is there too,
// sent + (exp - iat), the lifetime the token itself states measured from
// when the request left.
func deadline(sent, received time.Time, expiresIn time.Duration, c claims) (time.Time, error) {
	at := sent.Add(expiresIn)
	if c.Expiry.IsZero() {
		return at, nil
	}
	if !c.Expiry.After(received) {
		return time.Time{}, fmt.Errorf("the token's exp (%s) has already passed; check the clocks of Vault and Piwik PRO", c.Expiry.Format(time.RFC3339))
	}
	at = minTime(at, c.Expiry)
	if !c.IssuedAt.IsZero() {
		if !c.Expiry.After(c.IssuedAt) {
			return time.Time{}, errors.New("the token's exp is not after its iat")
		}
		at = minTime(at, sent.Add(c.Expiry.Sub(c.IssuedAt)))
	}
	return at, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// checkJWTShape makes sure a token can be pasted into an Authorization
// header as it is: three non-empty dot-separated parts of RFC 6750 token
// characters, so that no newline, space or quote can be smuggled into the
// headers of the apps that use it.
func checkJWTShape(s string) error {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return fmt.Errorf("is not a JWT (%d dot-separated parts, want 3)", len(parts))
	}
	for _, part := range parts {
		if part == "" {
			return errors.New("is not a JWT (an empty part)")
		}
		body := strings.TrimRight(part, "=")
		if body == "" || strings.ContainsFunc(body, func(r rune) bool { return !isTokenChar(r) }) {
			return errors.New("holds characters a bearer token cannot have")
		}
	}
	return nil
}

// isTokenChar reports whether r may appear in an RFC 6750 b64token.
func isTokenChar(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("-._~+/", r)
}

// parseExpiresIn checks that expires_in is a positive, plausible number of
// seconds; a fraction is cut, never rounded up.
func parseExpiresIn(n json.Number, red redactor) (time.Duration, error) {
	if n == "" {
		return 0, errors.New("no expires_in in the reply")
	}
	secs, err := n.Float64()
	if err != nil || math.IsNaN(secs) {
		return 0, fmt.Errorf("expires_in %q is not a number", red.text(string(n)))
	}
	if secs < 1 {
		return 0, fmt.Errorf("expires_in is %s, want a positive number of seconds", red.text(string(n)))
	}
	if secs > maxTokenLifetime.Seconds() {
		return 0, fmt.Errorf("expires_in is %s seconds, longer than the %s this plugin accepts", red.text(string(n)), maxTokenLifetime)
	}
	return time.Duration(math.Floor(secs)) * time.Second, nil
}

// readClaims reads a JWT's claims without verifying it. exp and iat come
// straight from the payload, whatever the header's alg or the other claims
// hold, so that the deadline never depends on the token parsing as a
// whole; an exp that is there but not a usable number is an error, an iat
// that is not is left out. The descriptive claims (sub, org, aud) are read
// with go-jose and left out when the token does not parse: the signature
// is opaque to us and they only decorate the reply.
func readClaims(raw string) (claims, error) {
	times, err := payloadTimes(raw)
	if err != nil {
		return claims{}, err
	}
	c := claims{Expiry: times.exp, IssuedAt: times.iat}
	parsed, err := jwt.ParseSigned(raw, jwtAlgorithms)
	if err != nil {
		return c, nil
	}
	var payload struct {
		Sub string       `json:"sub"`
		Org string       `json:"org"`
		Aud jwt.Audience `json:"aud"`
	}
	if err := parsed.UnsafeClaimsWithoutVerification(&payload); err != nil {
		return c, nil
	}
	c.Subject, c.Org, c.Audience = payload.Sub, payload.Org, nonEmpty(payload.Aud)
	return c, nil
}

// jwtTimes are the exp and iat claims of a JWT's payload; zero when absent.
type jwtTimes struct {
	exp, iat time.Time
}

// payloadTimes returns the exp and iat claims of a JWT's payload
// (base64url, padded or not), zero times when the payload is not a JSON
// object or lacks them, and an error when exp is there but not a plausible
// NumericDate. Fractions are cut, never rounded up.
func payloadTimes(raw string) (jwtTimes, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return jwtTimes{}, nil
	}
	segment := strings.TrimRight(parts[1], "=")
	payload, err := base64.RawURLEncoding.DecodeString(segment)
	if err != nil {
		if payload, err = base64.RawStdEncoding.DecodeString(segment); err != nil {
			return jwtTimes{}, nil
		}
	}
	var fields struct {
		Exp json.RawMessage `json:"exp"`
		Iat json.RawMessage `json:"iat"`
	}
	if json.Unmarshal(payload, &fields) != nil {
		return jwtTimes{}, nil
	}
	var times jwtTimes
	times.iat, _ = numericDate(fields.Iat)
	if times.exp, err = numericDate(fields.Exp); err != nil {
		return jwtTimes{}, fmt.Errorf("has an exp claim that %s", err)
	}
	return times, nil
}

// numericDate reads a JWT NumericDate; the zero time when absent or null.
func numericDate(field json.RawMessage) (time.Time, error) {
	if field == nil || string(field) == "null" {
		return time.Time{}, nil
	}
	var n json.Number
	if err := json.Unmarshal(field, &n); err != nil {
		return time.Time{}, errors.New("is not a number")
	}
	secs, err := n.Float64()
	if err != nil || secs <= 0 || secs > 1<<40 {
		return time.Time{}, errors.New("is not a plausible time")
	}
	return time.Unix(int64(math.Floor(secs)), 0).UTC(), nil
}

// nonEmpty drops empty audiences.
func nonEmpty(values []string) []string {
	var out []string
	for _, v := range values {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}
