package piwik

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// tokenCache holds one token per role for roles with token_reuse, in memory
// only. Each token is kept with the fingerprint of what minted it (URL, CA,
// client id, secret); a reader gets it only when the role and config it
// read give the same fingerprint, so a token minted with replaced
// credentials is never handed out, whatever order reads and writes
// interleave in. Concurrent misses for a role share one upstream request.
type tokenCache struct {
	mu     sync.Mutex
	tokens map[string]cachedToken
	// gens holds a generation per role, bumped whenever that role's token
	// is demoted or forgotten: a mint started before neither fills the
	// cache nor is joined by reads that start after. Generations are per
	// role, so that dropping one role's token never voids another's mint.
	gens map[string]uint64
	// rejected holds, per fingerprint, when Piwik PRO last rejected that
	// credential (401 invalid_client or 402). While it is there, no token
	// of the credential is cached or served stale, on any role; a mint
	// with it that was sent after the rejection and succeeded removes it.
	rejected map[string]time.Time
	flight   singleflight.Group
}

// cachedToken is a token and the fingerprint of the credentials and
// account it was minted with.
type cachedToken struct {
	fingerprint string
	tok         *token
	// demoted tokens are not handed out by get (a write asks for a fresh
	// one), only by stale, while a new one cannot be had.
	demoted bool
}

func newTokenCache() *tokenCache {
	return &tokenCache{
		tokens:   make(map[string]cachedToken),
		gens:     make(map[string]uint64),
		rejected: make(map[string]time.Time),
	}
}

// get returns the role's cached token when it was minted with fingerprint
// and at least minRemaining of its life is left at now (half its lifetime
// when minRemaining is 0).
func (c *tokenCache) get(role, fingerprint string, minRemaining time.Duration, now time.Time) *token {
	c.mu.Lock()
	defer c.mu.Unlock()
	cached, ok := c.tokens[role]
	if !ok || cached.demoted || cached.fingerprint != fingerprint || !usable(cached.tok, minRemaining, now) {
		return nil
	}
	return cached.tok
}

// staleFloor is the least life a cached token must have left to be served
// while a new one cannot be had: 30 seconds, or a quarter of its lifetime
// when that is shorter (test-sized tokens), so that a reader always gets
// time to use it.
func staleFloor(tok *token) time.Duration {
	return min(30*time.Second, tok.Lifetime/4)
}

// stale returns the role's cached token minted with fingerprint, whatever
// reuse_min_remaining says, while it has at least staleFloor of its life
// left at now: what a read can still be given when Piwik PRO cannot issue a
// new token. Never for a credential Piwik PRO rejected since.
func (c *tokenCache) stale(role, fingerprint string, now time.Time) *token {
	c.mu.Lock()
	defer c.mu.Unlock()
	cached, ok := c.tokens[role]
	if !ok || cached.fingerprint != fingerprint || cached.tok.ExpiresAt.Sub(now) < max(staleFloor(cached.tok), time.Second) {
		return nil
	}
	if _, rejected := c.rejected[fingerprint]; rejected {
		return nil
	}
	return cached.tok
}

// usable reports whether enough of tok's life remains at now to hand it out.
func usable(tok *token, minRemaining time.Duration, now time.Time) bool {
	if minRemaining <= 0 {
		minRemaining = tok.Lifetime / 2
	}
	remaining := tok.ExpiresAt.Sub(now)
	return remaining > 0 && remaining >= minRemaining
}

// fetch returns a usable cached token for role minted with fingerprint, or
// mints one with mint, which must use exactly the credentials fingerprint
// was computed from. Concurrent callers for the same role and fingerprint
// wait for a single mint; each of them stops waiting when its own ctx
// ends. A failed mint is not cached. minted is true only for the caller
// whose request went to Piwik PRO.
func (c *tokenCache) fetch(ctx context.Context, role, fingerprint string, minRemaining time.Duration, mint func(context.Context) (*token, error)) (*token, bool, error) {
	if tok := c.get(role, fingerprint, minRemaining, time.Now()); tok != nil {
		return tok, false, nil
	}

	c.mu.Lock()
	gen, known := c.gens[role]
	if !known {
		c.gens[role] = 0 // so that demoteAll reaches this mint
	}
	c.mu.Unlock()
	key := role + "\x00" + fingerprint + "\x00" + strconv.FormatUint(gen, 10)

	var minted atomic.Bool
	ch := c.flight.DoChan(key, func() (any, error) {
		// Re-check: a mint that finished between our miss and this call
		// already filled the cache.
		if tok := c.get(role, fingerprint, minRemaining, time.Now()); tok != nil {
			return tok, nil
		}
		minted.Store(true)
		sent := time.Now()
		// The mint outlives any one caller: others may be waiting on it.
		// The client bounds it with request_timeout.
		tok, err := mint(context.WithoutCancel(ctx))
		if err != nil {
			return nil, err
		}
		c.store(role, cachedToken{fingerprint: fingerprint, tok: tok}, gen, sent)
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

// store caches a token for role minted with a request sent at sent, unless
// the role's token was dropped since gen or Piwik PRO rejected the
// credential after the request was sent.
func (c *tokenCache) store(role string, cached cachedToken, gen uint64, sent time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gens[role] != gen {
		return
	}
	if at, rejected := c.rejected[cached.fingerprint]; rejected && !at.Before(sent) {
		return
	}
	c.tokens[role] = cached
}

// demote makes the next read of role mint a fresh token; the cached one is
// kept for stale. Mints of role already in flight do not fill the cache.
func (c *tokenCache) demote(role string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gens[role]++
	if cached, ok := c.tokens[role]; ok {
		cached.demoted = true
		c.tokens[role] = cached
	}
}

// demoteAll demotes every cached token.
func (c *tokenCache) demoteAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for role := range c.gens {
		c.gens[role]++
	}
	for role, cached := range c.tokens {
		cached.demoted = true
		c.tokens[role] = cached
	}
}

// forget drops role's token altogether: the role is gone.
func (c *tokenCache) forget(role string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gens[role]++
	delete(c.tokens, role)
}

// reject records that Piwik PRO rejected the credential fingerprint at
// at: every role's token minted with it is dropped, and none is cached or
// served stale until a mint with it, sent after at, succeeds.
func (c *tokenCache) reject(fingerprint string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.rejected[fingerprint]; !ok || at.After(prev) {
		c.rejected[fingerprint] = at
	}
	for role, cached := range c.tokens {
		if cached.fingerprint == fingerprint {
			delete(c.tokens, role)
		}
	}
}

// accept records that Piwik PRO issued a token for the credential
// fingerprint with a request sent at sent: a rejection recorded before
// that no longer holds.
func (c *tokenCache) accept(fingerprint string, sent time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if at, ok := c.rejected[fingerprint]; ok && at.Before(sent) {
		delete(c.rejected, fingerprint)
	}
}
