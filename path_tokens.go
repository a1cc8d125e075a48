package piwik

import (
	"context"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathTokens(b *backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern: "tokens/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "cached-tokens",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{
					Callback: b.pathTokensList,
					DisplayAttrs: &framework.DisplayAttributes{
						OperationVerb: "list",
					},
					Summary: "List the roles whose token_reuse token storage holds.",
					Responses: map[int][]framework.Response{
						http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
							"keys": {Type: framework.TypeStringSlice, Description: "Role names."},
						}}},
					},
				},
				logical.DeleteOperation: &framework.PathOperation{
					Callback: b.pathTokensPurgeAll,
					DisplayAttrs: &framework.DisplayAttributes{
						OperationVerb: "purge",
					},
					Summary:   "Drop every role's cached and stored token.",
					Responses: noContent,
				},
			},
			HelpSynopsis:    pathTokensHelpSyn,
			HelpDescription: pathTokensHelpDesc,
		},
		{
			Pattern: "tokens/" + framework.GenericNameRegex("name"),
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "cached-token",
			},
			Fields: map[string]*framework.FieldSchema{
				"name": {
					Type:        framework.TypeString,
					Description: "Name of the role.",
					Required:    true,
				},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.pathTokenRead,
					DisplayAttrs: &framework.DisplayAttributes{
						OperationVerb: "read",
					},
					Summary: "Describe a role's stored token, without the token.",
					Responses: map[int][]framework.Response{
						http.StatusOK: {{Description: "OK", Fields: tokenResponseFields}},
					},
				},
				logical.DeleteOperation: &framework.PathOperation{
					Callback: b.pathTokenPurge,
					DisplayAttrs: &framework.DisplayAttributes{
						OperationVerb: "purge",
					},
					Summary:   "Drop a role's cached and stored token.",
					Responses: noContent,
				},
			},
			HelpSynopsis:    pathTokensHelpSyn,
			HelpDescription: pathTokensHelpDesc,
		},
	}
}

// tokenResponseFields documents what a read of tokens/<name> returns.
var tokenResponseFields = map[string]*framework.FieldSchema{
	"minted_at":  {Type: framework.TypeString, Description: "When the request that minted the token was sent (RFC 3339, UTC)."},
	"expires_at": {Type: framework.TypeString, Description: "When the token stops working (RFC 3339, UTC)."},
	"sub":        {Type: framework.TypeString, Description: "The Piwik PRO user the token acts for (JWT sub), when present."},
	"org":        {Type: framework.TypeString, Description: "The Piwik PRO organization (JWT org), when present."},
	"aud":        {Type: framework.TypeString, Description: "The API credential's name (JWT aud), when present."},
}

func (b *backend) pathTokensList(ctx context.Context, _ *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := b.storedRoles(ctx)
	if err != nil {
		return nil, err
	}
	return logical.ListResponse(names), nil
}

func (b *backend) pathTokenRead(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	ct, err := b.readStoredToken(ctx, d.Get("name").(string))
	if err != nil || ct == nil {
		return nil, err
	}
	data := credsData(ct.tok)
	delete(data, "access_token")
	delete(data, "token_type")
	data["minted_at"] = ct.sent.UTC().Format(time.RFC3339)
	return &logical.Response{Data: data}, nil
}

func (b *backend) pathTokenPurge(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	if err := b.purgeToken(ctx, req, d.Get("name").(string)); err != nil {
		return nil, err
	}
	return nil, nil
}

func (b *backend) pathTokensPurgeAll(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := b.storedRoles(ctx)
	if err != nil {
		return nil, err
	}
	for _, held := range b.tokens.holding() {
		names = append(names, held.name)
	}
	for _, name := range names {
		if err := b.purgeToken(ctx, req, name); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// purgeToken drops role's token on this node and from storage. On a node
// that cannot write storage, the delete's ErrReadOnly makes Vault forward
// the request to the active node, whose delete reaches this node as an
// invalidation.
func (b *backend) purgeToken(ctx context.Context, req *logical.Request, name string) error {
	lock := locksutil.LockForKey(b.tokenLocks, name)
	lock.Lock()
	defer lock.Unlock()
	b.tokens.forget(name)
	return req.Storage.Delete(ctx, tokenStoragePrefix+name)
}

const pathTokensHelpSyn = `Inspect and purge the cached tokens of token_reuse roles.`

const pathTokensHelpDesc = `
Roles with token_reuse share one token per cluster, kept in this mount's
storage (local to the cluster, seal-wrapped where Vault supports it) so
that a restart, reload, upgrade or leader change does not ask Piwik PRO
for new tokens.

  $ vault list piwik/tokens               roles with a stored token
  $ vault read piwik/tokens/reporting     when it was minted and expires,
                                          whom it acts for (never the token)
  $ vault delete piwik/tokens/reporting   drop one role's token
  $ vault delete piwik/tokens             drop every role's token

A dropped token is forgotten by Vault at once, on every node: the next
read mints a new one. Piwik PRO cannot revoke a token, so a token that
leaked stays valid at Piwik PRO until its expires_at; purging only makes
sure Vault hands it out no more.
`
