package piwik

import (
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// tokenCache is this node's memory of the tokens of token_reuse roles: one
// per role, each kept with the fingerprint of what minted it (URL, CA,
// client id, secret), so that a token minted with replaced credentials is
// never handed out, whatever order reads and writes interleave in. It is
// filled by mints and by loading what storage holds (see token_store.go);
// the reuse rules that use it are in token_reuse.go.
type tokenCache struct {
	mu      sync.Mutex
	entries map[string]*cacheEntry // by role
	// gens holds a generation per role, bumped whenever that role's token
	// is forgotten: a mint or load started before neither fills the cache
	// nor is joined by reads that start after. Generations are per role,
	// so that dropping one role's token never voids another's work.
	gens map[string]uint64
	// rejected holds, per fingerprint, when Piwik PRO last rejected that
	// credential (401 invalid_client or 402). While it is there, no token
	// of the credential minted before it is cached, loaded or served
	// stale, on any role; a mint with it that was sent after the rejection
	// and succeeded removes it.
	rejected map[string]time.Time
	// flight makes concurrent mints of one role's token (reads that miss,
	// a background refresh) share one request.
	flight singleflight.Group
}

// cacheEntry is what the cache knows of one role.
type cacheEntry struct {
	// token is the role's token; nil when there is none.
	token *cachedToken
	// loaded is true once storage was consulted for the role (or a mint
	// filled the entry): the next read need not ask storage again.
	loaded bool
	// lastRead is when a reader last asked for the role's token; the
	// periodic refresh only spends requests on roles that are read.
	lastRead time.Time
}

// cachedToken is a token, the fingerprint of the credentials and account
// it was minted with, and when the request that minted it was sent.
type cachedToken struct {
	fingerprint string
	tok         *token
	sent        time.Time
}

func newTokenCache() *tokenCache {
	return &tokenCache{
		entries:  make(map[string]*cacheEntry),
		gens:     make(map[string]uint64),
		rejected: make(map[string]time.Time),
	}
}

// read returns the role's token minted with fingerprint, if the cache has
// one, and whether storage was consulted for the role; it records the read
// at now.
func (c *tokenCache) read(role, fingerprint string, now time.Time) (tok *token, loaded bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entry(role)
	e.lastRead = now
	if e.token == nil || e.token.fingerprint != fingerprint {
		return nil, e.loaded
	}
	return e.token.tok, e.loaded
}

// current returns the role's token minted with fingerprint, or nil, without
// counting a read.
func (c *tokenCache) current(role, fingerprint string) *token {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[role]
	if e == nil || e.token == nil || e.token.fingerprint != fingerprint {
		return nil
	}
	return e.token.tok
}

// entry returns the role's entry, creating it; c.mu must be held.
func (c *tokenCache) entry(role string) *cacheEntry {
	e := c.entries[role]
	if e == nil {
		e = &cacheEntry{}
		c.entries[role] = e
		if _, ok := c.gens[role]; !ok {
			c.gens[role] = 0
		}
	}
	return e
}

// generation returns the role's generation, to be given back to store or
// load.
func (c *tokenCache) generation(role string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entry(role)
	return c.gens[role]
}

// store caches ct for role, from a mint started at generation gen, and
// reports whether it did. It does not when the role's token was forgotten
// since gen, when the cache already holds a token minted later, or when
// Piwik PRO rejected the credential after the request was sent.
func (c *tokenCache) store(role string, ct cachedToken, gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.acceptable(role, ct, gen) {
		return false
	}
	e := c.entry(role)
	e.token, e.loaded = &ct, true
	return true
}

// load caches ct for role, read from storage at generation gen, on the
// same terms as store, and records that storage was consulted.
func (c *tokenCache) load(role string, ct *cachedToken, gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gens[role] != gen {
		return false
	}
	e := c.entry(role)
	e.loaded = true
	if ct == nil || !c.acceptable(role, *ct, gen) {
		return false
	}
	e.token = ct
	return true
}

// acceptable reports whether ct may become role's token; c.mu must be held.
func (c *tokenCache) acceptable(role string, ct cachedToken, gen uint64) bool {
	if c.gens[role] != gen {
		return false
	}
	if at, rejected := c.rejected[ct.fingerprint]; rejected && !at.Before(ct.sent) {
		return false
	}
	e := c.entries[role]
	return e == nil || e.token == nil || !e.token.sent.After(ct.sent)
}

// discard drops ct from role's entry if it is still the role's token,
// without voiding anything in flight: keepToken took it, then found that
// the role no longer resolves to its credentials.
func (c *tokenCache) discard(role string, ct cachedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[role]; e != nil && e.token != nil && e.token.tok == ct.tok {
		e.token = nil
	}
}

// forget drops role's token and voids the mints and loads of it in
// flight: the role is gone, or an operator purged its token.
//
// A role this node never took a generation of has nothing in flight and
// nothing cached: it is left out, so that purging or deleting names that
// never had a token leaves nothing behind in memory.
func (c *tokenCache) forget(role string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, seen := c.gens[role]; !seen {
		return
	}
	c.gens[role]++
	delete(c.entries, role)
}

// unload drops what the cache holds for role, so that the next read asks
// storage again: another node wrote or deleted the role's stored token. It
// voids the loads (and mints) of the role in flight too: a load that read
// storage before the change would otherwise cache what the change
// replaced, such as a token an operator purged. An entry exists for every
// role with work in flight.
func (c *tokenCache) unload(role string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[role]; e != nil {
		c.gens[role]++
		e.token, e.loaded = nil, false
	}
}

// reject records that Piwik PRO rejected the credential fingerprint at
// at: every role's token minted with it before at is dropped, and none is
// cached, loaded or served stale until a mint with it, sent after at,
// succeeds. It returns the roles whose token it dropped.
func (c *tokenCache) reject(fingerprint string, at time.Time) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.rejected[fingerprint]; !ok || at.After(prev) {
		c.rejected[fingerprint] = at
	}
	var dropped []string
	for role, e := range c.entries {
		if e.token != nil && e.token.fingerprint == fingerprint && e.token.sent.Before(at) {
			e.token = nil
			dropped = append(dropped, role)
		}
	}
	return dropped
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

// rejectedSince reports whether Piwik PRO rejected the credential
// fingerprint at or after sent, and no mint with it succeeded since.
func (c *tokenCache) rejectedSince(fingerprint string, sent time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.rejected[fingerprint]
	return ok && !at.Before(sent)
}

// isRejected reports whether Piwik PRO rejected the credential fingerprint
// and no mint with it succeeded since.
func (c *tokenCache) isRejected(fingerprint string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.rejected[fingerprint]
	return ok
}

// readRole is a role the cache holds a token for, as the periodic refresh
// sees it.
type readRole struct {
	name     string
	token    cachedToken
	lastRead time.Time
}

// holding returns the roles the cache holds a token for.
func (c *tokenCache) holding() []readRole {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]readRole, 0, len(c.entries))
	for name, e := range c.entries {
		if e.token != nil {
			out = append(out, readRole{name: name, token: *e.token, lastRead: e.lastRead})
		}
	}
	return out
}

// pruneRejections drops rejections older than maxTokenLifetime: every
// token minted before them has expired.
func (c *tokenCache) pruneRejections(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for fingerprint, at := range c.rejected {
		if now.Sub(at) > maxTokenLifetime {
			delete(c.rejected, fingerprint)
		}
	}
}

// heldToken returns role's token on this node, nil when there is none.
func (c *tokenCache) heldToken(role string) *cachedToken {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[role]; e != nil && e.token != nil {
		ct := *e.token
		return &ct
	}
	return nil
}
