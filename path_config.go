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
	configStoragePath = "config"

	defaultRequestTimeout = 10 * time.Second
	maxRequestTimeout     = 5 * time.Minute
	defaultMaxRetries     = 3
	maxMaxRetries         = 10
)

// piwikConfig is the mount's connection to Piwik PRO, stored seal-wrapped.
type piwikConfig struct {
	URL               string        `json:"url"`
	ClientID          string        `json:"client_id"`
	ClientSecret      string        `json:"client_secret"`
	RequestTimeout    time.Duration `json:"request_timeout"`
	CACert            string        `json:"ca_cert,omitempty"`
	VerifyCredentials bool          `json:"verify_credentials"`
	MaxRetries        int           `json:"max_retries"`
}

func defaultConfig() *piwikConfig {
	return &piwikConfig{
		RequestTimeout:    defaultRequestTimeout,
		VerifyCredentials: true,
		MaxRetries:        defaultMaxRetries,
	}
}

func (c *piwikConfig) credentials() credentials {
	return credentials{ClientID: c.ClientID, ClientSecret: c.ClientSecret}
}

func (c *piwikConfig) clientOptions() clientOptions {
	return clientOptions{
		BaseURL:    c.URL,
		Timeout:    c.RequestTimeout,
		MaxRetries: c.MaxRetries,
		CACert:     c.CACert,
	}
}

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
			Description: "How long one token request to Piwik PRO may take, retries included. With retries, each attempt gets a share of it (a half with max_retries=1, a third with more), so that one hung attempt leaves time for the next.",
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
		return nil, logical.CodedError(http.StatusNotFound, "no config to patch: write piwik/config first")
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

// sameCredential reports whether c and other send the same credential to
// the same place: what a cached token's fingerprint is made of. Writes that
// change anything else (timeouts, retries, verification) keep the tokens.
func (c *piwikConfig) sameCredential(other *piwikConfig) bool {
	return c.URL == other.URL && c.CACert == other.CACert &&
		c.ClientID == other.ClientID && c.ClientSecret == other.ClientSecret
}

// update applies the fields present in d to c and validates the result.
// stored is the config before this write, nil on the first write (when
// every required field must be present).
func (c *piwikConfig) update(d *framework.FieldData, stored *piwikConfig) error {
	if raw, ok := d.GetOk("url"); ok {
		u, err := normalizeURL(raw.(string))
		if err != nil {
			return fmt.Errorf("url: %w", err)
		}
		c.URL = u
	}
	if c.URL == "" {
		return errors.New("url: required")
	}
	if raw, ok := d.GetOk("ca_cert"); ok && raw.(string) != "" {
		if err := validateCACert(raw.(string)); err != nil {
			return fmt.Errorf("ca_cert: %w", err)
		}
		c.CACert = raw.(string)
	} else if ok {
		c.CACert = "" // an empty ca_cert goes back to the system roots
	}

	id, idSet := d.GetOk("client_id")
	secret, secretSet := d.GetOk("client_secret")
	var err error
	if idSet {
		if c.ClientID, err = credentialField("client_id", id.(string)); err != nil {
			return err
		}
	}
	if secretSet {
		if c.ClientSecret, err = credentialField("client_secret", secret.(string)); err != nil {
			return err
		}
	}
	if stored == nil && (c.ClientID == "" || c.ClientSecret == "") {
		return errors.New("client_id and client_secret: both required")
	}
	if stored != nil && !secretSet {
		switch {
		case c.ClientID != stored.ClientID:
			return errors.New("client_secret: required when client_id changes")
		case c.URL != stored.URL || c.CACert != stored.CACert:
			return errors.New("client_secret: required when url or ca_cert changes: the stored secret is only ever sent to the url it was given for")
		}
	}

	if timeout, ok, err := secondsField(d, "request_timeout", maxRequestTimeout); err != nil {
		return err
	} else if ok {
		if timeout <= 0 {
			return fmt.Errorf("request_timeout: must be between 1s and %s", maxRequestTimeout)
		}
		c.RequestTimeout = timeout
	}
	if raw, ok := d.GetOk("verify_credentials"); ok {
		c.VerifyCredentials = raw.(bool)
	}
	if raw, ok := d.GetOk("max_retries"); ok {
		n := raw.(int)
		if n < 0 || n > maxMaxRetries {
			return fmt.Errorf("max_retries: must be between 0 and %d", maxMaxRetries)
		}
		c.MaxRetries = n
	}
	return nil
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
