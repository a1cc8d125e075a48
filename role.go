package piwik

import (
	"errors"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
)

// Where roles are stored, and how long a role name may be.
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
	// CredentialsURL and CredentialsCA record the config's url and ca_cert
	// fingerprint when ClientSecret was written: the secret is only ever
	// sent there.
	CredentialsURL string `json:"credentials_url,omitempty"`
	CredentialsCA  string `json:"credentials_ca,omitempty"`
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

// credentials returns the role's own credentials.
func (r *piwikRole) credentials() credentials {
	return credentials{ClientID: r.ClientID, ClientSecret: r.ClientSecret}
}

// update applies the fields present in d to r and validates the result. It
// reports whether a client_secret was given, which then must be verified
// and bound to the config.
func (r *piwikRole) update(d *framework.FieldData) (secretGiven bool, err error) {
	if ttl, ok, err := secondsField(d, "ttl", maxTokenLifetime); err != nil {
		return false, err
	} else if ok {
		r.TTL = ttl
	}
	if raw, ok := d.GetOk("token_reuse"); ok {
		r.TokenReuse = raw.(bool)
	}
	if raw, ok := d.GetOk("leased"); ok {
		r.Unleased = !raw.(bool)
	}
	if floor, ok, err := secondsField(d, "reuse_min_remaining", maxTokenLifetime); err != nil {
		return false, err
	} else if ok {
		r.ReuseMinRemaining = floor
	}
	return r.updateCredentials(d)
}

// updateCredentials applies client_id and client_secret:
//
//	client_id="" (and no secret)     back to the config's credentials
//	client_id and client_secret      a new credential
//	client_secret alone              a new secret for the role's client_id
//	client_id alone, unchanged       nothing changes
func (r *piwikRole) updateCredentials(d *framework.FieldData) (secretGiven bool, err error) {
	rawID, idSet := d.GetOk("client_id")
	rawSecret, secretSet := d.GetOk("client_secret")
	id, _ := rawID.(string)
	secret, _ := rawSecret.(string)
	if idSet && id != "" {
		if id, err = credentialField("client_id", id); err != nil {
			return false, err
		}
	}
	switch {
	case !idSet && !secretSet:
		return false, nil
	case idSet && id == "":
		if secret != "" {
			return false, errors.New(`client_secret: not allowed with client_id="" (which goes back to the config's credentials)`)
		}
		*r = piwikRole{TTL: r.TTL, TokenReuse: r.TokenReuse, ReuseMinRemaining: r.ReuseMinRemaining, Unleased: r.Unleased}
		return false, nil
	case !idSet && !r.hasCredentials():
		return false, errors.New("client_id: required with client_secret, since the role has no client_id of its own")
	case idSet && id != r.ClientID && !secretSet:
		return false, errors.New("client_secret: required when client_id changes")
	}
	if idSet {
		r.ClientID = id
	}
	if !secretSet {
		return false, nil
	}
	if r.ClientSecret, err = credentialField("client_secret", secret); err != nil {
		return false, err
	}
	return true, nil
}
