package piwik

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// tidyInterval is how often the periodic function deletes stored tokens
// that expired or whose role no longer uses them.
const tidyInterval = 5 * time.Minute

// periodic is Vault's periodic call, about once a minute on a node that
// can write. It refreshes the tokens of roles read within their token's
// life that would pass their reuse point before the next call (sparse
// readers, such as Vault Agent re-reading at 85-95% of a lease, then never
// wait for a mint), and now and then deletes stored tokens nobody can use.
// Roles nobody read for a token life are never minted for.
func (b *backend) periodic(ctx context.Context, req *logical.Request) error {
	if !b.tokensWritable() {
		return nil
	}
	now := b.now()
	b.refreshReadRoles(ctx, req.Storage, now)
	b.tokens.pruneRejections(now)
	if b.tidied.due(now) {
		if err := b.tidyTokens(ctx, req.Storage, now); err != nil {
			b.Logger().Warn("could not tidy stored tokens", "error", err.Error())
		}
	}
	return nil
}

// refreshReadRoles starts a background refresh of each role that was read
// within its token's life and whose token would pass its reuse point
// before the next periodic call.
func (b *backend) refreshReadRoles(ctx context.Context, s logical.Storage, now time.Time) {
	acct, err := b.account(ctx, s)
	if err != nil || acct == nil {
		return
	}
	for _, held := range b.tokens.holding() {
		tok := held.token.tok
		if held.lastRead.Before(now.Add(-tok.Lifetime)) {
			continue // nobody read it for a token life
		}
		r, ok := b.reuseRequestFor(ctx, s, acct, held.name)
		if !ok || r.fingerprint != held.token.fingerprint {
			continue // the role changed: its next read mints
		}
		if !r.policy.lastsUntilNextPeriodic(tok, now) {
			b.refreshInBackground(r, r.policy.lastsUntilNextPeriodic)
		}
	}
}

// reuseRequestFor resolves role name as a read of it would; ok is false
// when the role is gone, does not reuse tokens, or its credentials cannot
// be used with acct.
func (b *backend) reuseRequestFor(ctx context.Context, s logical.Storage, acct *account, name string) (reuseRequest, bool) {
	role, err := b.role(ctx, s, name)
	if err != nil || role == nil || !role.TokenReuse {
		return reuseRequest{}, false
	}
	creds, err := acct.credentialsFor(name, role)
	if err != nil {
		return reuseRequest{}, false
	}
	return reuseRequest{
		name: name, acct: acct, creds: creds,
		fingerprint: acct.fingerprint(creds), policy: b.reusePolicy(role, acct),
	}, true
}

// currentFingerprint is the fingerprint of the credentials role name
// resolves to now: what its token must have been minted with. It is ""
// when the role is gone, does not reuse tokens, cannot mint (no config, a
// secret given for another url) or cannot be read.
func (b *backend) currentFingerprint(ctx context.Context, s logical.Storage, name string) (string, error) {
	acct, err := b.account(ctx, s)
	if err != nil {
		return "", err
	}
	return b.fingerprintFor(ctx, s, acct, name), nil
}

// fingerprintFor is currentFingerprint with the account already read (nil
// when there is no config).
func (b *backend) fingerprintFor(ctx context.Context, s logical.Storage, acct *account, name string) string {
	if acct == nil {
		return ""
	}
	r, ok := b.reuseRequestFor(ctx, s, acct, name)
	if !ok {
		return ""
	}
	return r.fingerprint
}

// tidyTokens deletes the stored tokens that expired, that no longer
// decode or are of another schema version, and whose role is gone, no
// longer reuses tokens or now resolves to another credential.
func (b *backend) tidyTokens(ctx context.Context, s logical.Storage, now time.Time) error {
	names, err := b.storedRoles(ctx)
	if err != nil {
		return err
	}
	acct, err := b.account(ctx, s)
	if err != nil {
		return err
	}
	for _, name := range names {
		want := b.fingerprintFor(ctx, s, acct, name)
		useless := func(ct *cachedToken) bool {
			return ct == nil || !now.Before(ct.tok.ExpiresAt) || ct.fingerprint != want
		}
		if err := b.dropTokenIf(ctx, name, useless); err != nil {
			return err
		}
	}
	return nil
}

// dropMismatchedToken drops role name's token when it was minted with
// other credentials than the role resolves to now (or the role no longer
// reuses tokens): after a write that changed what identifies the
// credential. Writes that change nothing of it keep the token.
func (b *backend) dropMismatchedToken(ctx context.Context, s logical.Storage, name string) error {
	want, err := b.currentFingerprint(ctx, s, name)
	if err != nil {
		return err
	}
	// A mint in flight for the old credentials, or for a role that no
	// longer reuses tokens, must not fill the cache after this.
	if held := b.tokens.heldToken(name); want == "" || held != nil && held.fingerprint != want {
		b.tokens.forget(name)
	}
	return b.dropTokenIf(ctx, name, func(ct *cachedToken) bool { return ct != nil && ct.fingerprint != want })
}

// dropMismatchedTokens is dropMismatchedToken for every role that has a
// token, stored or on this node: after a config write.
func (b *backend) dropMismatchedTokens(ctx context.Context, s logical.Storage) error {
	names, err := b.storedRoles(ctx)
	if err != nil {
		return err
	}
	for _, held := range b.tokens.holding() {
		names = append(names, held.name)
	}
	for _, name := range names {
		if err := b.dropMismatchedToken(ctx, s, name); err != nil {
			return err
		}
	}
	return nil
}

// dropTokensAfterWrite drops the tokens a config or role write left
// minted with credentials their roles no longer resolve to: role name's
// after a role write, every role's after a config write (name ""). The
// write is stored already, so a failure is logged, not returned: such a
// token is never handed out (its fingerprint no longer matches), and the
// periodic tidy deletes it later.
func (b *backend) dropTokensAfterWrite(ctx context.Context, s logical.Storage, name string) {
	var err error
	if name == "" {
		err = b.dropMismatchedTokens(ctx, s)
	} else {
		err = b.dropMismatchedToken(ctx, s, name)
	}
	if err != nil {
		b.Logger().Warn("could not drop tokens of replaced credentials; the periodic tidy will", "role", name, "error", err.Error())
	}
}

// tidySchedule says when the stored tokens were last tidied.
type tidySchedule struct {
	mu   sync.Mutex
	last time.Time
}

// due reports whether a tidy is due at now, and if so records it.
func (t *tidySchedule) due(now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.last.IsZero() && now.Sub(t.last) < tidyInterval {
		return false
	}
	t.last = now
	return true
}

// roleSet is a set of role names with its own lock.
type roleSet struct {
	mu    sync.Mutex
	names map[string]bool
}

// start adds name and reports whether it was absent.
func (s *roleSet) start(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.names[name] {
		return false
	}
	if s.names == nil {
		s.names = make(map[string]bool)
	}
	s.names[name] = true
	return true
}

// has reports whether name is in the set.
func (s *roleSet) has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.names[name]
}

// end removes name.
func (s *roleSet) end(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.names, name)
}
