package piwik

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	roleStoragePrefix = "roles/"
	maxRoleNameLength = 128
)

// piwikRole shapes what a reader of creds/<name> gets. Stored seal-wrapped.
type piwikRole struct {
	// TTL caps the lease; 0 means the token's own lifetime.
	TTL time.Duration `json:"ttl"`
	// ClientID and ClientSecret, when set, are another Piwik PRO user's API
	// credential used instead of the config's, so that a role carries only
	// that user's permissions.
	ClientID     string `json:"client_id,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"`
	// TokenReuse lets readers share one cached token per node while at
	// least ReuseMinRemaining of its life is left (0: half its lifetime).
	TokenReuse        bool          `json:"token_reuse"`
	ReuseMinRemaining time.Duration `json:"reuse_min_remaining"`
	// Unleased makes creds reads return the token without a lease. It is
	// stored negated so that roles written before the field existed, and
	// the zero value, keep the leased default.
	Unleased bool `json:"unleased,omitempty"`
}

// hasCredentials reports whether the role uses its own Piwik PRO user.
func (r *piwikRole) hasCredentials() bool {
	return r.ClientID != ""
}

// credentials returns the role's own credentials, else the config's.
func (r *piwikRole) credentials(cfg *piwikConfig) Credentials {
	if r.hasCredentials() {
		return Credentials{ClientID: r.ClientID, ClientSecret: r.ClientSecret}
	}
	return cfg.credentials()
}

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
			Fields: map[string]*framework.FieldSchema{
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
					Description: "Client ID of another Piwik PRO user's API credential, used instead of the config's. Requires client_secret. Write-only.",
					DisplayAttrs: &framework.DisplayAttributes{
						Name:      "Client ID",
						Sensitive: true,
					},
				},
				"client_secret": {
					Type:        framework.TypeString,
					Description: "Client secret for client_id. Write-only: never returned.",
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
					Description: "With token_reuse, hand out a cached token only while at least this much of its life is left. 0 means half its lifetime.",
				},
				"leased": {
					Type:        framework.TypeBool,
					Description: "Return each token as a lease (the default). With false, a read returns the token and its remaining ttl without a lease, so Vault stores nothing per read.",
					Default:     true,
				},
			},
			ExistenceCheck: b.roleExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.pathRoleRead,
					DisplayAttrs: &framework.DisplayAttributes{
						OperationVerb: "read",
					},
					Summary: "Read a role, without credentials.",
					Responses: map[int][]framework.Response{
						http.StatusOK: {{Description: "OK", Fields: roleResponseFields}},
					},
				},
				logical.CreateOperation: &framework.PathOperation{
					Callback: b.pathRoleWrite,
					DisplayAttrs: &framework.DisplayAttributes{
						OperationVerb: "write",
					},
					Summary:   "Create or replace a role.",
					Responses: noContent,
				},
				logical.UpdateOperation: &framework.PathOperation{
					Callback: b.pathRoleWrite,
					DisplayAttrs: &framework.DisplayAttributes{
						OperationVerb: "write",
					},
					Summary:   "Create or update a role.",
					Responses: noContent,
				},
				logical.PatchOperation: &framework.PathOperation{
					Callback: b.pathRoleWrite,
					DisplayAttrs: &framework.DisplayAttributes{
						OperationVerb: "patch",
					},
					Summary:   "Change some fields of a role.",
					Responses: noContent,
				},
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

// roleResponseFields documents what a role read returns.
var roleResponseFields = map[string]*framework.FieldSchema{
	"ttl":                 {Type: framework.TypeInt64, Description: "Cap on the lease in seconds; 0 means the token's own lifetime."},
	"own_credentials":     {Type: framework.TypeBool, Description: "Whether the role has its own Piwik PRO credential instead of the config's."},
	"token_reuse":         {Type: framework.TypeBool, Description: "Whether readers share one cached token per node."},
	"reuse_min_remaining": {Type: framework.TypeInt64, Description: "Least remaining life, in seconds, of a cached token that is handed out; 0 means half its lifetime."},
	"leased":              {Type: framework.TypeBool, Description: "Whether reads return the token as a lease."},
}

func (b *backend) roleExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	role, err := getRole(ctx, req.Storage, d.Get("name").(string))
	return role != nil, err
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
	stored, err := getRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if stored == nil && req.Operation == logical.PatchOperation {
		return nil, logical.CodedError(http.StatusNotFound, fmt.Sprintf("no role %q to patch", name))
	}

	role := &piwikRole{}
	if stored != nil {
		copied := *stored
		role = &copied
	}
	credentialsChanged, err := role.update(d)
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	if credentialsChanged && role.hasCredentials() {
		if err := b.verifyRoleCredentials(withRole(ctx, name), req.Storage, role); err != nil {
			return logical.ErrorResponse(err.Error()), nil
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
	return nil, nil
}

func (b *backend) pathRoleDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := req.Storage.Delete(ctx, roleStoragePrefix+name); err != nil {
		return nil, err
	}
	b.resetRole(name)
	return nil, nil
}

// update applies the fields present in d to r and validates the result. It
// reports whether the role's credentials changed.
func (r *piwikRole) update(d *framework.FieldData) (credentialsChanged bool, err error) {
	if raw, ok := d.GetOk("ttl"); ok {
		ttl := time.Duration(raw.(int)) * time.Second
		if ttl < 0 || ttl > maxTokenLifetime {
			return false, fmt.Errorf("ttl: must be between 0 and %s", maxTokenLifetime)
		}
		r.TTL = ttl
	}
	if raw, ok := d.GetOk("token_reuse"); ok {
		r.TokenReuse = raw.(bool)
	}
	if raw, ok := d.GetOk("leased"); ok {
		r.Unleased = !raw.(bool)
	}
	if raw, ok := d.GetOk("reuse_min_remaining"); ok {
		floor := time.Duration(raw.(int)) * time.Second
		if floor < 0 || floor > maxTokenLifetime {
			return false, fmt.Errorf("reuse_min_remaining: must be between 0 and %s", maxTokenLifetime)
		}
		r.ReuseMinRemaining = floor
	}

	id, idSet := d.GetOk("client_id")
	secret, secretSet := d.GetOk("client_secret")
	switch {
	case !idSet && !secretSet:
		return false, nil
	case idSet != secretSet:
		return false, errors.New("client_id and client_secret: give both or neither")
	case id.(string) == "" && secret.(string) == "":
		// Both empty: the role goes back to the config's credentials.
		changed := r.hasCredentials()
		r.ClientID, r.ClientSecret = "", ""
		return changed, nil
	}
	if err := validateCredentialField("client_id", id.(string)); err != nil {
		return false, err
	}
	if err := validateCredentialField("client_secret", secret.(string)); err != nil {
		return false, err
	}
	changed := r.ClientID != id.(string) || r.ClientSecret != secret.(string)
	r.ClientID, r.ClientSecret = id.(string), secret.(string)
	return changed, nil
}

// verifyRoleCredentials mints one token with the role's credentials against
// the configured account, unless the config turned verification off.
func (b *backend) verifyRoleCredentials(ctx context.Context, s logical.Storage, role *piwikRole) error {
	cfg, client, err := b.upstream(ctx, s)
	if err != nil {
		return err
	}
	if cfg == nil {
		return errors.New("client_id: role credentials are verified against piwik/config, which is not written yet")
	}
	if !cfg.VerifyCredentials {
		return nil
	}
	if _, err := client.Token(ctx, role.credentials(cfg)); err != nil {
		return fmt.Errorf("client_id, client_secret: Piwik PRO did not issue a token with these credentials, nothing was stored: %w", err)
	}
	return nil
}

// getRole reads a role from storage; nil when it does not exist.
func getRole(ctx context.Context, s logical.Storage, name string) (*piwikRole, error) {
	entry, err := s.Get(ctx, roleStoragePrefix+name)
	if err != nil || entry == nil {
		return nil, err
	}
	role := &piwikRole{}
	if err := entry.DecodeJSON(role); err != nil {
		return nil, fmt.Errorf("decode stored role %q: %w", name, err)
	}
	return role, nil
}

const pathRoleListHelpSyn = `List the roles.`

const pathRoleListHelpDesc = `Lists the names of the roles tokens can be read through (creds/<name>).`

const pathRoleHelpSyn = `Manage the roles tokens are read through.`

const pathRoleHelpDesc = `
A role shapes the token a reader of creds/<name> gets:

  ttl                  caps the lease (0: the token's own lifetime)
  client_id,
  client_secret        another Piwik PRO user's API credential for this role
                       (both or neither; write-only). Each credential carries
                       its user's permissions, so a role for reporting can
                       use a read-only user.
  token_reuse          readers share one cached token per node
  reuse_min_remaining  a cached token is handed out only while this much of
                       its life is left (0: half of it)
  leased               true (default): each read is a lease; false: the token
                       and its remaining ttl without a lease, for many readers
                       on raft storage, where every lease is a storage write

Example:

  $ vault write piwik/roles/reporting ttl=10m
`
