package piwik

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathConfig(b *backend) []*framework.Path {
	return []*framework.Path{{
		Pattern: "config",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
		},
		Fields:         configFields(),
		ExistenceCheck: b.configExists,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathConfigRead,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb:   "read",
					OperationSuffix: "configuration",
				},
				Summary: "Read the connection to Piwik PRO, without the client secret.",
				Responses: map[int][]framework.Response{
					http.StatusOK: {{Description: "OK", Fields: configResponseFields}},
				},
			},
			logical.CreateOperation: verifiedWrite(&framework.PathOperation{
				Callback: b.pathConfigWrite,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb: "configure",
				},
				Summary:   "Configure the connection to Piwik PRO.",
				Responses: noContent,
			}),
			logical.UpdateOperation: verifiedWrite(&framework.PathOperation{
				Callback: b.pathConfigWrite,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb: "configure",
				},
				Summary:   "Configure the connection to Piwik PRO.",
				Responses: noContent,
			}),
			logical.PatchOperation: verifiedWrite(&framework.PathOperation{
				Callback: b.pathConfigWrite,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb:   "patch",
					OperationSuffix: "configuration",
				},
				Summary:   "Change some fields of the connection to Piwik PRO.",
				Responses: noContent,
			}),
			logical.DeleteOperation: &framework.PathOperation{
				Callback: b.pathConfigDelete,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb:   "delete",
					OperationSuffix: "configuration",
				},
				Summary:   "Delete the connection to Piwik PRO and its credentials.",
				Responses: noContent,
			},
		},
		HelpSynopsis:    pathConfigHelpSyn,
		HelpDescription: pathConfigHelpDesc,
	}}
}

// configFields is the schema of a config write, shared by the path and
// screenInput.
func configFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"url": {
			Type:        framework.TypeString,
			Description: `Base URL of the Piwik PRO account, e.g. "https://acme.piwik.pro". A path prefix is allowed. Must be https; http only for loopback hosts.`,
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "URL",
			},
		},
		"client_id": {
			Type:        framework.TypeString,
			Description: "Client ID of the Piwik PRO API credential. Returned on read: it is an identifier; the secret is what grants access.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Client ID",
			},
		},
		"client_secret": {
			Type:        framework.TypeString,
			Description: "Client secret of the Piwik PRO API credential. Write-only: never returned. Required again whenever url, ca_cert or client_id changes: the secret is only ever sent to the url it was given for.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name:      "Client secret",
				Sensitive: true,
			},
		},
		"request_timeout": {
			Type:        framework.TypeDurationSecond,
			Description: fmt.Sprintf("How long one token request to Piwik PRO may take, retries included. With retries, each attempt gets a share of it (a half with max_retries=1, %s with more), so that one hung attempt leaves time for the next.", fraction(maxTimedAttempts)),
			Default:     int(defaultRequestTimeout.Seconds()),
		},
		"ca_cert": {
			Type:        framework.TypeString,
			Description: "PEM bundle of the CAs trusted for the url instead of the system roots, for private deployments.",
		},
		"verify_credentials": {
			Type:        framework.TypeBool,
			Description: "Mint one token with new credentials before storing them, and refuse the write if that fails.",
			Default:     true,
		},
		"max_retries": {
			Type:        framework.TypeInt,
			Description: "How many times a transient upstream failure (no connection, a hung attempt, 429, or 5xx other than 501) is retried. 0 disables retries.",
			Default:     defaultMaxRetries,
		},
	}
}

// configResponseFields documents what a config read returns.
var configResponseFields = map[string]*framework.FieldSchema{
	"url":                {Type: framework.TypeString, Description: "Base URL of the Piwik PRO account."},
	"client_id":          {Type: framework.TypeString, Description: "Client ID of the Piwik PRO API credential."},
	"request_timeout":    {Type: framework.TypeInt64, Description: "Budget of one token request in seconds, retries included."},
	"ca_cert":            {Type: framework.TypeString, Description: "PEM bundle trusted for the url, if set."},
	"verify_credentials": {Type: framework.TypeBool, Description: "Whether new credentials are checked by minting a token before they are stored."},
	"max_retries":        {Type: framework.TypeInt, Description: "How often transient upstream failures are retried."},
}

func (b *backend) configExists(ctx context.Context, req *logical.Request, _ *framework.FieldData) (bool, error) {
	entry, err := req.Storage.Get(ctx, configStoragePath)
	return entry != nil, err
}

func (b *backend) pathConfigRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := getConfig(ctx, req.Storage)
	if err != nil || cfg == nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{
		"url":                cfg.URL,
		"client_id":          cfg.ClientID,
		"request_timeout":    int64(cfg.RequestTimeout.Seconds()),
		"ca_cert":            cfg.CACert,
		"verify_credentials": cfg.VerifyCredentials,
		"max_retries":        cfg.MaxRetries,
	}}, nil
}

func (b *backend) pathConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	if err := rejectUnknownFields(d); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	// Read, verify and store under one lock: two writers at once must not
	// each verify their own change and then store it over the other's.
	b.configLock.Lock()
	defer b.configLock.Unlock()

	stored, err := getConfig(ctx, req.Storage)
	switch {
	case isCorrupt(err) && req.Operation != logical.PatchOperation:
		stored = nil // a full write replaces what does not decode
	case err != nil:
		return nil, err
	case stored == nil && req.Operation == logical.PatchOperation:
		return nil, failureError(&patchError{msg: "no config to patch: write piwik/config first"})
	}

	cfg := defaultConfig()
	if stored != nil {
		copied := *stored
		cfg = &copied
	}
	if err := cfg.update(d, stored); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	acct, err := b.newAccount(ctx, cfg)
	if err != nil {
		return logical.ErrorResponse("ca_cert: " + err.Error()), nil
	}
	defer acct.client.close()
	var verified time.Time
	if cfg.VerifyCredentials {
		if verified, err = b.verify(ctx, acct, configRole, cfg.credentials()); err != nil {
			return verifyFailure("verify_credentials: Piwik PRO did not issue a token with these settings, nothing was stored", err)
		}
	}

	entry, err := logical.StorageEntryJSON(configStoragePath, cfg)
	if err != nil {
		return nil, err
	}
	if err := req.Storage.Put(ctx, entry); err != nil {
		return nil, err
	}
	b.resetConfig()
	if stored == nil || !stored.sameCredential(cfg) {
		b.dropTokensAfterWrite(ctx, req.Storage, "")
	}
	if cfg.VerifyCredentials {
		// Verified a moment ago: fresher news than an earlier failure.
		b.gates.lift(gateKey(acct, cfg.credentials()), verified)
	}
	return nil, nil
}

func (b *backend) pathConfigDelete(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	b.configLock.Lock()
	defer b.configLock.Unlock()
	if err := req.Storage.Delete(ctx, configStoragePath); err != nil {
		return nil, err
	}
	b.resetConfig()
	b.dropTokensAfterWrite(ctx, req.Storage, "")
	return nil, nil
}

const pathConfigHelpSyn = `Configure the Piwik PRO account and API credentials.`

const pathConfigHelpDesc = `
Sets the Piwik PRO account URL and the API client credentials used to mint
tokens. The client_secret is write-only: a read returns every other
setting. The secret is bound to the url and ca_cert it was written with:
changing either (or client_id) needs client_secret in the same write, so
that no stored secret is ever sent to a host it was not given for. By
default the engine mints one token with the new settings before storing
them (verify_credentials) and refuses the write if Piwik PRO does not issue
one; nothing stored changes in that case. Redirects from Piwik PRO are
never followed. A JSON null resets a field to its default.

Example:

  $ vault write piwik/config url=https://acme.piwik.pro \
      client_id=... client_secret=@secret.txt
`
