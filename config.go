package piwik

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
)

// The config's storage key, defaults and limits.
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

// defaultConfig is a config before any field is written.
func defaultConfig() *piwikConfig {
	return &piwikConfig{
		RequestTimeout:    defaultRequestTimeout,
		VerifyCredentials: true,
		MaxRetries:        defaultMaxRetries,
	}
}

// credentials returns the config's own credentials.
func (c *piwikConfig) credentials() credentials {
	return credentials{ClientID: c.ClientID, ClientSecret: c.ClientSecret}
}

// clientOptions is what a client for c is built from.
func (c *piwikConfig) clientOptions() clientOptions {
	return clientOptions{
		BaseURL:    c.URL,
		Timeout:    c.RequestTimeout,
		MaxRetries: c.MaxRetries,
		CACert:     c.CACert,
	}
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
