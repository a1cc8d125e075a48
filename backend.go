// Package piwik is a Vault secrets engine that keeps Piwik PRO API client
// credentials sealed in Vault and hands out short-lived Piwik PRO access
// tokens as leases.
package piwik

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Version is the plugin's semantic version. Release builds set it with
// -ldflags "-X github.com/piwik-vault/vault-plugin-secrets-piwik.Version=v1.2.3";
// Vault shows it as the mount's running plugin version.
var Version = "v0.0.0-dev"

// operationPrefix leads every operation id in the OpenAPI document Vault
// generates for this mount (piwik-read-credentials, ...).
const operationPrefix = "piwik"

// Factory returns a configured instance of the backend. Vault calls it once
// per mount.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend()
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

// backend is the secrets engine. Its in-memory state is a cache of what
// storage holds, dropped whenever storage changes.
type backend struct {
	*framework.Backend

	// lock guards the caches below. gen counts invalidations, so that a
	// storage read which raced a write is not cached afterwards.
	lock   sync.RWMutex
	gen    uint64
	config *piwikConfig
	client *Client
	roles  map[string]*piwikRole

	// tokens holds the tokens of roles with token_reuse.
	tokens  *tokenCache
	metrics *metrics

	// maxTTL caches the mount's max lease TTL; see mountMaxTTL.
	maxTTL atomic.Pointer[maxTTLReading]
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
// round trip back to Vault, which measurably slowed every creds read. A
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

func newBackend() *backend {
	b := &backend{
		roles:   make(map[string]*piwikRole),
		tokens:  newTokenCache(),
		metrics: newMetrics(),
	}
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{configStoragePath, roleStoragePrefix},
		},
		Paths: framework.PathAppend(
			pathConfig(b),
			pathRoles(b),
			pathCreds(b),
			pathCheck(b),
			pathMetrics(b),
		),
		Secrets:        []*framework.Secret{secretToken(b)},
		Invalidate:     b.invalidate,
		Clean:          b.clean,
		RunningVersion: runningVersion(),
	}
	return b
}

// runningVersion makes sure Vault sees a semantic version with a leading v,
// whatever the build stamped.
func runningVersion() string {
	if Version == "" {
		return "v0.0.0-dev"
	}
	if !strings.HasPrefix(Version, "v") {
		return "v" + Version
	}
	return Version
}

// invalidate is called when another node (or a replicated write) changed a
// storage key; the caches for that key are dropped.
func (b *backend) invalidate(_ context.Context, key string) {
	switch {
	case key == configStoragePath:
		b.resetConfig()
	case strings.HasPrefix(key, roleStoragePrefix):
		b.resetRole(strings.TrimPrefix(key, roleStoragePrefix))
	}
}

// clean releases the HTTP client's connections when the mount goes away.
func (b *backend) clean(context.Context) {
	b.resetConfig()
}

// resetConfig drops the cached config, its HTTP client and every cached
// token: all of them were derived from the old config.
func (b *backend) resetConfig() {
	b.lock.Lock()
	defer b.lock.Unlock()
	b.gen++
	if b.client != nil {
		b.client.Close()
	}
	b.config, b.client = nil, nil
	b.tokens.dropAll()
}

// resetRole drops one role's cached definition and token.
func (b *backend) resetRole(name string) {
	b.lock.Lock()
	defer b.lock.Unlock()
	b.gen++
	delete(b.roles, name)
	b.tokens.drop(name)
}

// upstream returns the config and an HTTP client built from it, from the
// cache when possible. Both are nil when no config has been written.
func (b *backend) upstream(ctx context.Context, s logical.Storage) (*piwikConfig, *Client, error) {
	b.lock.RLock()
	cfg, client, gen := b.config, b.client, b.gen
	b.lock.RUnlock()
	if cfg != nil {
		return cfg, client, nil
	}

	cfg, err := getConfig(ctx, s)
	if err != nil || cfg == nil {
		return nil, nil, err
	}
	client, err = b.newClient(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("build Piwik PRO client from stored config: %w", err)
	}

	b.lock.Lock()
	defer b.lock.Unlock()
	switch {
	case b.gen != gen:
		// Storage changed while we read it: use what we read for this
		// request only.
		defer client.Close()
	case b.config != nil:
		// Another request won the race; share its client.
		client.Close()
		return b.config, b.client, nil
	default:
		b.config, b.client = cfg, client
	}
	return cfg, client, nil
}

// role returns a role by name, from the cache when possible; nil when it
// does not exist.
func (b *backend) role(ctx context.Context, s logical.Storage, name string) (*piwikRole, error) {
	b.lock.RLock()
	role, gen := b.roles[name], b.gen
	b.lock.RUnlock()
	if role != nil {
		return role, nil
	}

	role, err := getRole(ctx, s, name)
	if err != nil || role == nil {
		return nil, err
	}
	b.lock.Lock()
	if b.gen == gen {
		b.roles[name] = role
	}
	b.lock.Unlock()
	return role, nil
}

// newClient builds an upstream client for cfg whose requests are counted
// in the metrics and logged at debug level, without secrets.
func (b *backend) newClient(cfg *piwikConfig) (*Client, error) {
	opts := cfg.clientOptions()
	opts.OnAttempt = b.observeAttempt
	return NewClient(opts)
}

func (b *backend) observeAttempt(ctx context.Context, a Attempt) {
	b.metrics.attempt(a)
	if logger := b.Logger(); logger.IsDebug() {
		args := []any{"role", roleFromContext(ctx), "status", a.Status, "latency", a.Latency, "retry", a.Retry}
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

const backendHelp = `
The Piwik PRO secrets engine issues short-lived Piwik PRO API access tokens.

The Piwik PRO API client credentials are written once to "config" and never
leave Vault. Roles under "roles/" choose whose credentials a reader gets and
cap the lease. Reading "creds/<role>" asks Piwik PRO for a new access token
and returns it as a lease that ends when the token expires. Piwik PRO cannot
revoke or renew tokens, so leases are not renewable and revoking one only
forgets it.
`
