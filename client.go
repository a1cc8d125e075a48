package piwik

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-cleanhttp"
)

const (
	// tokenPath is Piwik PRO's OAuth2 token endpoint, relative to the
	// account's base URL.
	tokenPath = "/auth/token"

	// maxReplyBytes caps how much of a token reply is read. A real reply is
	// about 1.5 KiB; anything near this size is not a token reply.
	maxReplyBytes = 64 << 10

	// excerptLen bounds how much of an unexpected reply ends up in an error.
	excerptLen = 120

	// Backoff between retried attempts: base doubles per attempt up to cap,
	// and each wait is drawn uniformly from [wait/2, wait] (jitter), so many
	// Vault nodes retrying at once do not hit Piwik PRO in lockstep.
	retryBaseDelay = 250 * time.Millisecond
	retryMaxDelay  = 4 * time.Second

	// maxIdleConnsPerHost bounds the kept-alive connections to Piwik PRO.
	maxIdleConnsPerHost = 32
)

// Credentials are one Piwik PRO API credential: the client id and secret of
// the Piwik PRO user whose permissions the tokens carry.
type Credentials struct {
	ClientID     string
	ClientSecret string
}

// ClientOptions configure a Client.
type ClientOptions struct {
	// BaseURL is the account URL, already validated and normalised (no
	// trailing slash).
	BaseURL string
	// Timeout bounds a whole token request, retries included.
	Timeout time.Duration
	// MaxRetries is how many times a transient failure is retried.
	MaxRetries int
	// CACert, when set, is the only set of roots trusted for BaseURL.
	CACert string
	// UserAgent is sent with every request.
	UserAgent string
	// OnAttempt, when set, is called after every HTTP request, retries
	// included, with the ctx given to Token.
	OnAttempt func(context.Context, Attempt)
}

// Attempt describes one HTTP request to the token endpoint.
type Attempt struct {
	// Retry is 0 for the first request, then 1, 2, ...
	Retry int
	// Status is the reply's HTTP status, 0 when none arrived.
	Status  int
	Latency time.Duration
	// Err is nil on success, else what went wrong (an *UpstreamError for
	// every failure the network or Piwik PRO caused).
	Err error
}

// Client requests tokens from Piwik PRO's auth API. It knows nothing of
// Vault and is safe for concurrent use.
type Client struct {
	tokenURL   string
	host       string
	timeout    time.Duration
	maxRetries int
	userAgent  string
	onAttempt  func(context.Context, Attempt)
	http       *http.Client
}

// NewClient builds a Client with its own pooled transport.
func NewClient(opts ClientOptions) (*Client, error) {
	u, err := url.Parse(opts.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse url: %w", err)
	}
	transport := cleanhttp.DefaultPooledTransport()
	// The pooled default keeps GOMAXPROCS+1 idle connections per host; a
	// burst of concurrent mints would then open (and TLS-handshake) new
	// connections to the one Piwik PRO host over and over.
	transport.MaxIdleConnsPerHost = maxIdleConnsPerHost
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.CACert != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(opts.CACert)) {
			return nil, errors.New("ca_cert holds no PEM certificate")
		}
		transport.TLSClientConfig.RootCAs = pool
	}
	return &Client{
		tokenURL:   opts.BaseURL + tokenPath,
		host:       u.Host,
		timeout:    opts.Timeout,
		maxRetries: opts.MaxRetries,
		userAgent:  opts.UserAgent,
		onAttempt:  opts.OnAttempt,
		// The context carries the deadline; the client timeout is only a
		// backstop should a caller ever pass a context without one.
		http: &http.Client{Transport: transport, Timeout: opts.Timeout + time.Second},
	}, nil
}

// Close releases idle connections.
func (c *Client) Close() {
	c.http.CloseIdleConnections()
}

// Token asks Piwik PRO for a new access token for creds. Transient failures
// (connection errors, 429, 502, 503, 504) are retried with jittered
// exponential backoff, all within the client's timeout and ctx. The returned
// error is an *UpstreamError for every failure Piwik PRO or the network
// caused.
func (c *Client) Token(ctx context.Context, creds Credentials) (*Token, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	body, err := json.Marshal(map[string]string{
		"grant_type":    "client_credentials",
		"client_id":     creds.ClientID,
		"client_secret": creds.ClientSecret,
	})
	if err != nil {
		return nil, fmt.Errorf("encode token request: %w", err)
	}

	for attempt := 0; ; attempt++ {
		tok, err := c.observedTokenOnce(ctx, attempt, body, creds.ClientSecret)
		if err == nil {
			return tok, nil
		}
		upErr := new(UpstreamError)
		if !errors.As(err, &upErr) || !upErr.transient() || attempt >= c.maxRetries {
			return nil, withAttempts(err, attempt+1)
		}
		wait := backoff(attempt)
		if upErr.RetryAfter > 0 {
			wait = upErr.RetryAfter
		}
		if !fitsBudget(ctx, wait) {
			return nil, withAttempts(err, attempt+1)
		}
		if err := sleepCtx(ctx, wait); err != nil {
			return nil, withAttempts(c.contextError(ctx), attempt+1)
		}
	}
}

// observedTokenOnce is tokenOnce, reported to the OnAttempt hook.
func (c *Client) observedTokenOnce(ctx context.Context, retry int, body []byte, secret string) (*Token, error) {
	start := time.Now()
	tok, status, err := c.tokenOnce(ctx, body, secret)
	if c.onAttempt != nil {
		c.onAttempt(ctx, Attempt{Retry: retry, Status: status, Latency: time.Since(start), Err: err})
	}
	return tok, err
}

// tokenOnce makes one token request and returns the token, or the status
// of the reply (0 when none arrived) and what was wrong with it.
func (c *Client) tokenOnce(ctx context.Context, body []byte, secret string) (*Token, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.tokenURL, bytes.NewReader(body))
	if err != nil {
		return nil, 0, fmt.Errorf("build token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)

	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, c.transportError(ctx, err)
	}
	defer resp.Body.Close()

	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes+1))
	if err != nil {
		return nil, resp.StatusCode, c.transportError(ctx, err)
	}
	if len(reply) > maxReplyBytes {
		return nil, resp.StatusCode, &UpstreamError{Kind: KindBadReply, Status: resp.StatusCode,
			Detail: fmt.Sprintf("reply is larger than %d KiB", maxReplyBytes>>10)}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, statusError(resp, reply, secret)
	}
	tok, err := parseTokenReply(resp.Header.Get("Content-Type"), reply, time.Now())
	return tok, resp.StatusCode, err
}

// transportError classifies a failure to get a complete reply at all.
func (c *Client) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return c.contextError(ctx)
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return &UpstreamError{Kind: KindTimeout, Detail: fmt.Sprintf("no complete reply from %s within request_timeout %s", c.host, c.timeout)}
	}
	if isTLSError(err) {
		return &UpstreamError{Kind: KindTLS, Detail: fmt.Sprintf("TLS with %s failed: %s", c.host, rootCause(err))}
	}
	return &UpstreamError{Kind: KindUnreachable, Detail: fmt.Sprintf("cannot reach %s: %s", c.host, rootCause(err))}
}

// contextError explains why ctx ended: our own timeout or the caller.
func (c *Client) contextError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &UpstreamError{Kind: KindTimeout, Detail: fmt.Sprintf("no complete reply from %s within request_timeout %s", c.host, c.timeout)}
	}
	return fmt.Errorf("token request to %s canceled: %w", c.host, ctx.Err())
}

// isTLSError reports whether err came from certificate checks or the TLS
// handshake.
func isTLSError(err error) bool {
	var (
		unknownAuth x509.UnknownAuthorityError
		hostname    x509.HostnameError
		invalid     x509.CertificateInvalidError
		verify      *tls.CertificateVerificationError
		record      tls.RecordHeaderError
		alert       tls.AlertError
	)
	return errors.As(err, &unknownAuth) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &record) || errors.As(err, &alert)
}

// rootCause drops the "Post <url>:" wrapping net/http adds, which repeats
// what the error already says about the host.
func rootCause(err error) string {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	return err.Error()
}

// statusError turns a non-200 reply into an UpstreamError.
func statusError(resp *http.Response, reply []byte, secret string) error {
	e := &UpstreamError{Status: resp.StatusCode}
	var oauth struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		Message     string `json:"message"`
	}
	_ = json.Unmarshal(reply, &oauth)
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		e.Kind = KindRateLimited
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	case resp.StatusCode == http.StatusPaymentRequired:
		e.Kind = KindNoLicense
		e.Detail = excerpt(oauth.Message, secret)
	case oauth.Error == "invalid_client":
		e.Kind = KindCredentials
	case resp.StatusCode == http.StatusUnauthorized:
		e.Kind = KindCredentials
	case resp.StatusCode >= 500:
		e.Kind = KindServer
		e.Detail = describeBody(resp.Header.Get("Content-Type"), reply, secret)
	default:
		e.Kind = KindUnexpected
		if oauth.Error != "" {
			e.Detail = excerpt(oauth.Error+": "+firstNonEmpty(oauth.Description, oauth.Message), secret)
		} else {
			e.Detail = describeBody(resp.Header.Get("Content-Type"), reply, secret)
		}
	}
	return e
}

// parseRetryAfter reads a Retry-After header in either of its forms
// (seconds, or an HTTP date). It returns 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(min(secs, 86400)) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return at.Sub(now)
	}
	return 0
}

// describeBody summarises a reply body for an error message: a short,
// printable excerpt of JSON or text, and never the markup of an HTML page.
func describeBody(contentType string, body []byte, secret string) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return "empty body"
	}
	if looksLikeHTML(contentType, body) {
		return fmt.Sprintf("an HTML page (%d bytes), not JSON", len(body))
	}
	return fmt.Sprintf("body %q", excerpt(string(body), secret))
}

// looksLikeHTML reports whether a reply is an HTML page, by its declared
// type or by its first byte.
func looksLikeHTML(contentType string, body []byte) bool {
	mediaType, _, _ := mime.ParseMediaType(contentType)
	if mediaType == "text/html" || mediaType == "application/xhtml+xml" {
		return true
	}
	return bytes.HasPrefix(bytes.TrimSpace(body), []byte("<"))
}

// excerpt shortens s to excerptLen runes, keeps only printable characters
// and removes secret should the upstream have echoed it.
func excerpt(s, secret string) string {
	if secret != "" {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > excerptLen {
		s = string(r[:excerptLen]) + "…"
	}
	return s
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// backoff returns the jittered wait before retry number attempt+1.
func backoff(attempt int) time.Duration {
	wait := retryBaseDelay << min(attempt, 16)
	if wait > retryMaxDelay {
		wait = retryMaxDelay
	}
	return wait/2 + rand.N(wait/2+1)
}

// fitsBudget reports whether waiting d still leaves ctx time for a request.
func fitsBudget(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) > d
}

// sleepCtx waits d or until ctx ends, whichever is first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// withAttempts records on an UpstreamError how many requests were made.
func withAttempts(err error, attempts int) error {
	var upErr *UpstreamError
	if errors.As(err, &upErr) {
		upErr.Attempts = attempts
	}
	return err
}
