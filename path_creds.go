package piwik

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathCreds(b *backend) []*framework.Path {
	return []*framework.Path{{
		Pattern: "creds/" + framework.GenericNameRegex("name"),
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "credentials",
		},
		Fields: map[string]*framework.FieldSchema{
			"name": {
				Type:        framework.TypeString,
				Description: "Name of the role to read a token for.",
				Required:    true,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathCredsRead,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb: "read",
				},
				Summary: "Get a Piwik PRO access token, as a lease (or with its ttl for roles with leased=false).",
				Responses: map[int][]framework.Response{
					http.StatusOK: {{Description: "OK", Fields: credsResponseFields}},
				},
			},
		},
		HelpSynopsis:    pathCredsHelpSyn,
		HelpDescription: pathCredsHelpDesc,
	}}
}

// credsResponseFields documents what a creds read returns.
var credsResponseFields = map[string]*framework.FieldSchema{
	"access_token": {Type: framework.TypeString, Description: "Piwik PRO access token (a JWT), sent as 'Authorization: Bearer <access_token>'."},
	"token_type":   {Type: framework.TypeString, Description: "Always Bearer."},
	"expires_at":   {Type: framework.TypeString, Description: "When the token stops working (RFC 3339, UTC)."},
	"sub":          {Type: framework.TypeString, Description: "The Piwik PRO user the token acts for (JWT sub), when present."},
	"org":          {Type: framework.TypeString, Description: "The Piwik PRO organization (JWT org), when present."},
	"aud":          {Type: framework.TypeString, Description: "The API credential's name (JWT aud), when present."},
	"ttl":          {Type: framework.TypeInt64, Description: "Roles with leased=false only: whole seconds the token has left, capped by the role's ttl (there is no lease)."},
}

func (b *backend) pathCredsRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	role, err := b.role(ctx, req.Storage, name)
	if err != nil {
		return nil, failureError(err)
	}
	if role == nil {
		return logical.ErrorResponse(fmt.Sprintf("unknown role %q: write piwik/roles/%s first", name, name)), nil
	}
	acct, err := b.account(ctx, req.Storage)
	if err != nil {
		return nil, failureError(err)
	}
	if acct == nil {
		return logical.ErrorResponse("Piwik PRO is not configured: write piwik/config first"), nil
	}

	tok, warnings, err := b.issue(ctx, name, role, acct)
	if err != nil {
		return nil, failureError(err)
	}
	mountMax := b.mountMaxTTL()
	if role.Unleased {
		mountMax = 0 // no lease for Vault to cap
	}
	ttl, capWarnings := leaseTTL(tok, b.now(), role.TTL, mountMax)
	warnings = append(warnings, capWarnings...)
	if ttl < time.Second {
		return nil, failureError(errTokenTooShort)
	}

	if role.Unleased {
		data := credsData(tok)
		data["ttl"] = int64(ttl.Seconds())
		return &logical.Response{Data: data, Warnings: warnings}, nil
	}
	resp := b.Secret(secretTypeToken).Response(credsData(tok), map[string]any{
		"role":       name,
		"expires_at": tok.ExpiresAt.Format(time.RFC3339),
	})
	resp.Secret.TTL = ttl
	resp.Secret.MaxTTL = ttl
	resp.Secret.Renewable = false
	resp.Warnings = warnings
	return resp, nil
}

// issue mints a token for role, or, for a role with token_reuse, hands
// out the role's cached token when it was minted with exactly the
// credentials and account the role resolves to now (see issueReuse).
func (b *backend) issue(ctx context.Context, name string, role *piwikRole, acct *account) (*token, []string, error) {
	creds, err := acct.credentialsFor(name, role)
	if err != nil {
		return nil, nil, err
	}
	if !role.TokenReuse {
		tok, err := b.mint(ctx, acct, name, creds)
		return tok, nil, err
	}
	return b.issueReuse(ctx, reuseRequest{
		name: name, acct: acct, creds: creds,
		fingerprint: acct.fingerprint(creds), policy: b.reusePolicy(role, acct),
	})
}

// leaseTTL is the lease for tok at now: what is left of the token's life,
// truncated to whole seconds so that the lease never ends after the token,
// capped by the role's ttl and the mount's max lease TTL. The warnings say
// which cap applied, so that nobody wonders why a lease ends before the
// token does.
func leaseTTL(tok *token, now time.Time, roleTTL, mountMax time.Duration) (time.Duration, []string) {
	var warnings []string
	ttl := tok.ExpiresAt.Sub(now).Truncate(time.Second)
	if tok.ExpCut {
		warnings = append(warnings, fmt.Sprintf("the token's exp claim ends its life before expires_in (%s); the lease follows exp", tok.ExpiresIn))
	}
	if roleTTL > 0 && roleTTL < ttl {
		ttl = roleTTL
		warnings = append(warnings, fmt.Sprintf("ttl capped at the role's ttl of %s; the token itself is valid until %s", roleTTL, tok.ExpiresAt.Format(time.RFC3339)))
	}
	if mountMax > 0 && mountMax < ttl {
		ttl = mountMax
		warnings = append(warnings, fmt.Sprintf("lease capped at the mount's max lease TTL of %s; the token itself is valid until %s", mountMax, tok.ExpiresAt.Format(time.RFC3339)))
	}
	return ttl, warnings
}

// credsData is what a reader sees: the token and whom it acts for.
func credsData(tok *token) map[string]any {
	data := map[string]any{
		"access_token": tok.AccessToken,
		"token_type":   tok.TokenType,
		"expires_at":   tok.ExpiresAt.Format(time.RFC3339),
	}
	if tok.Claims.Subject != "" {
		data["sub"] = tok.Claims.Subject
	}
	if tok.Claims.Org != "" {
		data["org"] = tok.Claims.Org
	}
	switch len(tok.Claims.Audience) {
	case 0:
	case 1:
		data["aud"] = tok.Claims.Audience[0]
	default:
		data["aud"] = tok.Claims.Audience
	}
	return data
}

const pathCredsHelpSyn = `Get a Piwik PRO access token for a role.`

var pathCredsHelpDesc = fmt.Sprintf(`
Asks Piwik PRO for an access token with the role's credentials (or the
config's) and returns it as a lease that ends when the token expires, or
earlier when the role's ttl or the mount's max lease TTL is shorter. The
response names the Piwik PRO user the token acts for (sub, org, aud).

Leases are not renewable: read the path again for a new token. Revoking a
lease succeeds but cannot end the token early, because Piwik PRO has no
revocation endpoint; the token stays valid until expires_at. A role with
leased=false returns the token and its remaining ttl without a lease.

A role with token_reuse keeps serving its cached token, with a warning,
while Piwik PRO cannot issue a new one for a reason that may pass (it is
unreachable, times out, fails with 5xx or rate limits) and the token has at
least %d seconds (or %s of its lifetime, if shorter) left. Never
when Piwik PRO rejects the credential.

Example:

  $ vault read piwik/creds/reporting
`, int(staleFloorMax/time.Second), fraction(staleFloorFraction))
