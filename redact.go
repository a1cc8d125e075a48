package piwik

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// excerptLen bounds how much of an upstream text ends up in an error.
const excerptLen = 120

// redactedMark replaces a secret found in upstream text.
const redactedMark = "[redacted]"

// echoedNotice replaces a whole upstream text that still holds the secret
// in some encoding after the known forms were replaced.
const echoedNotice = "[reply withheld: it echoed the client secret]"

// redactor scrubs one client secret from text that came from Piwik PRO (or
// from whatever answers at its URL) before the text reaches an error, a
// warning or a log. Every upstream string passes through text; nothing
// else in the plugin quotes the upstream. It is cheap to make: the work is
// done only when there is text to scrub, which is on failures.
type redactor struct {
	secret string
}

func newRedactor(secret string) redactor {
	return redactor{secret: secret}
}

// leakRun is how many consecutive characters of the secret, in any letter
// case, make an upstream text withheld: enough to tell a random secret
// from words, few enough that a secret cut short or split in two halves
// is still caught.
const leakRun = 8

// text is how upstream text enters a message: the secret replaced in each
// of its known forms, characters that are not printable replaced, cut to
// excerptLen runes, and then withheld whole if what is left still holds a
// run of leakRun characters of the secret, as it is or in any decoding.
func (r redactor) text(s string) string {
	if r.secret != "" {
		for _, f := range secretForms(r.secret) {
			s = strings.ReplaceAll(s, f, redactedMark)
		}
	}
	s = strings.Map(func(c rune) rune {
		if !unicode.IsPrint(c) {
			return ' '
		}
		return c
	}, s)
	if runes := []rune(s); len(runes) > excerptLen {
		s = string(runes[:excerptLen]) + "…"
	}
	if r.secret != "" && r.leaks(s) {
		return echoedNotice
	}
	return s
}

// secretForms returns the encodings the secret can be echoed in: raw,
// escaped inside a JSON string (with and without HTML escaping, with
// escaped slashes, ASCII-only), percent-encoded (query and path style,
// either hex case) and Go-quoted. Longest first, so that a form containing
// another is replaced whole.
func secretForms(secret string) []string {
	seen := map[string]bool{}
	var forms []string
	add := func(f string) {
		if f != "" && !seen[f] {
			seen[f] = true
			forms = append(forms, f)
		}
	}
	add(secret)
	for _, f := range jsonForms(secret) {
		add(f)
		add(strings.ReplaceAll(f, "/", `\/`))
	}
	for _, f := range []string{url.QueryEscape(secret), url.PathEscape(secret)} {
		add(f)
		add(lowerPercentHex(f))
	}
	add(unquoted(strconv.Quote(secret)))
	add(unquoted(strconv.QuoteToASCII(secret)))
	slices.SortStableFunc(forms, func(a, b string) int { return len(b) - len(a) })
	return forms
}

// leaks reports whether s, or any decoding of it, holds leakRun
// consecutive characters of the secret, ignoring letter case.
func (r redactor) leaks(s string) bool {
	secret := strings.ToLower(r.secret)
	run := min(leakRun, len(secret))
	pieces := make(map[string]bool, len(secret))
	for i := 0; i+run <= len(secret); i++ {
		pieces[secret[i:i+run]] = true
	}
	for _, variant := range append(decodings(s), s) {
		variant = strings.ToLower(variant)
		for i := 0; i+run <= len(variant); i++ {
			if pieces[variant[i:i+run]] {
				return true
			}
		}
	}
	return false
}

// jsonForms returns secret as it appears inside a JSON string written by
// common encoders: Go's (HTML-escaped), plain, and ASCII-only with \u
// escapes in either hex case.
func jsonForms(secret string) []string {
	htmlEscaped, _ := json.Marshal(secret)
	var plain bytes.Buffer
	enc := json.NewEncoder(&plain)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(secret)
	ascii := asciiJSON(unquoted(strings.TrimSpace(plain.String())))
	return []string{
		unquoted(string(htmlEscaped)),
		unquoted(strings.TrimSpace(plain.String())),
		ascii,
		upperUnicodeEscapes(ascii),
	}
}

// asciiJSON rewrites every non-ASCII rune of an escaped JSON string body
// as \uXXXX (lower-case hex, surrogate pairs beyond the BMP).
func asciiJSON(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf:
			b.WriteRune(r)
		case r > 0xFFFF:
			hi, lo := utf16.EncodeRune(r)
			fmt.Fprintf(&b, `\u%04x\u%04x`, hi, lo)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

// upperUnicodeEscapes upper-cases the hex digits of every \uXXXX in s.
func upperUnicodeEscapes(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+6 <= len(s) && s[i+1] == 'u' {
			b.WriteString(`\u` + strings.ToUpper(s[i+2:i+6]))
			i += 5
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// lowerPercentHex lower-cases the hex digits of every %XX in s.
func lowerPercentHex(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+3 <= len(s) {
			b.WriteString("%" + strings.ToLower(s[i+1:i+3]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unquoted drops the surrounding quotes of a quoted string.
func unquoted(q string) string {
	if len(q) >= 2 {
		return q[1 : len(q)-1]
	}
	return q
}

// decodings returns s decoded by each decoder the secret could hide behind
// (JSON/Go backslash escapes, percent-encoding, HTML entities), and by each
// pair of them, for nested encodings, plus what its base64 and hex runs
// decode to.
func decodings(s string) []string {
	decoders := []func(string) string{
		unescapeBackslashes,
		func(s string) string { return unescapePercent(s, false) },
		func(s string) string { return unescapePercent(s, true) },
		html.UnescapeString,
	}
	out := binaryRuns(s)
	for _, first := range decoders {
		once := first(s)
		out = append(out, once)
		for _, second := range decoders {
			out = append(out, second(once))
		}
	}
	return out
}

var (
	base64Run = regexp.MustCompile(`[A-Za-z0-9+/_-]{12,}`)
	hexRun    = regexp.MustCompile(`[0-9A-Fa-f]{16,}`)
)

// binaryRuns decodes every base64 run of s (either alphabet, from each of
// the four offsets a cut-off run can start at) and every hex run (from
// either offset).
func binaryRuns(s string) []string {
	var out []string
	for _, run := range base64Run.FindAllString(s, -1) {
		std := strings.NewReplacer("-", "+", "_", "/").Replace(run)
		for off := range 4 {
			chunk := std[off:]
			if decoded, err := base64.RawStdEncoding.DecodeString(chunk[:len(chunk)/4*4]); err == nil {
				out = append(out, string(decoded))
			}
		}
	}
	for _, run := range hexRun.FindAllString(s, -1) {
		for off := range 2 {
			chunk := run[off:]
			if decoded, err := hex.DecodeString(chunk[:len(chunk)/2*2]); err == nil {
				out = append(out, string(decoded))
			}
		}
	}
	return out
}

// unescapeBackslashes decodes the backslash escapes of JSON and Go string
// literals (\" \\ \/ \n \t \uXXXX with surrogate pairs, \xNN), leaving
// anything it does not recognise as it is.
func unescapeBackslashes(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		c := s[i+1]
		switch c {
		case '"', '\\', '/', '\'':
			b.WriteByte(c)
			i++
		case 'n':
			b.WriteByte('\n')
			i++
		case 't':
			b.WriteByte('\t')
			i++
		case 'r':
			b.WriteByte('\r')
			i++
		case 'u':
			r, width := decodeUnicodeEscape(s[i:])
			if width == 0 {
				b.WriteByte(s[i])
				continue
			}
			b.WriteRune(r)
			i += width - 1
		case 'x':
			v, ok := hexByte(s, i+2)
			if !ok {
				b.WriteByte(s[i])
				continue
			}
			b.WriteByte(v)
			i += 3
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// decodeUnicodeEscape decodes \uXXXX (and a following low surrogate) at
// the start of s, returning the rune and the bytes used (0 when invalid).
func decodeUnicodeEscape(s string) (rune, int) {
	v, err := strconv.ParseUint(safeSlice(s, 2, 6), 16, 32)
	if err != nil {
		return 0, 0
	}
	r := rune(v)
	if utf16.IsSurrogate(r) && strings.HasPrefix(safeSlice(s, 6, 8), `\u`) {
		if lo, err := strconv.ParseUint(safeSlice(s, 8, 12), 16, 32); err == nil {
			if pair := utf16.DecodeRune(r, rune(lo)); pair != utf8.RuneError {
				return pair, 12
			}
		}
	}
	return r, 6
}

// unescapePercent decodes %XX sequences (either hex case), and '+' as a
// space when plusIsSpace, leaving malformed sequences as they are.
func unescapePercent(s string, plusIsSpace bool) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+' && plusIsSpace:
			c = ' '
		case c == '%':
			if v, ok := hexByte(s, i+1); ok {
				c = v
				i += 2
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// hexByte decodes the two hex digits (either case) at s[from:], false when
// there are none.
func hexByte(s string, from int) (byte, bool) {
	v, err := strconv.ParseUint(safeSlice(s, from, from+2), 16, 8)
	return byte(v), err == nil
}

// safeSlice is s[from:to], or "" when that is out of range.
func safeSlice(s string, from, to int) string {
	if from < 0 || to > len(s) || from > to {
		return ""
	}
	return s[from:to]
}
