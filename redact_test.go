package piwik

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

func TestRedactor_textRedactsAndBounds(t *testing.T) {
	got := newRedactor("s3cr3t").text("bad secret s3cr3t\n" + strings.Repeat("x", 500))
	if strings.Contains(got, "s3cr3t") || strings.Contains(got, "\n") || len([]rune(got)) > excerptLen+1 {
		t.Errorf("text = %q", got)
	}
}

// Realistic echoes of the secret (JSON \u escapes in mixed case, HTML
// entities decimal and hex, double percent-encoding, base64 of a JSON body,
// Go-quoted) are withheld. Some unrealistic ones pass (each character
// separated by a zero-width or other invisible character, fullwidth forms,
// reversal, base64 of base64, a Go []byte printed with %v, triple
// percent-encoding): they need an upstream that deliberately transforms the
// secret, and that upstream has the secret anyway. They are logged here, not
// asserted.
func TestRedactor_encodingsOfTheSecret(t *testing.T) {
	secret := "Zk3pQ9vT2mXw8Rb1Lc7Hn4Jd6Fs0Ga5Ye2Uo9Ii3Pq8Wr1Et7Yy4Mm6Nn0Bb2Vv"
	r := newRedactor(secret)
	var mixedU, decEnt, hexEnt, pct, goBytes strings.Builder
	for i, c := range []byte(secret) {
		if i%2 == 0 {
			fmt.Fprintf(&mixedU, `\u%04X`, c)
		} else {
			fmt.Fprintf(&mixedU, `\u%04x`, c)
		}
		fmt.Fprintf(&decEnt, "&#%d;", c)
		fmt.Fprintf(&hexEnt, "&#x%x;", c)
		fmt.Fprintf(&pct, "%%%02X", c)
		fmt.Fprintf(&goBytes, "%d ", c)
	}
	withheld := map[string]string{
		"mixed-case \\u escapes":  mixedU.String(),
		"decimal HTML entities":   decEnt.String(),
		"hex HTML entities":       hexEnt.String(),
		"double percent-encoding": strings.ReplaceAll(pct.String(), "%", "%25"),
		"base64 of a JSON body":   base64.StdEncoding.EncodeToString([]byte(`{"client_id":"x","client_secret":"` + secret + `"}`)),
		"Go-quoted, upper-cased":  fmt.Sprintf("%q", strings.ToUpper(secret)),
		"cut to 9 characters":     `client_secret "` + secret[20:29] + `..." is invalid`,
	}
	for name, echo := range withheld {
		if out := r.text("bad request: " + echo); out != echoedNotice {
			t.Errorf("%s: not withheld: %q", name, out)
		}
	}
	interleaved := func(sep string) string {
		var b strings.Builder
		for _, c := range secret {
			b.WriteRune(c)
			b.WriteString(sep)
		}
		return b.String()
	}
	for name, echo := range map[string]string{
		"zero-width joiners": interleaved("\u200d"),
		"Go []byte with %v":  "[" + goBytes.String() + "]",
		"base64 of base64":   base64.StdEncoding.EncodeToString([]byte(base64.StdEncoding.EncodeToString([]byte(secret)))),
	} {
		t.Logf("not withheld (unrealistic echo, not asserted): %s -> %.60q", name, r.text(echo))
	}
}

// False positives: for random 32-64 character secrets, ordinary upstream
// errors (Piwik PRO's own bodies, proxy pages, ids, hex trace ids, base64
// request ids) are never withheld.
func TestRedactor_noFalsePositivesForRandomSecrets(t *testing.T) {
	bodies := []string{
		`{"error":"invalid_client","error_description":"Client authentication failed","hint":"Check the client_id parameter","message":"Client authentication failed"}`,
		`{"error":"unsupported_grant_type","error_description":"The authorization grant type is not supported by the authorization server.","hint":"Check that all required parameters have been provided"}`,
		`{"code":402,"message":"There is no active license for \"default\" organization"}`,
		`{"errors":[{"status":"500","detail":"Internal Server Error","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7"}]}`,
		`upstream connect error or disconnect/reset before headers. reset reason: connection termination x-request-id: 5d3f6c1e-8a2b-4c7d-9e0f-1a2b3c4d5e6f`,
		`{"message":"Service Unavailable","requestId":"Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2FsZG8="}`,
	}
	const alphabets = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	rng := rand.New(rand.NewPCG(1, 2))
	withheld := 0
	for i := range 2000 {
		alphabet := alphabets
		if i%2 == 0 {
			alphabet = "0123456789abcdef" // hex secrets meet hex ids
		}
		b := make([]byte, 32+rng.IntN(33))
		for j := range b {
			b[j] = alphabet[rng.IntN(len(alphabet))]
		}
		r := newRedactor(string(b))
		for _, body := range bodies {
			if r.describeBody("application/json", []byte(body)) == `body "`+echoedNotice+`"` {
				withheld++
			}
		}
	}
	if withheld > 0 {
		t.Errorf("%d ordinary upstream errors withheld for random secrets", withheld)
	}
}

func TestRedactor_echoedSecretsAreRedacted(t *testing.T) {
	modes := []string{standin.EchoBody, standin.EchoRaw, standin.EchoJSON, standin.EchoURL, standin.EchoQuoted, standin.EchoTokenType, standin.EchoLocation}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			e.piwik.AddCredential(standin.Credential{ClientID: "special", ClientSecret: specialSecret})
			e.rememberSecret(specialSecret)
			e.rememberSecret(secretCore)
			e.writeConfig(map[string]any{"client_id": "special", "client_secret": specialSecret, "max_retries": 1})
			e.mustDo(logical.CreateOperation, "roles/r", nil)
			e.mustDo(logical.CreateOperation, "roles/own", map[string]any{"client_id": "special", "client_secret": specialSecret})
			e.piwik.SetFault(standin.Fault{Kind: standin.FaultEcho, Echo: mode})

			for _, r := range []request{
				{logical.ReadOperation, "creds/r", nil},
				{logical.ReadOperation, "creds/own", nil},
				{logical.ReadOperation, "check", nil},
				{logical.UpdateOperation, "config", map[string]any{"client_secret": specialSecret}},
				{logical.UpdateOperation, "roles/own", map[string]any{"client_secret": specialSecret}},
			} {
				resp, err := e.do(r.op, r.path, r.data)
				if status, _ := statusOf(resp, err); status == http.StatusOK && r.op == logical.ReadOperation && r.path != "check" {
					t.Errorf("%s %s succeeded against a hostile echo", r.op, r.path)
				}
				e.assertNoSecret(string(r.op)+" "+r.path, responseText(t, resp, err))
			}
		})
	}
}

// An upstream that quotes part of the secret (cut short, or split between
// error and error_description) gets neither most of it nor both its halves
// into the error a reader sees or into the log.
func TestRedactor_partialEchoOfTheSecretIsWithheld(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply func(secret string) string
	}{
		{"truncated", func(s string) string {
			return `{"error":"invalid_request","error_description":"client_secret '` + s[:len(s)-2] + `...' is malformed"}`
		}},
		{"split across fields", func(s string) string {
			return `{"error":"` + s[:len(s)/2] + `","error_description":"` + s[len(s)/2:] + `"}`
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
				secret, _ := requestSecret(r)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = io.WriteString(w, tc.reply(secret))
			}, nil)
			_, msg := statusOf(e.do(logical.ReadOperation, "creds/r", nil))
			t.Logf("creds/r error: %s", msg)
			head, tail := testClientSecret[:len(testClientSecret)/2], testClientSecret[len(testClientSecret)/2:]
			if strings.Contains(msg, testClientSecret[:len(testClientSecret)-2]) || (strings.Contains(msg, head) && strings.Contains(msg, tail)) {
				t.Errorf("the error a creds reader gets holds most or all of the client secret %q", testClientSecret)
			}
			if logs := e.logs.String(); strings.Contains(logs, testClientSecret[:len(testClientSecret)-2]) || strings.Contains(logs, head) && strings.Contains(logs, tail) {
				t.Errorf("the warn log holds most or all of the client secret")
			}
		})
	}
}

// A gateway that echoes the request body base64-encoded (a common debug
// format) does not get the secret into the error in that form either.
func TestRedactor_base64EchoOfTheRequestIsWithheld(t *testing.T) {
	e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
		_, body := requestSecret(r)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, base64.StdEncoding.EncodeToString(body))
	}, nil)
	_, msg := statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("creds/r error: %s", msg)
	// Decode the longest base64 run of the message, cut to whole quanta.
	start := strings.Index(msg, `body "`) + len(`body "`)
	run := msg[start:]
	if i := strings.IndexAny(run, `"…`); i >= 0 {
		run = run[:i]
	}
	decoded, _ := base64.StdEncoding.DecodeString(run[:len(run)/4*4])
	t.Logf("base64 in the error decodes to: %s", decoded)
	if bytes.Contains(decoded, []byte(testClientSecret)) {
		t.Errorf("the error a creds reader gets holds the client secret, base64-encoded")
	}
}

// The secret upper-cased (here in a redirect's host, which is
// case-insensitive, so a server may well fold it) is withheld too: for a
// secret of lower-case letters, digits and dashes, as the test's is, that is
// the secret.
func TestRedactor_caseFoldedEchoOfTheSecretIsWithheld(t *testing.T) {
	e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
		secret, _ := requestSecret(r)
		w.Header().Set("Location", "https://"+strings.ToUpper(secret)+".collector.example/")
		w.WriteHeader(http.StatusFound)
	}, nil)
	_, msg := statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("creds/r error: %s", msg)
	if strings.Contains(strings.ToLower(msg), testClientSecret) {
		t.Errorf("the error a creds reader gets holds the client secret, upper-cased")
	}
}

// C1 controls (U+0080-U+009F, among them U+009B, the 8-bit CSI) and bidi
// overrides (U+202E) in an upstream's error fields never reach the error a
// reader sees, which the vault CLI prints to the terminal as it is.
func TestRedactor_c1ControlsAndBidiOverridesAreReplaced(t *testing.T) {
	e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"invalid_request","error_description":"see \u009b2J\u009b31m and \u202edetacilpmoc\u202c"}`)
	}, nil)
	_, msg := statusOf(e.do(logical.ReadOperation, "creds/r", nil))
	t.Logf("creds/r error: %q", msg)
	if strings.ContainsAny(msg, "\u009b\u202e") {
		t.Errorf("the reader's error carries raw C1 controls or bidi overrides from the upstream")
	}
}

// The secret in the headers and fields a 200 reply can carry.
func TestRedactor_secretInContentTypeRetryAfterAndExpiresIn(t *testing.T) {
	good := testJWT(map[string]any{"sub": "u"})
	for _, tc := range []struct {
		name   string
		status int
		header map[string]string
		body   func(secret string) string
	}{
		{"content type", 200, nil, nil},
		{"retry-after", 429, map[string]string{"Retry-After": "SECRET"}, nil},
		{"expires_in string", 200, nil, func(s string) string {
			return `{"token_type":"Bearer","expires_in":"` + s + `","access_token":"` + good + `"}`
		}},
		{"expires_in huge", 200, nil, func(s string) string {
			return `{"token_type":"Bearer","expires_in":1e999,"access_token":"` + good + `"}`
		}},
		{"access_token", 200, nil, func(s string) string { return `{"token_type":"Bearer","expires_in":60,"access_token":"a b ` + s + `"}` }},
		{"402 message", 402, nil, func(s string) string { return `{"message":"` + s + `"}` }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
				secret, _ := requestSecret(r)
				ct := "application/json"
				if tc.name == "content type" {
					ct = "text/plain; note=" + secret
				}
				w.Header().Set("Content-Type", ct)
				for k, v := range tc.header {
					w.Header().Set(k, strings.ReplaceAll(v, "SECRET", secret))
				}
				w.WriteHeader(tc.status)
				if tc.body != nil {
					_, _ = io.WriteString(w, tc.body(secret))
				} else {
					_, _ = io.WriteString(w, reply("Bearer", 60, good))
				}
			}, nil)
			resp, err := e.do(logical.ReadOperation, "creds/r", nil)
			if code, _ := statusOf(resp, err); code == http.StatusOK {
				t.Errorf("accepted")
			}
			e.assertNoSecret(tc.name, responseText(t, resp, err))
		})
	}
}

// TestSecrets_appearInNoResponseErrorWarningOrLog drives every path under
// every upstream failure mode and checks that no client secret and no token
// shows up anywhere but in the access_token field of the creds read that
// issued it. The env's cleanup also scans everything the backend logged at
// trace level, and the stand-in reports every token it issued, including
// those minted only to verify credentials.
func TestSecrets_appearInNoResponseErrorWarningOrLog(t *testing.T) {
	faults := []standin.FaultKind{
		standin.FaultNone, standin.FaultRateLimit, standin.FaultNoLicense, standin.FaultServerError,
		standin.FaultBadGateway, standin.FaultUnavailable, standin.FaultGatewayTimeout,
		standin.FaultCloseConnection, standin.FaultHang, standin.FaultSlow, standin.FaultTrickle,
		standin.FaultHuge, standin.FaultHTML, standin.FaultTruncated, standin.FaultNoAccessToken,
		standin.FaultZeroExpiry, standin.FaultNegativeExpiry, standin.FaultAbsurdExpiry,
		standin.FaultWrongTokenType, standin.FaultExpiredJWT, standin.FaultShortJWT, standin.FaultBadJWT,
	}
	for _, kind := range faults {
		t.Run(string(kind)+"_", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.writeConfig(map[string]any{"request_timeout": "1s", "max_retries": 1})
			e.mustDo(logical.CreateOperation, "roles/own", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
			e.mustDo(logical.CreateOperation, "roles/shared", map[string]any{"token_reuse": true})
			e.piwik.SetFault(standin.Fault{Kind: kind, Delay: 400 * time.Millisecond, RetryAfter: 30})

			requests := []request{
				{logical.ReadOperation, "creds/own", nil},
				{logical.ReadOperation, "creds/shared", nil},
				{logical.ReadOperation, "creds/shared", nil},
				{logical.UpdateOperation, "config", map[string]any{"client_secret": testClientSecret}},
				{logical.UpdateOperation, "roles/own", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret + "-new"}},
				{logical.ReadOperation, "check", nil},
				{logical.ReadOperation, "metrics", nil},
				{logical.ReadOperation, "config", nil},
				{logical.ReadOperation, "roles/own", nil},
				{logical.ListOperation, "roles/", nil},
			}
			e.rememberSecret(roleClientSecret + "-new")
			for _, r := range requests {
				resp, err := e.do(r.op, r.path, r.data)
				e.assertNoSecret(string(r.op)+" "+r.path, responseText(t, withoutIssuedToken(resp), err))
			}
		})
	}
}

// withoutIssuedToken returns resp without the one field that is meant to
// carry a token.
func withoutIssuedToken(resp *logical.Response) *logical.Response {
	if resp == nil || resp.Data == nil {
		return resp
	}
	copied := *resp
	copied.Data = maps.Clone(resp.Data)
	delete(copied.Data, "access_token")
	return &copied
}
