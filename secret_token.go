package piwik

import (
	"context"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// secretTypeToken is the lease type of a Piwik PRO access token.
const secretTypeToken = "piwik_token"

// secretToken describes the leases creds/<role> returns. It has no Renew:
// Piwik PRO cannot extend a token, so the leases are not renewable.
func secretToken(b *backend) *framework.Secret {
	return &framework.Secret{
		Type: secretTypeToken,
		Fields: map[string]*framework.FieldSchema{
			"access_token": {
				Type:        framework.TypeString,
				Description: "Piwik PRO access token (a JWT), sent as 'Authorization: Bearer <access_token>'.",
			},
			"token_type": {
				Type:        framework.TypeString,
				Description: "Always Bearer.",
			},
			"expires_at": {
				Type:        framework.TypeString,
				Description: "When the token stops working (RFC 3339, UTC).",
			},
		},
		Revoke: b.revokeToken,
	}
}

// revokeToken always succeeds. Piwik PRO has no revocation endpoint, so the
// token stays valid until it expires; failing here would only leave leases
// that can never be revoked and a mount that cannot be disabled. It logs
// nothing: leases expire at the read rate, and a line for each cost Vault
// and the plugin CPU on every read for no information.
func (b *backend) revokeToken(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
	return nil, nil
}
