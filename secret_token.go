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
// that can never be revoked and a mount that cannot be disabled.
func (b *backend) revokeToken(_ context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	b.Logger().Debug("lease revoked; Piwik PRO cannot revoke the token, it stays valid until it expires",
		"role", req.Secret.InternalData["role"], "expires_at", req.Secret.InternalData["expires_at"])
	return nil, nil
}
