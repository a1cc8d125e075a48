package piwik

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
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
	maxURLLength          = 2048
	maxCACertLength       = 1 << 20
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

func (c *piwikConfig) credentials() Credentials {
	return Credentials{ClientID: c.ClientID, ClientSecret: c.ClientSecret}
}

func (c *piwikConfig) clientOptions() ClientOptions {
	return ClientOptions{
		BaseURL:    c.URL,
		Timeout:    c.RequestTimeout,
		MaxRetries: c.MaxRetries,
		CACert:     c.CACert,
		UserAgent:  fmt.Sprintf("vault-plugin-secrets-piwik/%s", runningVersion()),
	}
}

func pathConfig(b *backend) []*framework.Path {
	return []*framework.Path{{
		Pattern: "config",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
		},
		Fields: map[string]*framework.FieldSchema{
			"url": {
				Type:        framework.TypeString,
				Description: `Base URL of the Piwik PRO account, e.g. "https://acme.piwik.pro". A path prefix is allowed. Must be https; http only for loopback hosts.`,
				DisplayAttrs: &framework.DisplayAttributes{
					Name: "URL",
				},
			},
			"client_id": {
				Type:        framework.TypeString,
				Description: "Client ID of the Piwik PRO API credential. Write-only.",
				DisplayAttrs: &framework.DisplayAttributes{
					Name:      "Client ID",
					Sensitive: true,
				},
			},
			"client_secret": {
				Type:        framework.TypeString,
				Description: "Client secret of the Piwik PRO API credential. Write-only: never returned.",
				DisplayAttrs: &framework.DisplayAttributes{
					Name:      "Client secret",
					Sensitive: true,
				},
			},
			"request_timeout": {
				Type:        framework.TypeDurationSecond,
				Description: "How long one token request to Piwik PRO may take, retries included.",
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
				Description: "How many times a transient upstream failure (connection error, 429, 502, 503, 504) is retried. 0 disables retries.",
				Default:     defaultMaxRetries,
			},
		},
		ExistenceCheck: b.configExists,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathConfigRead,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb:   "read",
					OperationSuffix: "configuration",
				},
				Summary: "Read the connection to Piwik PRO, without credentials.",
				Responses: map[int][]framework.Response{
					http.StatusOK: {{Description: "OK", Fields: configResponseFields}},
				},
			},
			logical.CreateOperation: &framework.PathOperation{
				Callback: b.pathConfigWrite,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb: "configure",
				},
				Summary:   "Configure the connection to Piwik PRO.",
				Responses: noContent,
			},
			logical.UpdateOperation: &framework.PathOperation{
				Callback: b.pathConfigWrite,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb: "configure",
				},
				Summary:   "Configure the connection to Piwik PRO.",
				Responses: noContent,
			},
			logical.PatchOperation: &framework.PathOperation{
				Callback: b.pathConfigWrite,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb:   "patch",
					OperationSuffix: "configuration",
				},
				Summary:   "Change some fields of the connection to Piwik PRO.",
				Responses: noContent,
			},
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

// configResponseFields documents what a config read returns.
var configResponseFields = map[string]*framework.FieldSchema{
	"url":                {Type: framework.TypeString, Description: "Base URL of the Piwik PRO account."},
	"request_timeout":    {Type: framework.TypeInt64, Description: "Budget of one token request in seconds, retries included."},
	"ca_cert":            {Type: framework.TypeString, Description: "PEM bundle trusted for the url, if set."},
	"verify_credentials": {Type: framework.TypeBool, Description: "Whether new credentials are checked by minting a token before they are stored."},
	"max_retries":        {Type: framework.TypeInt, Description: "How often transient upstream failures are retried."},
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
	stored, err := getConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if stored == nil && req.Operation == logical.PatchOperation {
		return nil, logical.CodedError(http.StatusNotFound, "no config to patch: write piwik/config first")
	}

	cfg := defaultConfig()
	if stored != nil {
		copied := *stored
		cfg = &copied
	}
	if err := cfg.update(d, stored == nil); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	client, err := b.newClient(cfg)
	if err != nil {
		return logical.ErrorResponse("ca_cert: " + err.Error()), nil
	}
	defer client.Close()
	if cfg.VerifyCredentials {
		if _, err := client.Token(withRole(ctx, "(config)"), cfg.credentials()); err != nil {
			return logical.ErrorResponse("verify_credentials: Piwik PRO did not issue a token with these settings, nothing was stored: " + err.Error()), nil
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
	return nil, nil
}

func (b *backend) pathConfigDelete(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	if err := req.Storage.Delete(ctx, configStoragePath); err != nil {
		return nil, err
	}
	b.resetConfig()
	return nil, nil
}

// update applies the fields present in d to c and validates the result.
// isNew says whether this is the first write, when every required field
// must be present.
func (c *piwikConfig) update(d *framework.FieldData, isNew bool) error {
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

	id, idSet := d.GetOk("client_id")
	secret, secretSet := d.GetOk("client_secret")
	if idSet {
		if err := validateCredentialField("client_id", id.(string)); err != nil {
			return err
		}
		if id.(string) != c.ClientID && !secretSet {
			return errors.New("client_secret: required when client_id changes")
		}
		c.ClientID = id.(string)
	}
	if secretSet {
		if err := validateCredentialField("client_secret", secret.(string)); err != nil {
			return err
		}
		c.ClientSecret = secret.(string)
	}
	if isNew && (c.ClientID == "" || c.ClientSecret == "") {
		return errors.New("client_id and client_secret: both required")
	}

	if raw, ok := d.GetOk("request_timeout"); ok {
		timeout := time.Duration(raw.(int)) * time.Second
		if timeout <= 0 || timeout > maxRequestTimeout {
			return fmt.Errorf("request_timeout: must be between 1s and %s", maxRequestTimeout)
		}
		c.RequestTimeout = timeout
	}
	if raw, ok := d.GetOk("ca_cert"); ok && raw.(string) != "" {
		if err := validateCACert(raw.(string)); err != nil {
			return fmt.Errorf("ca_cert: %w", err)
		}
		c.CACert = raw.(string)
	} else if ok {
		c.CACert = "" // an empty ca_cert goes back to the system roots
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

// normalizeURL checks a Piwik PRO base URL and returns it without trailing
// slashes. Plain http is refused except for loopback hosts, where it lets a
// local stand-in be used.
func normalizeURL(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("required")
	}
	if len(raw) > maxURLLength {
		return "", fmt.Errorf("longer than %d characters", maxURLLength)
	}
	if strings.ContainsFunc(raw, isControl) {
		return "", errors.New("contains control characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("not a valid URL")
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return "", fmt.Errorf("scheme must be https, got %q", u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return "", errors.New("no host")
	case u.User != nil:
		return "", errors.New("must not carry user information; use client_id and client_secret")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", errors.New("must not have a query or fragment")
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return "", errors.New("must use https (plain http is allowed only for loopback hosts)")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isControl(r rune) bool {
	return r < 0x20 || r == 0x7f
}

// validateCredentialField checks a client_id or client_secret.
func validateCredentialField(field, value string) error {
	switch {
	case value == "":
		return fmt.Errorf("%s: must not be empty", field)
	case len(value) > 1024:
		return fmt.Errorf("%s: longer than 1024 characters", field)
	case strings.ContainsFunc(value, isControl):
		return fmt.Errorf("%s: contains control characters", field)
	}
	return nil
}

// validateCACert checks that pemData holds only parseable certificates.
func validateCACert(pemData string) error {
	if len(pemData) > maxCACertLength {
		return fmt.Errorf("larger than %d KiB", maxCACertLength>>10)
	}
	rest := []byte(pemData)
	count := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("PEM block %d is a %q, want CERTIFICATE", count+1, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("certificate %d does not parse: %w", count+1, err)
		}
		count++
	}
	if count == 0 || strings.TrimSpace(string(rest)) != "" {
		return errors.New("not a PEM bundle of certificates")
	}
	return nil
}

// rejectUnknownFields refuses parameters the path does not define. Vault
// would only warn and ignore them, which hides typos such as "client_secert"
// in a write that then seems to succeed.
func rejectUnknownFields(d *framework.FieldData) error {
	for name := range d.Raw {
		if _, ok := d.Schema[name]; !ok {
			return fmt.Errorf("%s: unknown field", name)
		}
	}
	return nil
}

// getConfig reads the config from storage; nil when never written.
func getConfig(ctx context.Context, s logical.Storage) (*piwikConfig, error) {
	entry, err := s.Get(ctx, configStoragePath)
	if err != nil || entry == nil {
		return nil, err
	}
	cfg := defaultConfig()
	if err := entry.DecodeJSON(cfg); err != nil {
		return nil, fmt.Errorf("decode stored config: %w", err)
	}
	return cfg, nil
}

const pathConfigHelpSyn = `Configure the Piwik PRO account and API credentials.`

const pathConfigHelpDesc = `
Sets the Piwik PRO account URL and the API client credentials used to mint
tokens. The client_id and client_secret are write-only: a read returns the
other settings only. By default the engine mints one token with the new
settings before storing them (verify_credentials) and refuses the write if
Piwik PRO does not issue one; nothing stored changes in that case.

Example:

  $ vault write piwik/config url=https://acme.piwik.pro \
      client_id=... client_secret=@secret.txt
`
