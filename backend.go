// Package piwik is a Vault secrets engine that keeps Piwik PRO API client
// credentials sealed in Vault and hands out short-lived Piwik PRO access
// tokens as leases.
package piwik

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/helper/useragent"
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

	// cacheLock guards the caches below. gen counts invalidations, so that
	// a storage read which raced a write is not cached afterwards.
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

	// maxTTL caches the mount's max lease TTL; see mountMaxTTL.
	maxTTL atomic.Pointer[maxTTLReading]
	// userAgent is computed once from the Vault version; see agent.
	userAgent atomic.Pointer[string]

	// writeFields are the fields of the writable paths, for screenInput.
	configFields, roleFields map[string]*framework.FieldSchema
}

// account is the stored config with what is derived from it once per
// load: the HTTP client, and the fingerprint of its CA trust.
type account struct {
	config *piwikConfig
	client *client
	// caSum identifies config.CACert ("" when the system roots are used).
	caSum string
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
	configPaths, rolePaths := pathConfig(b), pathRoles(b)
	b.configFields = configPaths[0].Fields
	b.roleFields = rolePaths[len(rolePaths)-1].Fields
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{configStoragePath, roleStoragePrefix, tokenStoragePrefix},
			LocalStorage:    []string{tokenStoragePrefix},
		},
		Paths: framework.PathAppend(
			configPaths,
			rolePaths,
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

// newAccount builds the client for cfg, whose requests are counted in the
// metrics and logged at debug level, without secrets.
func (b *backend) newAccount(ctx context.Context, cfg *piwikConfig) (*account, error) {
	opts := cfg.clientOptions()
	opts.UserAgent = b.agent(ctx)
	opts.OnAttempt = b.observeAttempt
	opts.Now = b.now
	c, err := newClient(opts)
	if err != nil {
		return nil, err
	}
	return &account{config: cfg, client: c, caSum: caFingerprint(cfg.CACert)}, nil
}

// caFingerprint identifies a CA bundle; "" for none (the system roots).
func caFingerprint(pem string) string {
	if pem == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(pem))
	return hex.EncodeToString(sum[:])
}

// credentialsFor returns the credentials a role mints with: its own, or
// the config's. A role's own secret is only ever sent to the url (and
// through the ca_cert trust) it was given for; after the config moved, the
// role fails until its secret is written again.
func (a *account) credentialsFor(name string, role *piwikRole) (credentials, error) {
	if !role.hasCredentials() {
		return a.config.credentials(), nil
	}
	if role.CredentialsURL != a.config.URL || role.CredentialsCA != a.caSum {
		return credentials{}, &bindingError{role: name, givenFor: role.CredentialsURL, configURL: a.config.URL}
	}
	return role.credentials(), nil
}

// fingerprint identifies what a token minted with creds from this account
// was minted with: where it was sent, through which CA trust, and the
// credential itself. Tokens are cached under it.
func (a *account) fingerprint(creds credentials) string {
	h := sha256.New()
	for _, part := range []string{a.config.URL, a.caSum, creds.ClientID, creds.ClientSecret} {
		fmt.Fprintf(h, "%d:%s\x00", len(part), part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// agent returns the User-Agent sent to Piwik PRO, naming the Vault version
// and this plugin's, as the SDK formats it for plugins.
func (b *backend) agent(ctx context.Context) string {
	if ua := b.userAgent.Load(); ua != nil {
		return *ua
	}
	product := pluginName + "/" + runningVersion()
	var ua string
	if env, err := b.System().PluginEnv(ctx); err == nil && env != nil {
		ua = useragent.PluginString(env, product)
	}
	if ua == "" {
		ua = useragent.String(product)
	}
	b.userAgent.Store(&ua)
	return ua
}

// gateKey names a credential for its gate: the account url and client id.
func gateKey(acct *account, creds credentials) string {
	return acct.config.URL + "\x00" + creds.ClientID
}

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

const backendHelp = `
The Piwik PRO secrets engine issues short-lived Piwik PRO API access tokens.

The Piwik PRO API client credentials are written once to "config" and never
leave Vault. Roles under "roles/" choose whose credentials a reader gets and
cap the lease. Reading "creds/<role>" asks Piwik PRO for a new access token
and returns it as a lease that ends when the token expires. Piwik PRO cannot
revoke or renew tokens, so leases are not renewable and revoking one only
forgets it.
`
