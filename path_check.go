package piwik

import (
	"context"
	"net/http"
	"sync"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/sync/errgroup"
)

// checkParallelism bounds how many token requests one check makes at once,
// so that checking many roles does not burst against Piwik PRO.
const checkParallelism = 4

func pathCheck(b *backend) []*framework.Path {
	return []*framework.Path{{
		Pattern: "check",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "credentials-check",
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathCheckRead,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb: "read",
				},
				Summary: "Check that Piwik PRO issues tokens for the config's and every role's credentials.",
				Responses: map[int][]framework.Response{
					http.StatusOK: {{
						Description: "OK",
						Fields: map[string]*framework.FieldSchema{
							"ok":     {Type: framework.TypeBool, Description: "True when every check passed."},
							"config": {Type: framework.TypeMap, Description: `Result for the config's credentials: "ok", and "error" when it failed.`},
							"roles":  {Type: framework.TypeMap, Description: `Result per role: "ok", "credentials" ("role" or "config"), and "error" when it failed.`},
						},
					}},
				},
			},
		},
		HelpSynopsis:    pathCheckHelpSyn,
		HelpDescription: pathCheckHelpDesc,
	}}
}

// checkResult is the outcome of minting one token, without the token.
type checkResult struct {
	err error
}

func (r checkResult) render(extra map[string]any) map[string]any {
	out := map[string]any{"ok": r.err == nil}
	if r.err != nil {
		out["error"] = r.err.Error()
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func (b *backend) pathCheckRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, client, err := b.upstream(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return logical.ErrorResponse("Piwik PRO is not configured: write piwik/config first"), nil
	}
	names, err := req.Storage.List(ctx, roleStoragePrefix)
	if err != nil {
		return nil, err
	}
	roles := make(map[string]*piwikRole, len(names))
	for _, name := range names {
		if role, err := b.role(ctx, req.Storage, name); err != nil {
			return nil, err
		} else if role != nil {
			roles[name] = role
		}
	}

	configResult, roleResults := b.runChecks(ctx, cfg, client, roles)
	allOK := configResult.err == nil
	rendered := make(map[string]any, len(roles))
	for name, role := range roles {
		source := "config"
		result := configResult
		if role.hasCredentials() {
			source, result = "role", roleResults[name]
		}
		allOK = allOK && result.err == nil
		rendered[name] = result.render(map[string]any{"credentials": source})
	}
	return &logical.Response{Data: map[string]any{
		"ok":     allOK,
		"config": configResult.render(nil),
		"roles":  rendered,
	}}, nil
}

// runChecks mints one token with the config's credentials and one with
// each role's own credentials, a few at a time, and throws the tokens away.
func (b *backend) runChecks(ctx context.Context, cfg *piwikConfig, client *Client, roles map[string]*piwikRole) (checkResult, map[string]checkResult) {
	var (
		mu           sync.Mutex
		configResult checkResult
		roleResults  = make(map[string]checkResult)
		group        errgroup.Group
	)
	group.SetLimit(checkParallelism)
	check := func(ctx context.Context, creds Credentials, record func(checkResult)) {
		group.Go(func() error {
			_, err := client.Token(ctx, creds)
			mu.Lock()
			defer mu.Unlock()
			record(checkResult{err: err})
			return nil
		})
	}
	check(withRole(ctx, "(config)"), cfg.credentials(), func(r checkResult) { configResult = r })
	for name, role := range roles {
		if role.hasCredentials() {
			check(withRole(ctx, name), role.credentials(cfg), func(r checkResult) { roleResults[name] = r })
		}
	}
	_ = group.Wait() // the goroutines record their errors, they never return one
	return configResult, roleResults
}

const pathCheckHelpSyn = `Check that Piwik PRO issues tokens right now.`

const pathCheckHelpDesc = `
Mints one token with the config's credentials and one with each role's own
credentials, and reports for each whether Piwik PRO issued it, or the error
it gave. The tokens are discarded, never returned. Roles without their own
credentials report the config's result. Use it after rotating a credential
in Piwik PRO, or from monitoring.
`
