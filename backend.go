// Package piwik is a Vault secrets engine that keeps Piwik PRO API client
// credentials sealed in Vault and hands out short-lived Piwik PRO access
// tokens as leases.
package piwik

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// Version is the plugin's semantic version. Release builds set it with
// -ldflags "-X github.com/piwik-vault/vault-plugin-secrets-piwik.Version=v1.2.3";
// Vault shows it as the mount's running plugin version.
var Version = "v0.0.0-dev"

// pluginName is the plugin's catalog name, also sent in the User-Agent.
const pluginName = "vault-plugin-secrets-piwik"

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
	b.storage = conf.StorageView
	return b, nil
}

// backend is the secrets engine. Its in-memory state is a cache of what
// storage holds, dropped whenever storage changes.
type backend struct {
	*framework.Backend

	// configLock is held for writing across a config write's read, verify
	// and store, and for reading across a role write's, so that a role's
	// credentials are verified against, and bound to, the config that is
	// stored when the role is. roleLocks serialize writes of one role.
	// Both are per node: Vault forwards every write to the active node.
	configLock sync.RWMutex
	roleLocks  []*locksutil.LockEntry

	// cacheLock guards the caches of the stored config and roles below
	// (storage.go). gen counts invalidations, so that a storage read which
	// raced a write is not cached afterwards.
	cacheLock sync.RWMutex
	gen       uint64
	acct      *account
	roles     map[string]*piwikRole

	// tokens holds the tokens of roles with token_reuse, which storage
	// keeps too (token_store.go): tokenLocks serialize storing and
	// dropping one role's token, refreshing marks the roles a background
	// refresh is under way for, tidied when stored tokens were tidied.
	// gates pace the requests of each credential.
	tokens     *tokenCache
	tokenLocks []*locksutil.LockEntry
	refreshing roleSet
	tidied     tidySchedule
	gates      *gates
	checks     *checkMemory
	metrics    *metrics

	// storage is the mount's storage, for the work done outside a request
	// (background refreshes).
	storage logical.Storage
	// background is the context of that work; Clean cancels it and waits
	// for the work to end. backgroundMu orders the start of work against
	// Clean: none starts once Clean cancelled the context.
	background     context.Context
	stopBackground context.CancelFunc
	backgroundMu   sync.Mutex
	backgroundWork sync.WaitGroup
	// now is the clock of the token reuse rules.
	now func() time.Time

	// maxTTL caches the mount's max lease TTL; see mountMaxTTL
	// (storage.go).
	maxTTL atomic.Pointer[maxTTLReading]
	// userAgent is computed once from the Vault version; see agent
	// (account.go).
	userAgent atomic.Pointer[string]

	// configFields and roleFields are the schemas of config and role
	// writes, for screenInput (input.go).
	configFields, roleFields map[string]*framework.FieldSchema
}

// newBackend wires the backend: its caches, locks and background context,
// and the paths, secret and hooks Vault calls.
func newBackend() *backend {
	b := &backend{
		roleLocks:  locksutil.CreateLocks(),
		roles:      make(map[string]*piwikRole),
		tokens:     newTokenCache(),
		tokenLocks: locksutil.CreateLocks(),
		gates:      newGates(time.Now),
		checks:     newCheckMemory(time.Now),
		now:        time.Now,
	}
	b.background, b.stopBackground = context.WithCancel(context.Background())
	b.metrics = newMetrics(&b.gates.peak)
	b.configFields, b.roleFields = configFields(), roleFields()
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{configStoragePath, roleStoragePrefix, tokenStoragePrefix},
			LocalStorage:    []string{tokenStoragePrefix},
		},
		Paths: framework.PathAppend(
			pathConfig(b),
			pathRoles(b),
			pathCreds(b),
			pathCheck(b),
			pathMetrics(b),
			pathTokens(b),
		),
		Secrets:        []*framework.Secret{secretToken(b)},
		InitializeFunc: b.initialize,
		Invalidate:     b.invalidate,
		Clean:          b.clean,
		PeriodicFunc:   b.periodic,
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
	case strings.HasPrefix(key, tokenStoragePrefix):
		// The active node stored or dropped the role's token: read it
		// again on the next read.
		b.tokens.unload(strings.TrimPrefix(key, tokenStoragePrefix))
	}
}

// clean stops the background work and releases the HTTP client's
// connections when the mount goes away or the plugin stops.
func (b *backend) clean(context.Context) {
	b.backgroundMu.Lock()
	b.stopBackground()
	b.backgroundMu.Unlock()
	b.backgroundWork.Wait()
	b.resetConfig()
}

// startBackground registers work that Clean must wait for, which then
// calls backgroundWork.Done when it ends; false once Clean has begun.
func (b *backend) startBackground() bool {
	b.backgroundMu.Lock()
	defer b.backgroundMu.Unlock()
	if b.background.Err() != nil {
		return false
	}
	b.backgroundWork.Add(1)
	return true
}

// goBackground runs work in a goroutine of its own with the background
// context, which Clean cancels and waits for. It reports whether the work
// started: none does once Clean has begun.
func (b *backend) goBackground(work func(context.Context)) bool {
	if !b.startBackground() {
		return false
	}
	go func() {
		defer b.backgroundWork.Done()
		work(b.background)
	}()
	return true
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

// verifiedWrite marks op, a write that may call Piwik PRO before it stores
// (verify_credentials), to be forwarded from a performance standby or
// secondary to the active node before it runs. Vault would otherwise
// forward it only at its storage write, after a first call to Piwik PRO,
// and run it, and the call, again there.
func verifiedWrite(op *framework.PathOperation) *framework.PathOperation {
	op.ForwardPerformanceStandby = true
	op.ForwardPerformanceSecondary = true
	return op
}

// noContent documents an operation that returns nothing on success.
var noContent = map[int][]framework.Response{
	http.StatusNoContent: {{Description: "OK"}},
}
