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
	"net"
	"net/http"
	"net/url"
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

	// maxHeaderBytes caps the reply's headers, which net/http would
	// otherwise read up to 1 MiB of.
	maxHeaderBytes = 64 << 10

	// Backoff between retried attempts: base doubles per attempt up to cap,
	// and each wait is drawn uniformly from [wait/2, wait] (jitter), so many
	// Vault nodes retrying at once do not hit Piwik PRO in lockstep.
	retryBaseDelay = 250 * time.Millisecond
	retryMaxDelay  = 4 * time.Second

	// maxTimedAttempts is how many attempts request_timeout is divided
	// between: with retries on, one attempt that hangs leaves time for the
	// next one instead of eating the whole budget.
	maxTimedAttempts = 3

	// maxIdleConnsPerHost bounds the kept-alive connections to Piwik PRO.
	maxIdleConnsPerHost = 32
)

// credentials are one Piwik PRO API credential: the client id and secret of
// the Piwik PRO user whose permissions the tokens carry.
type credentials struct {
	ClientID     string
	ClientSecret string
}

// clientOptions configure a client.
type clientOptions struct {
	// BaseURL is the account URL, already validated and normalised (ASCII
	// host, no trailing slash).
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
	// included, with the ctx given to mint.
	OnAttempt func(context.Context, attempt)
	// Now is the clock a token's send time and deadline are read from;
	// default time.Now.
	Now func() time.Time
}

// attempt describes one HTTP request to the token endpoint.
type attempt struct {
	// Retry is 0 for the first request, then 1, 2, ...
	Retry int
	// Status is the reply's HTTP status, 0 when none arrived.
	Status  int
	Latency time.Duration
	// Err is nil on success, else what went wrong, already scrubbed of
	// the secret (an *upstreamError for every failure the network or
	// Piwik PRO caused).
	Err error
}

// client requests tokens from Piwik PRO's auth API. It knows nothing of
// Vault and is safe for concurrent use. It sends a credential only to
// tokenURL: redirects are refused, not followed.
type client struct {
	tokenURL       string
	host           string
	timeout        time.Duration
	attemptTimeout time.Duration
	maxRetries     int
	userAgent      string
	onAttempt      func(context.Context, attempt)
	now            func() time.Time
	http           *http.Client
}

// newClient builds a client with its own pooled transport.
func newClient(opts clientOptions) (*client, error) {
	u, err := url.Parse(opts.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse url: %w", err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	transport := cleanhttp.DefaultPooledTransport()
	// The pooled default keeps GOMAXPROCS+1 idle connections per host; a
	// burst of concurrent mints would then open (and TLS-handshake) new
	// connections to the one Piwik PRO host over and over.
	transport.MaxIdleConnsPerHost = maxIdleConnsPerHost
	transport.MaxResponseHeaderBytes = maxHeaderBytes
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.CACert != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(opts.CACert)) {
			return nil, errors.New("ca_cert holds no PEM certificate")
		}
		transport.TLSClientConfig.RootCAs = pool
	}
	return &client{
		tokenURL:       opts.BaseURL + tokenPath,
		host:           u.Host,
		timeout:        opts.Timeout,
		attemptTimeout: opts.Timeout / time.Duration(min(opts.MaxRetries+1, maxTimedAttempts)),
		maxRetries:     opts.MaxRetries,
		userAgent:      opts.UserAgent,
		onAttempt:      opts.OnAttempt,
		now:            opts.Now,
		http: &http.Client{
			Transport: transport,
			// The secret is in the body: a 307/308 would re-send it to
			// wherever Location points, a 301/302/303 would fetch a
			// "token" from there. The 3xx itself is the answer.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			// The contexts carry the deadlines; this is only a backstop.
			Timeout: opts.Timeout + time.Second,
		},
	}, nil
}

// close releases idle connections.
func (c *client) close() {
	c.http.CloseIdleConnections()
}

// mint asks Piwik PRO for a new access token for creds. Transient failures
// (no connection, a hung attempt, 429, 5xx but 501) are retried with
// jittered exponential backoff, all within the client's timeout and ctx;
// each attempt has its own share of the timeout. Every request first
// passes g, the credential's gate (nil for none): a first attempt inside a
// rate-limit or backoff window fails at once without a request, a retry
// waits the window out when it fits the budget. The returned error is an
// *upstreamError for every failure Piwik PRO or the network caused, and
// holds no trace of the secret.
func (c *client) mint(ctx context.Context, creds credentials, g *gate) (*token, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, c.timeout, errRequestTimeout)
	defer cancel()

	body, err := json.Marshal(map[string]string{
		"grant_type":    "client_credentials",
		"client_id":     creds.ClientID,
		"client_secret": creds.ClientSecret,
	})
	if err != nil {
		return nil, fmt.Errorf("encode token request: %w", err)
	}
	red := newRedactor(creds.ClientSecret)

	var lastErr error
	for n := 0; ; n++ {
		if err := c.waitTurn(ctx, g, lastErr); err != nil {
			return nil, err
		}
		tok, err := c.observedAttempt(ctx, n, body, red)
		g.release(err)
		if err == nil {
			return tok, nil
		}
		lastErr = withAttempts(err, n+1)
		upErr := new(upstreamError)
		if !errors.As(err, &upErr) || !upErr.transient() || n >= c.maxRetries || ctx.Err() != nil {
			return nil, lastErr
		}
		wait := backoff(n)
		if upErr.RetryAfter > 0 {
			wait = upErr.RetryAfter
		}
		if !fitsBudget(ctx, wait) {
			return nil, lastErr
		}
		if err := sleepCtx(ctx, wait); err != nil {
			return nil, withAttempts(c.contextError(ctx), n+1)
		}
	}
}

// waitTurn takes a slot of g for the next attempt. The first attempt
// (lastErr nil) fails fast inside a window; a retry waits the window out
// when it fits the budget, else gives up with the last attempt's error.
func (c *client) waitTurn(ctx context.Context, g *gate, lastErr error) error {
	for {
		err := g.acquire(ctx)
		notSent, blocked := asUpstreamError(err)
		switch {
		case err == nil:
			return nil
		case !blocked && lastErr != nil:
			return lastErr // out of time waiting for a slot: say what failed
		case !blocked:
			return c.contextError(ctx)
		case lastErr == nil:
			return notSent
		case !fitsBudget(ctx, notSent.RetryAfter):
			return lastErr
		}
		if err := sleepCtx(ctx, notSent.RetryAfter); err != nil {
			return lastErr
		}
	}
}

// observedAttempt is one attempt, reported to the OnAttempt hook.
func (c *client) observedAttempt(ctx context.Context, retry int, body []byte, red redactor) (*token, error) {
	start := time.Now()
	tok, status, err := c.attempt(ctx, body, red)
	if c.onAttempt != nil {
		c.onAttempt(ctx, attempt{Retry: retry, Status: status, Latency: time.Since(start), Err: err})
	}
	return tok, err
}

// attempt makes one token request within its share of the timeout and
// returns the token, or the status of the reply (0 when none arrived) and
// what was wrong with it.
func (c *client) attempt(ctx context.Context, body []byte, red redactor) (*token, int, error) {
	attemptCtx, cancel := context.WithTimeout(ctx, c.attemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(attemptCtx, http.MethodPost, c.tokenURL, bytes.NewReader(body))
	if err != nil {
		return nil, 0, fmt.Errorf("build token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)

	sent := c.now()
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, c.transportError(ctx, attemptCtx, err, red)
	}
	defer resp.Body.Close()

	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes+1))
	if err != nil {
		return nil, resp.StatusCode, c.transportError(ctx, attemptCtx, err, red)
	}
	if len(reply) > maxReplyBytes {
		return nil, resp.StatusCode, &upstreamError{Kind: kindBadReply, Status: resp.StatusCode,
			Detail: fmt.Sprintf("reply is larger than %d KiB", maxReplyBytes>>10)}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, statusError(resp, reply, red)
	}
	tok, err := parseTokenReply(resp.Header.Get("Content-Type"), reply, sent, c.now(), red)
	return tok, resp.StatusCode, err
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

// withAttempts records on an upstreamError how many requests were made.
func withAttempts(err error, attempts int) error {
	var upErr *upstreamError
	if errors.As(err, &upErr) {
		upErr.Attempts = attempts
	}
	return err
}

// transportError classifies a failure to get a complete reply at all.
// Errors net/http returns can quote what the server sent, so their text
// goes through the redactor too.
func (c *client) transportError(ctx, attemptCtx context.Context, err error, red redactor) error {
	if ctx.Err() != nil {
		return c.contextError(ctx)
	}
	var netErr net.Error
	if attemptCtx.Err() != nil || errors.As(err, &netErr) && netErr.Timeout() {
		return &upstreamError{Kind: kindTimeout, Detail: fmt.Sprintf("no complete reply from %s within %s (request_timeout %s)", c.host, c.attemptTimeout, c.timeout)}
	}
	if isTLSError(err) {
		return &upstreamError{Kind: kindTLS, Detail: fmt.Sprintf("TLS with %s failed: %s", c.host, red.text(rootCause(err)))}
	}
	if headersTooLarge(err) {
		return &upstreamError{Kind: kindBadReply, Detail: fmt.Sprintf("reply headers are larger than %d KiB", maxHeaderBytes>>10)}
	}
	return &upstreamError{Kind: kindUnreachable, Detail: fmt.Sprintf("cannot reach %s: %s", c.host, red.text(rootCause(err)))}
}

// errRequestTimeout is the cause of a mint's context ending at its own
// request_timeout, as opposed to the caller's deadline.
var errRequestTimeout = errors.New("request_timeout")

// contextError explains why ctx ended: our own request_timeout, which is
// Piwik PRO's failure to answer in time, or the caller's deadline or
// cancellation, which is the caller's (a callerError).
func (c *client) contextError(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), errRequestTimeout) {
		return &upstreamError{Kind: kindTimeout, Detail: fmt.Sprintf("no token from %s within request_timeout %s", c.host, c.timeout)}
	}
	return callerContextError(ctx, c.host+" issued a token")
}

// headersTooLarge reports whether err is net/http refusing a reply's
// headers for their size, over HTTP/1 or HTTP/2 (where the HPACK decoder
// gives up with a COMPRESSION_ERROR when the list passes the limit).
func headersTooLarge(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "server response headers exceeded") ||
		strings.Contains(msg, "header list larger than") ||
		strings.Contains(msg, "COMPRESSION_ERROR")
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
