package piwik

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathRoles(b *backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern: "roles/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "roles",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{
					Callback: b.pathRoleList,
					DisplayAttrs: &framework.DisplayAttributes{
						OperationVerb: "list",
					},
					Summary: "List the roles.",
					Responses: map[int][]framework.Response{
						http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
							"keys": {Type: framework.TypeStringSlice, Description: "Role names."},
						}}},
					},
				},
			},
			HelpSynopsis:    pathRoleListHelpSyn,
			HelpDescription: pathRoleListHelpDesc,
		},
		{
			Pattern: "roles/" + framework.GenericNameRegex("name"),
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "role",
			},
			Fields:         roleFields(),
			ExistenceCheck: b.roleExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.pathRoleRead,
					DisplayAttrs: &framework.DisplayAttributes{
						OperationVerb: "read",
					},
					Summary: "Read a role, without its client secret.",
					Responses: map[int][]framework.Response{
						http.StatusOK: {{Description: "OK", Fields: roleResponseFields}},
					},
				},
				logical.CreateOperation: verifiedWrite(&framework.PathOperation{
					Callback: b.pathRoleWrite,
					DisplayAttrs: &framework.DisplayAttributes{
						OperationVerb: "write",
					},
					Summary:   "Create or replace a role.",
					Responses: noContent,
				}),
				logical.UpdateOperation: verifiedWrite(&framework.PathOperation{
					Callback: b.pathRoleWrite,
					DisplayAttrs: &framework.DisplayAttributes{
						OperationVerb: "write",
					},
					Summary:   "Create or update a role.",
					Responses: noContent,
				}),
				logical.PatchOperation: verifiedWrite(&framework.PathOperation{
					Callback: b.pathRoleWrite,
					DisplayAttrs: &framework.DisplayAttributes{
						OperationVerb: "patch",
					},
					Summary:   "Change some fields of a role.",
					Responses: noContent,
				}),
				logical.DeleteOperation: &framework.PathOperation{
					Callback: b.pathRoleDelete,
					DisplayAttrs: &framework.DisplayAttributes{
						OperationVerb: "delete",
					},
					Summary:   "Delete a role.",
					Responses: noContent,
				},
			},
			HelpSynopsis:    pathRoleHelpSyn,
			HelpDescription: pathRoleHelpDesc,
		},
	}
}

// roleFields is the schema of a role write, shared by the path and
// screenInput.
func roleFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"name": {
			Type:        framework.TypeString,
			Description: "Name of the role.",
			Required:    true,
		},
		"ttl": {
			Type:        framework.TypeDurationSecond,
			Description: "Cap on the lease of tokens read through this role. 0 means the token's own lifetime.",
		},
		"client_id": {
			Type:        framework.TypeString,
			Description: `Client ID of another Piwik PRO user's API credential, used instead of the config's. A new client_id needs its client_secret; "" goes back to the config's credentials.`,
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Client ID",
			},
		},
		"client_secret": {
			Type:        framework.TypeString,
			Description: "Client secret for client_id. Write-only: never returned. Given alone, it rotates the secret of the role's client_id. It is bound to the config's url and ca_cert at the time of the write.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name:      "Client secret",
				Sensitive: true,
			},
		},
		"token_reuse": {
			Type:        framework.TypeBool,
			Description: "Let readers share one cached token per Vault node instead of minting one per read.",
		},
		"reuse_min_remaining": {
			Type:        framework.TypeDurationSecond,
			Description: fmt.Sprintf("With token_reuse, hand out a cached token only while at least this much of its life is left. 0 means %s its lifetime.", fraction(defaultReuseFraction)),
		},
		"leased": {
			Type:        framework.TypeBool,
			Description: "Return each token as a lease (the default). With false, a read returns the token and its remaining ttl without a lease, so Vault stores nothing per read.",
			Default:     true,
		},
	}
}

// roleResponseFields documents what a role read returns.
var roleResponseFields = map[string]*framework.FieldSchema{
	"ttl":                 {Type: framework.TypeInt64, Description: "Cap on the lease in seconds; 0 means the token's own lifetime."},
	"own_credentials":     {Type: framework.TypeBool, Description: "Whether the role has its own Piwik PRO credential instead of the config's."},
	"client_id":           {Type: framework.TypeString, Description: "Client ID of the role's own credential; empty when it uses the config's."},
	"credentials_url":     {Type: framework.TypeString, Description: "The url the role's own client_secret was given for; empty when it uses the config's."},
	"token_reuse":         {Type: framework.TypeBool, Description: "Whether readers share one cached token per node."},
	"reuse_min_remaining": {Type: framework.TypeInt64, Description: fmt.Sprintf("Least remaining life, in seconds, of a cached token that is handed out; 0 means %s its lifetime.", fraction(defaultReuseFraction))},
	"leased":              {Type: framework.TypeBool, Description: "Whether reads return the token as a lease."},
}

// roleExists tells Vault whether a write creates or updates. It looks at
// the entry's presence only, so that a corrupted entry can be replaced.
func (b *backend) roleExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	entry, err := req.Storage.Get(ctx, roleStoragePrefix+d.Get("name").(string))
	return entry != nil, err
}

func (b *backend) pathRoleList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := req.Storage.List(ctx, roleStoragePrefix)
	if err != nil {
		return nil, err
	}
	return logical.ListResponse(names), nil
}

func (b *backend) pathRoleRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	role, err := getRole(ctx, req.Storage, d.Get("name").(string))
	if err != nil || role == nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{
		"ttl":                 int64(role.TTL.Seconds()),
		"own_credentials":     role.hasCredentials(),
		"client_id":           role.ClientID,
		"credentials_url":     role.CredentialsURL,
		"token_reuse":         role.TokenReuse,
		"reuse_min_remaining": int64(role.ReuseMinRemaining.Seconds()),
		"leased":              !role.Unleased,
	}}, nil
}

func (b *backend) pathRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	if err := rejectUnknownFields(d); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	name := d.Get("name").(string)
	if len(name) > maxRoleNameLength {
		return logical.ErrorResponse(fmt.Sprintf("name: longer than %d characters", maxRoleNameLength)), nil
	}
	// The config cannot change while this role is verified against it and
	// bound to it; two writes of this role take turns.
	b.configLock.RLock()
	defer b.configLock.RUnlock()
	lock := locksutil.LockForKey(b.roleLocks, name)
	lock.Lock()
	defer lock.Unlock()

	stored, err := getRole(ctx, req.Storage, name)
	switch {
	case isCorrupt(err) && req.Operation != logical.PatchOperation:
		stored = nil // a full write replaces what does not decode
	case isCorrupt(err):
		return nil, failureError(&patchError{msg: err.Error(), corrupt: true})
	case err != nil:
		return nil, err
	case stored == nil && req.Operation == logical.PatchOperation:
		return nil, failureError(&patchError{msg: fmt.Sprintf("no role %q to patch", name)})
	}

	role := &piwikRole{}
	if stored != nil {
		copied := *stored
		role = &copied
	}
	secretGiven, err := role.update(d)
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	var bound roleBinding
	if secretGiven {
		var resp *logical.Response
		if bound, resp, err = b.bindRoleCredentials(ctx, req.Storage, name, role); resp != nil || err != nil {
			return resp, err
		}
	}

	entry, err := logical.StorageEntryJSON(roleStoragePrefix+name, role)
	if err != nil {
		return nil, err
	}
	if err := req.Storage.Put(ctx, entry); err != nil {
		return nil, err
	}
	b.resetRole(name)
	b.dropTokensAfterWrite(ctx, req.Storage, name)
	if !bound.verified.IsZero() {
		// Verified a moment ago: fresher news than an earlier failure.
		b.gates.lift(gateKey(bound.acct, role.credentials()), bound.verified)
	}
	return nil, nil
}

func (b *backend) pathRoleDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	lock := locksutil.LockForKey(b.roleLocks, name)
	lock.Lock()
	defer lock.Unlock()
	if err := req.Storage.Delete(ctx, roleStoragePrefix+name); err != nil {
		return nil, err
	}
	b.resetRole(name)
	b.dropTokensAfterWrite(ctx, req.Storage, name)
	return nil, nil
}

// roleBinding is the account a role's new secret was bound to, and when
// its verification request was sent (zero when the config turned
// verification off).
type roleBinding struct {
	acct     *account
	verified time.Time
}

// bindRoleCredentials binds the role's newly given secret to the config's
// url and CA trust, after minting one token with it there unless the config
// turned verification off. A non-nil response or error refuses the write.
func (b *backend) bindRoleCredentials(ctx context.Context, s logical.Storage, name string, role *piwikRole) (roleBinding, *logical.Response, error) {
	acct, err := b.account(ctx, s)
	if err != nil {
		return roleBinding{}, nil, err
	}
	if acct == nil {
		return roleBinding{}, logical.ErrorResponse("client_secret: a role's credentials are verified against and bound to piwik/config, which is not written yet"), nil
	}
	bound := roleBinding{acct: acct}
	if acct.config.VerifyCredentials {
		if bound.verified, err = b.verify(ctx, acct, name, role.credentials()); err != nil {
			resp, err := verifyFailure("client_id, client_secret: Piwik PRO did not issue a token with these credentials, nothing was stored", err)
			return roleBinding{}, resp, err
		}
	}
	role.CredentialsURL, role.CredentialsCA = acct.config.URL, acct.caSum
	return bound, nil, nil
}

const pathRoleListHelpSyn = `List the roles.`

const pathRoleListHelpDesc = `Lists the names of the roles tokens can be read through (creds/<name>).`

const pathRoleHelpSyn = `Manage the roles tokens are read through.`

var pathRoleHelpDesc = fmt.Sprintf(`
A role shapes the token a reader of creds/<name> gets:

  ttl                  caps the lease (0: the token's own lifetime)
  client_id,
  client_secret        another Piwik PRO user's API credential for this role.
                       Each credential carries its user's permissions, so a
                       role for reporting can use a read-only user. The
                       secret is write-only and bound to the config's url:
                       after the url changes, write it again. client_secret
                       alone rotates it; client_id="" goes back to the
                       config's credentials.
  token_reuse          readers share one cached token per node
  reuse_min_remaining  a cached token is handed out only while this much of
                       its life is left (0: %s of it)
  leased               true (default): each read is a lease; false: the token
                       and its remaining ttl without a lease, for many readers
                       on raft storage, where every lease is a storage write

Example:

  $ vault write piwik/roles/reporting ttl=10m
`, fraction(defaultReuseFraction))
