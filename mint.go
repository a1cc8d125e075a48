package piwik

import (
	"context"
	"time"
)

// configRole names the config's own credentials where a role name would
// go: in logs and in the check's report of them.
const configRole = "(config)"

// mint asks Piwik PRO for a token for role (a name, or configRole) with
// creds, through the credential's shared gate.
func (b *backend) mint(ctx context.Context, acct *account, role string, creds credentials) (*token, error) {
	return b.mintThrough(ctx, acct, role, creds, b.gates.get(gateKey(acct, creds)))
}

// verify mints one token to check credentials an operator is writing,
// through a gate of its own: the write is a deliberate probe, not held back
// by a window an earlier failure opened. A rate limit it meets is recorded
// on the credential's shared gate, where readers honour it. sent is when
// the verification started, for gates.lift.
func (b *backend) verify(ctx context.Context, acct *account, role string, creds credentials) (sent time.Time, err error) {
	sent = time.Now()
	_, err = b.mintThrough(ctx, acct, role, creds, newGate(time.Now))
	if upErr, ok := asUpstreamError(err); ok && upErr.Kind == kindRateLimited {
		b.gates.get(gateKey(acct, creds)).record(err)
	}
	return sent, err
}

// mintThrough mints through g and learns from the outcome what holds for
// the credential on every path: a rejection (401, 402) drops every cached
// token and remembered check of it, a success after a rejection ends it.
//
// A failed request is logged once at warn level: a Vault at the default
// log level then records every failed mint, with what an operator needs to
// act on it and nothing secret. A mint the gate refused without a request
// is only counted (and logged at debug level), so that an outage does not
// flood the log, and so is a mint the caller stopped waiting for.
func (b *backend) mintThrough(ctx context.Context, acct *account, role string, creds credentials, g *gate) (*token, error) {
	sent := b.now()
	tok, err := acct.client.mint(withRole(ctx, role), creds, g)
	if err == nil {
		b.tokens.accept(acct.fingerprint(creds), sent)
		return tok, nil
	}
	if rejectedCredentials(err) {
		fingerprint, at := acct.fingerprint(creds), b.now()
		b.tokens.reject(fingerprint, at)
		b.dropRejected(fingerprint, at)
		b.checks.forget(fingerprint)
	}
	args := []any{"role", role, "kind", failureKind(err), "error", err.Error()}
	upErr, ok := asUpstreamError(err)
	if ok {
		args = append(args, "status", upErr.Status, "attempts", upErr.Attempts)
	}
	switch {
	case ok && upErr.NotSent:
		b.metrics.notSentRequest(upErr.Kind)
		b.Logger().Debug("no token request sent: the credential is in a rate-limit or backoff window", args...)
	case isCallerError(err):
		b.Logger().Debug("token request abandoned by its caller", args...)
	default:
		b.Logger().Warn("Piwik PRO did not issue a token", args...)
	}
	return nil, err
}

// observeAttempt counts every request and logs the failed ones and the
// retries at debug level. Successes are only counted: in an external plugin
// the logger is always at trace level (Vault filters by its own level only
// after reading each line), so a line per success cost every mint some 18
// µs of plugin and Vault CPU for what piwik/metrics already shows.
func (b *backend) observeAttempt(ctx context.Context, a attempt) {
	b.metrics.attempt(a)
	if a.Err == nil && a.Retry == 0 {
		return
	}
	if logger := b.Logger(); logger.IsDebug() {
		args := []any{"role", roleFromContext(ctx), "status", a.Status, "latency", a.Latency.String(), "retry", a.Retry}
		if a.Err != nil {
			args = append(args, "error", a.Err.Error())
		}
		logger.Debug("Piwik PRO token request", args...)
	}
}

// roleKey carries the role a token request is for, so that the upstream
// client's log lines can name it without knowing about roles.
type roleKey struct{}

func withRole(ctx context.Context, role string) context.Context {
	return context.WithValue(ctx, roleKey{}, role)
}

func roleFromContext(ctx context.Context) string {
	role, _ := ctx.Value(roleKey{}).(string)
	return role
}
