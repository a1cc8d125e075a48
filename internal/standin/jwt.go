package standin

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

const (
	// sigSize is the size of an RS256 signature made with a 2048-bit key,
	// which is what Piwik PRO's tokens carry.
	sigSize = 256

	// issuer is the "iss" of Piwik PRO's tokens.
	issuer = "oauth"
)

// jwtHeader is the encoded header of every token: {"typ":"JWT","alg":"RS256"}.
var jwtHeader = b64(`{"typ":"JWT","alg":"RS256"}`)

// b64 encodes s as unpadded base64url, as JWTs do.
func b64[T string | []byte](s T) string {
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// claims are the JWT claims of a Piwik PRO token, in the documented order.
type claims struct {
	Iss string `json:"iss"`
	Aud string `json:"aud"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
	Sub string `json:"sub"`
	Org string `json:"org"`
	Eml string `json:"eml"`
	Jti string `json:"jti"`
}

// newClaims returns the claims of a token for c issued at now; jti is random
// so that two tokens issued in the same second differ.
func (s *Server) newClaims(c Credential, now time.Time, lifetime time.Duration) claims {
	jti := make([]byte, 16)
	_, _ = rand.Read(jti) // never fails; panics instead
	iat := now.Unix()
	return claims{
		Iss: issuer,
		Aud: c.Name,
		Iat: iat,
		Exp: iat + seconds(lifetime),
		Sub: c.UserID,
		Org: s.org,
		Eml: c.Email,
		Jti: hex.EncodeToString(jti),
	}
}

// mint encodes and signs cl as a JWT.
func (s *Server) mint(cl claims) string {
	payload, err := json.Marshal(cl)
	if err != nil {
		// claims holds only strings and integers.
		panic(fmt.Sprintf("standin: encode claims: %v", err))
	}
	input := jwtHeader + "." + b64(payload)
	return input + "." + b64(s.sign(input))
}

// sign returns an RS256-sized signature of input: HMAC-SHA256 blocks under
// the server's key, each over a block counter and input. It costs a few
// microseconds, where an RSA signature would cost a millisecond.
func (s *Server) sign(input string) []byte {
	sig := make([]byte, 0, sigSize)
	for i := 0; len(sig) < sigSize; i++ {
		mac := hmac.New(sha256.New, s.key)
		mac.Write([]byte{byte(i)})
		mac.Write([]byte(input))
		sig = mac.Sum(sig)
	}
	return sig
}

// verify returns the claims of token if this server issued it, it is intact
// and it has not expired by the server's clock.
func (s *Server) verify(token string) (claims, bool) {
	var cl claims
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != jwtHeader {
		return cl, false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, s.sign(parts[0]+"."+parts[1])) {
		return cl, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(payload, &cl) != nil {
		return cl, false
	}
	now, _ := s.tokenClock()
	return cl, now.Before(time.Unix(cl.Exp, 0))
}

// withDefaults fills in the optional fields of c.
func withDefaults(c Credential) Credential {
	if c.UserID == "" {
		c.UserID = userID(c.ClientID)
	}
	if c.Email == "" {
		c.Email = c.ClientID + "@example.com"
	}
	if c.Name == "" {
		c.Name = "Client-Name-" + c.ClientID
	}
	return c
}

// userID derives a stable UUID-shaped user id from a client id. It is shaped
// as an RFC 9562 version 8 (custom) UUID, which is what it is.
func userID(clientID string) string {
	h := sha256.Sum256([]byte("piwik-standin user " + clientID))
	h[6] = h[6]&0x0f | 0x80 // version 8
	h[8] = h[8]&0x3f | 0x80 // RFC 9562 variant
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}
