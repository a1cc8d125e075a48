package piwik

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-secure-stdlib/parseutil"
	"github.com/hashicorp/vault/sdk/framework"
	"golang.org/x/net/idna"
)

// Bounds of the values the validators accept.
const (
	maxURLLength        = 2048
	maxCACertLength     = 1 << 20
	maxCredentialLength = 1024 // client_id and client_secret
)

// normalizeURL checks a Piwik PRO base URL and returns it without trailing
// slashes. Plain http is refused except for loopback hosts, where it lets a
// local stand-in be used.
func normalizeURL(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("required")
	}
	if len(raw) > maxURLLength {
		return "", fmt.Errorf("longer than %d characters", maxURLLength)
	}
	if strings.ContainsFunc(raw, isControl) {
		return "", errors.New("contains control characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("not a valid URL")
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return "", fmt.Errorf("scheme must be https, got %q", u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return "", errors.New("no host")
	case u.User != nil:
		return "", errors.New("must not carry user information; use client_id and client_secret")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", errors.New("must not have a query or fragment")
	case u.RawPath != "":
		// An escape such as %2F that decoding would change: the path
		// would be stored in one form and sent in another.
		return "", errors.New("path must not hold escaped characters such as %2F")
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return "", errors.New("must use https (plain http is allowed only for loopback hosts)")
	}
	host, err := asciiHost(u.Hostname())
	if err != nil {
		return "", err
	}
	if port := u.Port(); port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = host
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

// asciiHost returns host as it is dialled and stored: an IP literal, or a
// lower-case ASCII DNS name, with an internationalized name converted to
// its punycode form, so that what is stored, shown and dialled are one.
func asciiHost(host string) (string, error) {
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), nil
	}
	ascii, err := idna.Lookup.ToASCII(host)
	if err != nil {
		return "", errors.New("host is not a valid DNS name")
	}
	ascii = strings.ToLower(ascii)
	if strings.ContainsFunc(ascii, func(r rune) bool {
		return !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '.')
	}) {
		return "", errors.New("host is not a valid DNS name")
	}
	return ascii, nil
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validateCACert checks that pemData holds only parseable certificates.
func validateCACert(pemData string) error {
	if len(pemData) > maxCACertLength {
		return fmt.Errorf("larger than %d KiB", maxCACertLength>>10)
	}
	rest := []byte(pemData)
	count := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("PEM block %d is a %q, want CERTIFICATE", count+1, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("certificate %d does not parse: %w", count+1, err)
		}
		count++
	}
	if count == 0 || strings.TrimSpace(string(rest)) != "" {
		return errors.New("not a PEM bundle of certificates")
	}
	return nil
}

// credentialField checks a client_id or client_secret and returns it as it
// is stored: without the one trailing newline (LF or CRLF) that a value
// read from a file with @file ends with. Any other whitespace around it, or
// a control character inside, refuses the write; the error names the
// field, never the value.
func credentialField(field, value string) (string, error) {
	if trimmed, ok := strings.CutSuffix(value, "\r\n"); ok {
		value = trimmed
	} else {
		value = strings.TrimSuffix(value, "\n")
	}
	switch {
	case value == "":
		return "", fmt.Errorf("%s: must not be empty", field)
	case len(value) > maxCredentialLength:
		return "", fmt.Errorf("%s: longer than %d characters", field, maxCredentialLength)
	case strings.ContainsFunc(value, isControl):
		return "", fmt.Errorf("%s: contains control characters (one trailing newline, as a file read with @file ends, is dropped; no other)", field)
	case strings.TrimSpace(value) != value:
		return "", fmt.Errorf("%s: begins or ends with whitespace", field)
	}
	return value, nil
}

// secondsField returns the duration field name of d as it was given, when
// it was: a whole, non-negative number of seconds up to limit. The
// framework would truncate "500ms" or 1.9 to whole seconds, and turn a
// sub-second value, even a negative one, into 0, which every duration
// field of this plugin reads as "no cap" or "the default".
func secondsField(d *framework.FieldData, name string, limit time.Duration) (time.Duration, bool, error) {
	raw, ok := d.Raw[name]
	if !ok {
		return 0, false, nil
	}
	value, err := wholeSeconds(raw)
	switch {
	case err != nil:
		return 0, true, fmt.Errorf("%s: %w", name, err)
	case value > limit:
		return 0, true, fmt.Errorf("%s: must be at most %s", name, limit)
	}
	return value, true, nil
}

// wholeSeconds parses a duration given as seconds (a number, or a string
// such as "90") or with units ("90s", "10m", "1h30m", "1d").
func wholeSeconds(raw any) (time.Duration, error) {
	if n, ok := raw.(json.Number); ok {
		if i, err := n.Int64(); err == nil {
			raw = i
		} else if f, err := n.Float64(); err == nil {
			raw = f
		}
	}
	if f, ok := raw.(float32); ok {
		raw = float64(f)
	}
	if f, ok := raw.(float64); ok {
		switch {
		case math.Abs(f) > 1<<40:
			return 0, errors.New("out of range")
		case f != math.Trunc(f):
			return 0, errNotWholeSeconds
		}
	}
	value, err := parseutil.ParseDurationSecond(raw)
	switch {
	case err != nil:
		return 0, errors.New(`not a duration: give whole seconds ("90") or units ("90s", "10m")`)
	case value < 0:
		return 0, errors.New("must not be negative")
	case value%time.Second != 0:
		return 0, errNotWholeSeconds
	}
	return value, nil
}

var errNotWholeSeconds = errors.New("must be a whole number of seconds")

// isControl reports whether r is an ASCII control character, which no url
// or credential may hold.
func isControl(r rune) bool {
	return r < 0x20 || r == 0x7f
}
