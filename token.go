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
)

// maxTokenLifetime is the longest expires_in taken at face value. Piwik PRO
// issues 30-minute tokens (24 hours before 2018); a reply claiming more than
// a week is broken, and a lease that long would outlive any sane rotation.
const maxTokenLifetime = 7 * 24 * time.Hour

// expSlack is how far the JWT's exp may fall short of receipt+expires_in
// and still be read as the same deadline: exp has whole-second resolution
// and the reply spent some time on the wire.
const expSlack = 2 * time.Second

// Token is an access token Piwik PRO issued.
type Token struct {
	AccessToken string
	TokenType   string
	// ExpiresIn is the lifetime the reply announced.
	ExpiresIn time.Duration
	// Lifetime is how long the token was valid when it arrived: expires_in,
	// or less when the JWT's exp comes sooner.
	Lifetime time.Duration
	// ExpiresAt is when the token stops working: receipt + Lifetime.
	ExpiresAt time.Time
	// Claims are read from the JWT without verifying its signature: Piwik
	// PRO publishes no key, and they only describe the token, they grant
	// nothing.
	Claims Claims
}

// Claims are the JWT claims that say whom a token acts for and until when.
// Zero values mean the claim was absent.
type Claims struct {
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

// parseTokenReply checks a 200 reply and turns it into a Token. now is when
// the reply arrived.
func parseTokenReply(contentType string, body []byte, now time.Time) (*Token, error) {
	bad := func(format string, args ...any) error {
		return &UpstreamError{Kind: KindBadReply, Status: 200, Detail: fmt.Sprintf(format, args...)}
	}
	if looksLikeHTML(contentType, body) {
		return nil, bad("got an HTML page (%d bytes) instead of JSON; is the url the Piwik PRO account URL?", len(body))
	}
	if mediaType, _, _ := mime.ParseMediaType(contentType); mediaType != "" && mediaType != "application/json" {
		return nil, bad("content type %q is not JSON", excerpt(contentType, ""))
	}
	var reply tokenReply
	if err := json.Unmarshal(body, &reply); err != nil {
		return nil, bad("malformed or truncated JSON (%d bytes)", len(body))
	}
	if reply.AccessToken == "" {
		return nil, bad("no access_token in the reply")
	}
	if !strings.EqualFold(reply.TokenType, "Bearer") {
		return nil, bad("token_type is %q, want Bearer", excerpt(reply.TokenType, ""))
	}
	expiresIn, err := parseExpiresIn(reply.ExpiresIn)
	if err != nil {
		return nil, bad("%s", err)
	}

	tok := &Token{
		AccessToken: reply.AccessToken,
		TokenType:   "Bearer",
		ExpiresIn:   expiresIn,
		Lifetime:    expiresIn,
		Claims:      readClaims(reply.AccessToken),
	}
	if exp := tok.Claims.Expiry; !exp.IsZero() {
		untilExp := exp.Sub(now).Truncate(time.Second)
		if untilExp <= 0 {
			return nil, bad("the token's exp (%s) has already passed; check the clocks of Vault and Piwik PRO", exp.Format(time.RFC3339))
		}
		if untilExp < expiresIn-expSlack {
			tok.Lifetime = untilExp
		}
	}
	tok.ExpiresAt = now.Add(tok.Lifetime).UTC()
	return tok, nil
}

// parseExpiresIn checks that expires_in is a positive, plausible number of
// seconds.
func parseExpiresIn(n json.Number) (time.Duration, error) {
	if n == "" {
		return 0, errors.New("no expires_in in the reply")
	}
	secs, err := n.Float64()
	if err != nil || math.IsNaN(secs) {
		return 0, fmt.Errorf("expires_in %q is not a number", excerpt(string(n), ""))
	}
	if secs <= 0 {
		return 0, fmt.Errorf("expires_in is %s, want a positive number of seconds", n)
	}
	if secs > maxTokenLifetime.Seconds() {
		return 0, fmt.Errorf("expires_in is %s seconds, longer than the %s this plugin accepts", n, maxTokenLifetime)
	}
	return time.Duration(secs * float64(time.Second)).Truncate(time.Second), nil
}

// readClaims decodes the payload of a JWT. A token that is not a JWT, or
// whose payload does not decode, yields no claims: the signature is opaque
// to us and the claims only decorate the lease.
func readClaims(token string) Claims {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Claims{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return Claims{}
	}
	var raw struct {
		Sub string          `json:"sub"`
		Org string          `json:"org"`
		Aud json.RawMessage `json:"aud"`
		Iat json.Number     `json:"iat"`
		Exp json.Number     `json:"exp"`
	}
	if err := json.Unmarshal(payload, &raw); err != nil {
		return Claims{}
	}
	return Claims{
		Subject:  raw.Sub,
		Org:      raw.Org,
		Audience: readAudience(raw.Aud),
		IssuedAt: unixTime(raw.Iat),
		Expiry:   unixTime(raw.Exp),
	}
}

// readAudience accepts both forms RFC 7519 allows: a string or an array.
func readAudience(raw json.RawMessage) []string {
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil
		}
		return []string{one}
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err == nil {
		return many
	}
	return nil
}

// unixTime converts a NumericDate; absent, malformed or out-of-range values
// give the zero time.
func unixTime(n json.Number) time.Time {
	secs, err := n.Float64()
	if err != nil || secs <= 0 || secs > 1<<40 {
		return time.Time{}
	}
	return time.Unix(int64(secs), 0).UTC()
}
