package piwik

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
)

// The rules by which a token_reuse role hands out, refreshes and falls back
// on its cached token.
const (
	// refreshFraction sets the refresh window: the last 1/refreshFraction
	// of a token's life before its reuse point (at least request_timeout,
	// at most half the time from the mint to the reuse point). A reader who
	// finds the token there gets it at once, and one background mint fetches
	// the next, so that no reader waits on Piwik PRO at a rollover.
	refreshFraction = 10

	// defaultReuseFraction sets when a role with reuse_min_remaining 0
	// stops handing out a token: when less than 1/defaultReuseFraction of
	// its life is left.
	defaultReuseFraction = 2

	// staleFloorMax is the most life a cached token must have left to be
	// served while a new one cannot be had, and staleFloorFraction the
	// share of its lifetime that is the floor instead when that is shorter
	// (see staleFloor).
	staleFloorMax      = 30 * time.Second
	staleFloorFraction = 4

	// periodicInterval is how often Vault calls the periodic function (its
	// rollback manager's period), which refreshes the tokens of roles that
	// are read but not often enough to meet the refresh window.
	periodicInterval = time.Minute
)

// reusePolicy is when one role hands out, refreshes and serves stale its
// cached token.
type reusePolicy struct {
	// minRemaining is the role's reuse_min_remaining (0: the token's
	// lifetime over defaultReuseFraction).
	minRemaining time.Duration
	// requestTimeout is the config's: the least refresh window.
	requestTimeout time.Duration
}

func (b *backend) reusePolicy(role *piwikRole, acct *account) reusePolicy {
	return reusePolicy{minRemaining: role.ReuseMinRemaining, requestTimeout: acct.config.RequestTimeout}
}

// reusePoint is when tok stops being handed out: when less than the
// role's minRemaining of its life is left.
func (p reusePolicy) reusePoint(tok *token) time.Time {
	floor := p.minRemaining
	if floor <= 0 {
		floor = tok.Lifetime / defaultReuseFraction
	}
	return tok.ExpiresAt.Add(-floor)
}

// usable reports whether tok may be handed out at now.
func (p reusePolicy) usable(tok *token, now time.Time) bool {
	return now.Before(tok.ExpiresAt) && !now.After(p.reusePoint(tok))
}

// window is how long before its reuse point tok is refreshed.
func (p reusePolicy) window(tok *token) time.Duration {
	span := p.reusePoint(tok).Sub(tok.ExpiresAt.Add(-tok.Lifetime))
	return max(min(max(tok.Lifetime/refreshFraction, p.requestTimeout), span/2), 0)
}

// refreshDue reports whether a reader at now should start a background
// mint of tok's successor.
func (p reusePolicy) refreshDue(tok *token, now time.Time) bool {
	return !now.Before(p.reusePoint(tok).Add(-p.window(tok)))
}

// fresh reports whether tok is usable and not yet due for a refresh.
func (p reusePolicy) fresh(tok *token, now time.Time) bool {
	return p.usable(tok, now) && !p.refreshDue(tok, now)
}

// lastsUntilNextPeriodic reports whether tok, at now, stays out of its
// refresh window until after the next periodic call.
func (p reusePolicy) lastsUntilNextPeriodic(tok *token, now time.Time) bool {
	return p.fresh(tok, now.Add(periodicInterval))
}

// staleFloor is the least life a cached token must have left to be served
// while a new one cannot be had: staleFloorMax, or 1/staleFloorFraction of
// its lifetime when that is shorter (test-sized tokens), so that a reader
// always gets time to use it.
func staleFloor(tok *token) time.Duration {
	return max(min(staleFloorMax, tok.Lifetime/staleFloorFraction), time.Second)
}

// servableStale reports whether tok may be served at now when Piwik PRO
// cannot issue a new one.
func servableStale(tok *token, now time.Time) bool {
	return tok.ExpiresAt.Sub(now) >= staleFloor(tok)
}

// reuseRequest is one read of a token_reuse role.
type reuseRequest struct {
	name        string
	acct        *account
	creds       credentials
	fingerprint string
	policy      reusePolicy
}

// issueReuse hands out the role's cached token, or mints one that its
// readers then share.
//
// The first read on this node loads the token storage holds, so that a
// restart, reload or leader change costs Piwik PRO nothing. A reader who
// finds the token in its refresh window gets it at once and starts one
// background mint of its successor. When a token cannot be had for a
// reason that may pass (Piwik PRO unreachable, timing out, failing with
// 5xx or rate limiting), the cached token is served while it has at least
// staleFloor of its life left, with a warning: an outage then costs nothing
// until the token runs out. Never when Piwik PRO rejected the credential
// since it was minted.
func (b *backend) issueReuse(ctx context.Context, r reuseRequest) (*token, []string, error) {
	tok, loaded := b.tokens.read(r.name, r.fingerprint, b.now())
	if !loaded {
		b.loadToken(ctx, r.name)
		tok = b.tokens.current(r.name, r.fingerprint)
	}
	if now := b.now(); tok != nil && r.policy.usable(tok, now) {
		if r.policy.refreshDue(tok, now) {
			b.refreshInBackground(r, r.policy.fresh)
		}
		b.metrics.reuseHit()
		return tok, nil, nil
	}

	tok, minted, err := b.mintShared(ctx, r, r.policy.usable)
	switch upErr, upstream := asUpstreamError(err); {
	case err == nil:
		if !minted {
			b.metrics.reuseHit()
		}
		return tok, nil, nil
	case upstream && upErr.transient():
		cached := b.tokens.current(r.name, r.fingerprint)
		if cached != nil && servableStale(cached, b.now()) && !b.tokens.isRejected(r.fingerprint) {
			b.metrics.staleServe()
			return cached, []string{fmt.Sprintf("Piwik PRO could not issue a new token (%s); serving the cached token, valid until %s",
				err, cached.ExpiresAt.Format(time.RFC3339))}, nil
		}
	}
	return nil, nil, err
}

// mintShared mints the role's next token, shared by every caller that
// asks for it while the mint is in flight: readers that missed, and a
// background refresh. A caller whose ctx ends stops waiting; the mint goes
// on for the others, bounded by request_timeout. good says whether a token
// the cache holds by the time the mint would start is good enough to skip
// it. minted is true only for the caller whose request went to Piwik PRO.
func (b *backend) mintShared(ctx context.Context, r reuseRequest, good func(*token, time.Time) bool) (*token, bool, error) {
	gen := b.tokens.generation(r.name)
	key := r.name + "\x00" + r.fingerprint + "\x00" + strconv.FormatUint(gen, 10)
	var minted atomic.Bool
	ch := b.tokens.flight.DoChan(key, func() (any, error) {
		// The mint and its store are work Clean waits for.
		if !b.startBackground() {
			return nil, callerContextError(b.background, "a token request started: the mount is being cleaned up")
		}
		defer b.backgroundWork.Done()
		if tok := b.tokens.current(r.name, r.fingerprint); tok != nil && good(tok, b.now()) {
			return tok, nil
		}
		minted.Store(true)
		sent := b.now()
		// The mint outlives any one caller: others may be waiting on it.
		// Clean cancels it; request_timeout bounds it.
		tok, err := b.mint(b.background, r.acct, r.name, r.creds)
		if err != nil {
			return nil, err
		}
		b.keepToken(r.name, cachedToken{fingerprint: r.fingerprint, tok: tok, sent: sent}, gen)
		return tok, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, minted.Load(), res.Err
		}
		return res.Val.(*token), minted.Load(), nil
	case <-ctx.Done():
		return nil, false, callerContextError(ctx, "the shared token request finished")
	}
}

// refreshInBackground starts one background mint of the role's next
// token, unless one is under way for the role; good says whether the
// token the cache holds when the mint would start makes it unneeded. It
// follows the gate and the outage rules like a reader's mint; Clean
// cancels it.
func (b *backend) refreshInBackground(r reuseRequest, good func(*token, time.Time) bool) {
	if !b.refreshing.start(r.name) {
		return
	}
	started := b.goBackground(func(context.Context) {
		defer b.refreshing.end(r.name)
		b.metrics.backgroundRefresh()
		_, _, _ = b.mintShared(b.background, r, good)
	})
	if !started {
		b.refreshing.end(r.name)
	}
}
