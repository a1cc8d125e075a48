package piwik

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
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

// checkResult is the outcome of checking one credential, without the
// token.
type checkResult struct {
	err error
}

// status is the HTTP status the failure maps to; 200 when there was none.
func (r checkResult) status() int {
	var binding *bindingError
	switch {
	case r.err == nil:
		return http.StatusOK
	case errors.As(r.err, &binding):
		return http.StatusConflict
	case isCorrupt(r.err):
		return http.StatusInternalServerError
	}
	return failureStatus(r.err)
}

func (r checkResult) render(extra map[string]any) map[string]any {
	out := map[string]any{"ok": r.err == nil}
	if r.err != nil {
		out["error"] = r.err.Error()
		out["status"] = r.status()
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func (b *backend) pathCheckRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	acct, err := b.account(ctx, req.Storage)
	if err != nil {
		return nil, storageFailure(err)
	}
	if acct == nil {
		return logical.ErrorResponse("Piwik PRO is not configured: write piwik/config first"), nil
	}
	names, err := req.Storage.List(ctx, roleStoragePrefix)
	if err != nil {
		return nil, err
	}

	configResult, roleResults := b.runChecks(ctx, req.Storage, acct, names)
	statuses := map[int]bool{}
	var problems []string
	note := func(what string, r checkResult) {
		if r.err != nil {
			statuses[r.status()] = true
			problems = append(problems, what+": "+r.err.Error())
		}
	}
	note("config", configResult)
	rendered := make(map[string]any, len(roleResults))
	for _, name := range slices.Sorted(maps.Keys(roleResults)) {
		result := roleResults[name]
		if result.source == "role" {
			note(fmt.Sprintf("role %q", name), result.checkResult)
		}
		rendered[name] = result.render(map[string]any{"credentials": result.source})
	}
	report := map[string]any{
		"ok":     len(problems) == 0,
		"config": configResult.render(nil),
		"roles":  rendered,
	}
	if len(problems) == 0 {
		return &logical.Response{Data: report}, nil
	}
	// A probe that only looks at the status must see the failure: every
	// failure's own status when they agree, else 502.
	status := http.StatusBadGateway
	if len(statuses) == 1 {
		for s := range statuses {
			status = s
		}
	}
	return failedCheck(req, status, report, problems)
}

// failedCheck answers a check with status and the report. The body has
// Vault's "errors" list as well as the report's "data", so that the CLI
// and API clients, which print only the errors of a non-2xx answer, show
// what failed.
func failedCheck(req *logical.Request, status int, report map[string]any, problems []string) (*logical.Response, error) {
	body, err := json.Marshal(map[string]any{"request_id": req.ID, "errors": problems, "data": report})
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{
		logical.HTTPContentType: "application/json",
		logical.HTTPStatusCode:  status,
		// A string, not bytes, so that Vault's audit log HMACs it.
		logical.HTTPRawBody: string(body),
	}}, nil
}

// roleCheck is one role's result and whose credentials it used.
type roleCheck struct {
	checkResult
	source string // "role" or "config"
}

// runChecks mints one token with the config's credentials and one with
// each role's own credentials, a few at a time, and throws the tokens away.
// A role that does not decode, or whose secret was given for another url,
// is reported as failed without any request; the others are still checked.
func (b *backend) runChecks(ctx context.Context, s logical.Storage, acct *account, names []string) (checkResult, map[string]roleCheck) {
	var (
		mu           sync.Mutex
		configResult checkResult
		roleResults  = make(map[string]roleCheck, len(names))
		configRoles  []string // roles that use the config's credentials
		group        errgroup.Group
	)
	record := func(name string, r roleCheck) {
		mu.Lock()
		defer mu.Unlock()
		roleResults[name] = r
	}
	group.SetLimit(checkParallelism)
	group.Go(func() error {
		_, err := b.mint(ctx, acct, "(config)", acct.config.credentials())
		mu.Lock()
		defer mu.Unlock()
		configResult = checkResult{err: err}
		return nil
	})
	for _, name := range names {
		role, err := b.role(ctx, s, name)
		switch {
		case err != nil:
			record(name, roleCheck{checkResult{err}, "role"})
			continue
		case role == nil: // deleted meanwhile
			continue
		case !role.hasCredentials():
			configRoles = append(configRoles, name)
			continue
		}
		creds, err := acct.credentialsFor(name, role)
		if err != nil {
			record(name, roleCheck{checkResult{err}, "role"})
			continue
		}
		group.Go(func() error {
			_, err := b.mint(ctx, acct, name, creds)
			record(name, roleCheck{checkResult{err}, "role"})
			return nil
		})
	}
	_ = group.Wait() // the goroutines record their errors, they never return one
	for _, name := range configRoles {
		roleResults[name] = roleCheck{configResult, "config"}
	}
	return configResult, roleResults
}

const pathCheckHelpSyn = `Check that Piwik PRO issues tokens right now.`

const pathCheckHelpDesc = `
Mints one token with the config's credentials and one with each role's own
credentials, and reports for each whether Piwik PRO issued it, or the error
it gave. The tokens are discarded, never returned. Roles without their own
credentials report the config's result; a role whose stored entry does not
decode, or whose secret was given for another url, is reported without a
request. When anything fails the answer is not a 200 but the failures'
status (429, 502, 504, 409 or 500; 502 when they differ), with the same
report in the body, so that a probe which only looks at the status sees it.
Use it after rotating a credential in Piwik PRO, or from monitoring.
`
