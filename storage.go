package piwik

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// account returns the stored config and what is derived from it, from the
// cache when possible; nil when no config has been written.
func (b *backend) account(ctx context.Context, s logical.Storage) (*account, error) {
	b.cacheLock.RLock()
	acct, gen := b.acct, b.gen
	b.cacheLock.RUnlock()
	if acct != nil {
		return acct, nil
	}

	cfg, err := getConfig(ctx, s)
	if err != nil || cfg == nil {
		return nil, err
	}
	acct, err = b.newAccount(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("build Piwik PRO client from stored config: %w", err)
	}

	b.cacheLock.Lock()
	defer b.cacheLock.Unlock()
	switch {
	case b.gen != gen:
		// Storage changed while we read it: use what we read for this
		// request only.
		defer acct.client.close()
	case b.acct != nil:
		// Another request won the race; share its client.
		acct.client.close()
		return b.acct, nil
	default:
		b.acct = acct
	}
	return acct, nil
}

// role returns a role by name, from the cache when possible; nil when it
// does not exist.
func (b *backend) role(ctx context.Context, s logical.Storage, name string) (*piwikRole, error) {
	b.cacheLock.RLock()
	role, gen := b.roles[name], b.gen
	b.cacheLock.RUnlock()
	if role != nil {
		return role, nil
	}

	role, err := getRole(ctx, s, name)
	if err != nil || role == nil {
		return nil, err
	}
	b.cacheLock.Lock()
	if b.gen == gen {
		b.roles[name] = role
	}
	b.cacheLock.Unlock()
	return role, nil
}

// resetConfig drops the cached account and its HTTP client, derived from
// the old config. Cached tokens stay: each is handed out only to readers
// whose role and config resolve to the credentials that minted it, and a
// config write that changed those drops them (dropMismatchedTokens).
func (b *backend) resetConfig() {
	b.cacheLock.Lock()
	defer b.cacheLock.Unlock()
	b.gen++
	if b.acct != nil {
		b.acct.client.close()
	}
	b.acct = nil
	b.checks.forgetAll()
}

// resetRole drops one role's cached definition; its token stays, as for
// resetConfig.
func (b *backend) resetRole(name string) {
	b.cacheLock.Lock()
	defer b.cacheLock.Unlock()
	b.gen++
	delete(b.roles, name)
	b.checks.forgetAll()
}

// getConfig reads the config from storage; nil when never written.
func getConfig(ctx context.Context, s logical.Storage) (*piwikConfig, error) {
	entry, err := s.Get(ctx, configStoragePath)
	if err != nil || entry == nil {
		return nil, err
	}
	cfg := defaultConfig()
	if err := decodeEntry(entry, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// getRole reads a role from storage; nil when it does not exist.
func getRole(ctx context.Context, s logical.Storage, name string) (*piwikRole, error) {
	entry, err := s.Get(ctx, roleStoragePrefix+name)
	if err != nil || entry == nil {
		return nil, err
	}
	role := &piwikRole{}
	if err := decodeEntry(entry, role); err != nil {
		return nil, err
	}
	return role, nil
}

// decodeEntry decodes a storage entry into out, or reports it corrupt.
func decodeEntry(entry *logical.StorageEntry, out any) error {
	if err := entry.DecodeJSON(out); err != nil {
		return &corruptEntryError{key: entry.Key, size: len(entry.Value)}
	}
	return nil
}

// corruptEntryError is a storage entry that does not decode. Its message
// names the entry and its size, never its content, which may hold secrets.
type corruptEntryError struct {
	key  string
	size int
}

func (e *corruptEntryError) Error() string {
	return fmt.Sprintf("the stored entry %q (%d bytes) does not decode; write it again in full to replace it", e.key, e.size)
}

// isCorrupt reports whether err is a storage entry that does not decode.
func isCorrupt(err error) bool {
	var corrupt *corruptEntryError
	return errors.As(err, &corrupt)
}

// maxTTLReading is the mount's max lease TTL as read at a point in time.
type maxTTLReading struct {
	value time.Duration
	at    time.Time
}

// maxTTLRefresh is how long a reading of the mount's max lease TTL is used.
const maxTTLRefresh = 30 * time.Second

// mountMaxTTL returns the mount's max lease TTL, read from Vault at most
// every maxTTLRefresh. In an external plugin each System() call is a gRPC
// round trip back to Vault, which measurably slows every creds read. A
// stale value after a tune is harmless: Vault caps every lease at the
// mount's current max itself, and warns when it does.
func (b *backend) mountMaxTTL() time.Duration {
	now := time.Now()
	if r := b.maxTTL.Load(); r != nil && now.Sub(r.at) < maxTTLRefresh {
		return r.value
	}
	value := b.System().MaxLeaseTTL()
	b.maxTTL.Store(&maxTTLReading{value: value, at: now})
	return value
}
