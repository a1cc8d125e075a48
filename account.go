package piwik

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/hashicorp/vault/sdk/helper/useragent"
)

// account is the stored config with what is derived from it once per
// load: the HTTP client, and the fingerprint of its CA trust.
type account struct {
	config *piwikConfig
	client *client
	// caSum identifies config.CACert ("" when the system roots are used).
	caSum string
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

// gateKey names a credential for its gate: the account url and client id.
func gateKey(acct *account, creds credentials) string {
	return acct.config.URL + "\x00" + creds.ClientID
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

// bindingError is a role whose own secret was given for another url (or CA
// trust) than the config has now. Nothing is sent: the operator must give
// the secret again for the new url.
type bindingError struct {
	role, givenFor, configURL string
}

func (e *bindingError) Error() string {
	where := fmt.Sprintf("%s, but piwik/config now points at %s", e.givenFor, e.configURL)
	if e.givenFor == e.configURL {
		where = e.givenFor + " with another ca_cert than piwik/config has now"
	}
	if e.givenFor == "" {
		where = "no recorded url"
	}
	return fmt.Sprintf("role %q: its client_secret was given for %s; nothing was sent. Write the role's client_secret again (vault write piwik/roles/%s client_secret=...) to use it with the current url", e.role, where, e.role)
}
