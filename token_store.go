package piwik

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// tokenStoragePrefix holds the tokens of token_reuse roles, one entry per
// role (tokens/<role>), so that a plugin start, reload, upgrade or leader
// change finds them instead of asking Piwik PRO anew. The storage key is
// the role's name only; the fingerprint of the credential lives inside the
// value.
//
// The prefix is local storage (PathsSpecial.LocalStorage): a token is this
// cluster's cache, as PKI keeps its certificates local. A performance
// secondary mints and keeps its own, and no live token is shipped to
// another cluster. It is seal-wrapped where Vault supports that.
const tokenStoragePrefix = "tokens/"

// tokenSchemaVersion is the version of storedToken this plugin writes;
// entries of any other version are ignored and replaced by the next mint.
const tokenSchemaVersion = 1

// storedToken is a token as storage holds it.
type storedToken struct {
	Version     int       `json:"version"`
	Fingerprint string    `json:"fingerprint"`
	Sent        time.Time `json:"sent"`
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresIn   int64     `json:"expires_in"` // seconds
	ExpiresAt   time.Time `json:"expires_at"`
	ExpCut      bool      `json:"exp_cut,omitempty"`
	Subject     string    `json:"sub,omitempty"`
	Org         string    `json:"org,omitempty"`
	Audience    []string  `json:"aud,omitempty"`
	IssuedAt    time.Time `json:"iat,omitzero"`
	Expiry      time.Time `json:"exp,omitzero"`
}

func newStoredToken(ct cachedToken) storedToken {
	tok := ct.tok
	return storedToken{
		Version:     tokenSchemaVersion,
		Fingerprint: ct.fingerprint,
		Sent:        ct.sent.UTC(),
		AccessToken: tok.AccessToken,
		TokenType:   tok.TokenType,
		ExpiresIn:   int64(tok.ExpiresIn / time.Second),
		ExpiresAt:   tok.ExpiresAt.UTC(),
		ExpCut:      tok.ExpCut,
		Subject:     tok.Claims.Subject,
		Org:         tok.Claims.Org,
		Audience:    tok.Claims.Audience,
		IssuedAt:    tok.Claims.IssuedAt,
		Expiry:      tok.Claims.Expiry,
	}
}

// cached returns the stored token as the cache holds it, or nil when the
// entry is of another schema version or does not describe a usable token.
func (s storedToken) cached() *cachedToken {
	if s.Version != tokenSchemaVersion || s.Fingerprint == "" || s.AccessToken == "" ||
		checkJWTShape(s.AccessToken) != nil || !s.ExpiresAt.After(s.Sent) {
		return nil
	}
	return &cachedToken{
		fingerprint: s.Fingerprint,
		sent:        s.Sent,
		tok: &token{
			AccessToken: s.AccessToken,
			TokenType:   "Bearer",
			ExpiresIn:   time.Duration(s.ExpiresIn) * time.Second,
			ExpiresAt:   s.ExpiresAt.UTC(),
			Lifetime:    s.ExpiresAt.Sub(s.Sent),
			ExpCut:      s.ExpCut,
			Claims: claims{
				Subject: s.Subject, Org: s.Org, Audience: s.Audience,
				IssuedAt: s.IssuedAt, Expiry: s.Expiry,
			},
		},
	}
}

// tokensWritable reports whether this node may write tokens/. Performance
// standbys and DR secondaries may not. A performance secondary may: the
// prefix is local storage, which its active node writes itself, so this is
// not WriteSafeReplicationState, which answers for replicated paths.
func (b *backend) tokensWritable() bool {
	state := b.System().ReplicationState()
	return !state.HasState(consts.ReplicationPerformanceStandby | consts.ReplicationDRSecondary)
}

// storageTimeout bounds one storage call the token store makes outside a
// request (a background refresh, a drop after a rejection).
const storageTimeout = 10 * time.Second

// readStoredToken returns the stored token of role, nil when there is none
// or it is not usable (corrupted, of another schema version).
func (b *backend) readStoredToken(ctx context.Context, role string) (*cachedToken, error) {
	entry, err := b.storage.Get(ctx, tokenStoragePrefix+role)
	if err != nil || entry == nil {
		return nil, err
	}
	var stored storedToken
	if err := entry.DecodeJSON(&stored); err != nil {
		b.Logger().Warn("ignoring a stored token that does not decode; the next mint replaces it", "role", role, "size", len(entry.Value))
		return nil, nil
	}
	return stored.cached(), nil
}

// loadToken fills the cache with role's stored token, the first time a
// reader asks for it on this node. A storage failure is logged and read as
// "nothing stored": the reader then mints.
// Concurrent first reads share one storage read; a read that starts after
// the role's token was forgotten or unloaded starts a new one.
func (b *backend) loadToken(ctx context.Context, role string) {
	gen := b.tokens.generation(role)
	_, _, _ = b.tokens.flight.Do("load\x00"+role+"\x00"+strconv.FormatUint(gen, 10), func() (any, error) {
		// Shared by every first reader: no one reader's end stops it.
		readCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storageTimeout)
		defer cancel()
		ct, err := b.readStoredToken(readCtx, role)
		if err != nil {
			b.Logger().Warn("could not read a stored token; minting instead", "role", role, "error", err.Error())
			return nil, nil
		}
		if b.tokens.load(role, ct, gen) {
			b.metrics.tokenLoaded()
		}
		return nil, nil
	})
}

// keepToken caches a token role minted at generation gen and, where this
// node may write, stores it. Storing is serialized per role, in the order
// the cache accepted the tokens, so that storage never goes back to an
// older token. A failed store is logged, never returned: the reader has
// its token, and an ErrReadOnly returned from a read would make Vault
// forward it and mint again.
//
// A token is kept only while its role still resolves to the credentials
// that minted it: a mint resolved before a config or role write may end
// after the write dropped the role's tokens. The check comes after the
// cache took the token, so that a write either stored before the check
// (which then sees the new credentials) or finds the token, cached or
// stored, when it drops what it replaced.
func (b *backend) keepToken(role string, ct cachedToken, gen uint64) {
	lock := locksutil.LockForKey(b.tokenLocks, role)
	lock.Lock()
	defer lock.Unlock()
	if b.background.Err() != nil || !b.tokens.store(role, ct, gen) {
		return
	}
	ctx, cancel := context.WithTimeout(b.background, storageTimeout)
	defer cancel()
	if want, err := b.currentFingerprint(ctx, b.storage, role); err != nil || want != ct.fingerprint {
		b.tokens.discard(role, ct)
		return
	}
	if !b.tokensWritable() {
		return
	}
	entry, err := logical.StorageEntryJSON(tokenStoragePrefix+role, newStoredToken(ct))
	if err == nil {
		err = b.storage.Put(ctx, entry)
	}
	if err != nil {
		b.Logger().Warn("could not store a minted token; it stays cached on this node only", "role", role, "error", err.Error())
		return
	}
	// Piwik PRO may have rejected the credential while the token was being
	// stored, and the scan that deletes its stored tokens (dropRejected)
	// listed storage before the token was there: it is deleted here
	// instead, so that no start after this one loads it.
	if b.tokens.rejectedSince(ct.fingerprint, ct.sent) {
		if err := b.storage.Delete(ctx, entry.Key); err != nil {
			b.Logger().Warn("could not delete the stored token of a rejected credential", "role", role, "error", err.Error())
		}
	}
}

// dropTokenIf forgets role's token on this node and deletes it from
// storage, where this node may write, when drop, given the stored token
// (nil when none), says so. The stored token is read under the role's
// lock, so that a token stored meanwhile is judged, not dropped unseen.
func (b *backend) dropTokenIf(ctx context.Context, role string, drop func(*cachedToken) bool) error {
	lock := locksutil.LockForKey(b.tokenLocks, role)
	lock.Lock()
	defer lock.Unlock()
	if !b.tokensWritable() {
		if held := b.tokens.heldToken(role); held != nil && drop(held) {
			b.tokens.forget(role)
		}
		return nil
	}
	stored, err := b.readStoredToken(ctx, role)
	if err != nil {
		return err
	}
	if !drop(stored) {
		return nil
	}
	b.tokens.forget(role)
	return b.storage.Delete(ctx, tokenStoragePrefix+role)
}

// storedRoles lists the roles storage holds a token for.
func (b *backend) storedRoles(ctx context.Context) ([]string, error) {
	keys, err := b.storage.List(ctx, tokenStoragePrefix)
	if err != nil {
		return nil, err
	}
	names := keys[:0]
	for _, key := range keys {
		if !strings.HasSuffix(key, "/") {
			names = append(names, key)
		}
	}
	return names, nil
}

// dropRejected deletes the stored tokens minted with a credential Piwik PRO
// rejected at at, where this node may write; the cache already dropped
// them. It runs in the background: a rejection must not wait on a scan of
// storage.
func (b *backend) dropRejected(fingerprint string, at time.Time) {
	if !b.tokensWritable() {
		return
	}
	b.goBackground(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		names, err := b.storedRoles(ctx)
		if err != nil {
			b.Logger().Warn("could not list stored tokens to drop those of a rejected credential", "error", err.Error())
			return
		}
		mintedBefore := func(ct *cachedToken) bool {
			return ct != nil && ct.fingerprint == fingerprint && ct.sent.Before(at)
		}
		for _, name := range names {
			if err := b.dropTokenIf(ctx, name, mintedBefore); err != nil {
				b.Logger().Warn("could not delete the stored token of a rejected credential", "role", name, "error", err.Error())
			}
		}
	})
}
