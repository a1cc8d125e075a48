package piwik

import (
	"context"

	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// initialize binds the own credentials of roles written before roles
// recorded the url their secret was given for (v0.1.0) to the config's
// current url. It runs on the active node when the mount starts; until it
// has run, such roles fail with the binding error rather than risk sending
// a secret elsewhere.
func (b *backend) initialize(ctx context.Context, req *logical.InitializationRequest) error {
	if !b.WriteSafeReplicationState() {
		return nil
	}
	b.configLock.RLock()
	defer b.configLock.RUnlock()
	acct, err := b.account(ctx, req.Storage)
	if err != nil || acct == nil {
		return err
	}
	names, err := req.Storage.List(ctx, roleStoragePrefix)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := b.bindLegacyRole(ctx, req.Storage, acct, name); err != nil {
			b.Logger().Warn("could not record the url of a role's credentials; rewrite its client_secret", "role", name, "error", err.Error())
		}
	}
	return nil
}

// bindLegacyRole records acct's url on one role whose own credentials have
// none recorded.
func (b *backend) bindLegacyRole(ctx context.Context, s logical.Storage, acct *account, name string) error {
	lock := locksutil.LockForKey(b.roleLocks, name)
	lock.Lock()
	defer lock.Unlock()
	role, err := getRole(ctx, s, name)
	if err != nil || role == nil || !role.hasCredentials() || role.CredentialsURL != "" {
		return err
	}
	role.CredentialsURL, role.CredentialsCA = acct.config.URL, acct.caSum
	entry, err := logical.StorageEntryJSON(roleStoragePrefix+name, role)
	if err != nil {
		return err
	}
	if err := s.Put(ctx, entry); err != nil {
		return err
	}
	b.resetRole(name)
	return nil
}
