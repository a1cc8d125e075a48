package piwik

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"
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
							"config": {Type: framework.TypeMap, Description: `Result for the config's credentials: "ok", "checked_at" (when Piwik PRO was asked), and "error" and "status" when it failed.`},
							"roles":  {Type: framework.TypeMap, Description: `Result per role: "ok", "checked_at", "credentials" ("role" or "config"), and "error" and "status" when it failed.`},
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
// token, and when it was taken.
type checkResult struct {
	err error
	at  time.Time
}

// status is the HTTP status the failure maps to; 200 when there was none.
func (r checkResult) status() int {
	if r.err == nil {
		return http.StatusOK
	}
	return failureStatus(r.err)
}

func (r checkResult) render(extra map[string]any) map[string]any {
	out := map[string]any{"ok": r.err == nil}
	if !r.at.IsZero() {
		out["checked_at"] = r.at.UTC().Format(time.RFC3339)
	}
	if r.err != nil {
		out["error"] = r.err.Error()
		out["status"] = r.status()
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// checkInterval is how long the result of checking one credential is
// answered again instead of asking Piwik PRO anew: monitoring that polls
// piwik/check costs at most one token request per credential per
// checkInterval on each node, however often it polls.
const checkInterval = time.Minute

// checkMemory remembers, per credential fingerprint, the last result of
// checking it on this node. Config and role writes, and a rejection of the
// credential on any path, drop it, so that a check right after rotating or
// deleting a credential is live. Concurrent checks of one credential share
// one request.
type checkMemory struct {
	now     func() time.Time
	mu      sync.Mutex
	results map[string]checkResult
	// epoch counts forgetAll calls and forgets the forget calls per
	// fingerprint since the last forgetAll: a check whose request started
	// before either is neither remembered nor joined by later checks, so
	// that a reply Piwik PRO gave before a rejection cannot stand for the
	// minute after it.
	epoch   uint64
	forgets map[string]uint64
	flight  singleflight.Group
}

// checkVersion is what a check's result is remembered under: it holds
// while neither forget nor forgetAll was called for its fingerprint.
type checkVersion struct{ epoch, forgets uint64 }

func newCheckMemory(now func() time.Time) *checkMemory {
	return &checkMemory{now: now, results: make(map[string]checkResult), forgets: make(map[string]uint64)}
}

// version returns the current version of fingerprint; m.mu must be held.
func (m *checkMemory) version(fingerprint string) checkVersion {
	return checkVersion{epoch: m.epoch, forgets: m.forgets[fingerprint]}
}

// check returns the remembered result for fingerprint while it is younger
// than checkInterval, else runs mint and remembers what it gave. A mint
// that sent no request (a rate-limit or backoff window) or that the caller
// abandoned is not remembered: it says nothing new about the credential.
func (m *checkMemory) check(ctx context.Context, fingerprint string, mint func(context.Context) error) checkResult {
	if r, ok := m.recent(fingerprint); ok {
		return r
	}
	m.mu.Lock()
	ver := m.version(fingerprint)
	m.mu.Unlock()
	key := fmt.Sprintf("%s\x00%d\x00%d", fingerprint, ver.epoch, ver.forgets)
	ch := m.flight.DoChan(key, func() (any, error) {
		if r, ok := m.recent(fingerprint); ok {
			return r, nil
		}
		err := mint(context.WithoutCancel(ctx))
		r := checkResult{err: err, at: m.now()}
		if upErr, ok := asUpstreamError(err); !isCallerError(err) && !(ok && upErr.NotSent) {
			m.mu.Lock()
			if m.version(fingerprint) == ver {
				m.results[fingerprint] = r
			}
			m.mu.Unlock()
		}
		return r, nil
	})
	select {
	case res := <-ch:
		return res.Val.(checkResult)
	case <-ctx.Done():
		return checkResult{err: callerContextError(ctx, "the check's token request finished"), at: m.now()}
	}
}

// recent returns the remembered result for fingerprint if it is younger
// than checkInterval.
func (m *checkMemory) recent(fingerprint string) (checkResult, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.results[fingerprint]
	if !ok || m.now().Sub(r.at) >= checkInterval {
		return checkResult{}, false
	}
	return r, true
}

// forget drops the remembered result for fingerprint, and voids the
// checks of it in flight.
func (m *checkMemory) forget(fingerprint string) {
	m.mu.Lock()
	delete(m.results, fingerprint)
	m.forgets[fingerprint]++
	m.mu.Unlock()
}

// forgetAll drops every remembered result, and voids every check in
// flight.
func (m *checkMemory) forgetAll() {
	m.mu.Lock()
	clear(m.results)
	clear(m.forgets)
	m.epoch++
	m.mu.Unlock()
}

func (b *backend) pathCheckRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	acct, err := b.account(ctx, req.Storage)
	if err != nil {
		return nil, failureError(err)
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
	return failedCheck(req, combinedStatus(statuses), report, problems)
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

// runChecks checks the config's credentials and each role's own, a few at
// a time, through the check memory: each credential costs at most one
// token request per checkInterval, and the tokens are thrown away. A role
// that does not decode, or whose secret was given for another url, is
// reported as failed without any request; the others are still checked.
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
	checkCredential := func(role string, creds credentials) checkResult {
		return b.checks.check(ctx, acct.fingerprint(creds), func(ctx context.Context) error {
			// The request outlives its callers (later checks share it),
			// not the mount: Clean cancels it and waits for it.
			if !b.startBackground() {
				return callerContextError(b.background, "a token request started: the mount is being cleaned up")
			}
			defer b.backgroundWork.Done()
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			defer context.AfterFunc(b.background, cancel)()
			_, err := b.mint(ctx, acct, role, creds)
			return err
		})
	}
	group.SetLimit(checkParallelism)
	group.Go(func() error {
		r := checkCredential(configRole, acct.config.credentials())
		mu.Lock()
		defer mu.Unlock()
		configResult = r
		return nil
	})
	for _, name := range names {
		role, err := b.role(ctx, s, name)
		switch {
		case err != nil:
			record(name, roleCheck{checkResult{err: err}, "role"})
			continue
		case role == nil: // deleted meanwhile
			continue
		case !role.hasCredentials():
			configRoles = append(configRoles, name)
			continue
		}
		creds, err := acct.credentialsFor(name, role)
		if err != nil {
			record(name, roleCheck{checkResult{err: err}, "role"})
			continue
		}
		group.Go(func() error {
			record(name, roleCheck{checkCredential(name, creds), "role"})
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

var pathCheckHelpDesc = fmt.Sprintf(`
Checks that Piwik PRO issues a token with the config's credentials and with
each role's own credentials, and reports for each whether it did, or the
error it gave, and when it was asked (checked_at). The tokens are discarded,
never returned. Roles without their own credentials report the config's
result; a role whose stored entry does not decode, or whose secret was given
for another url, is reported without a request.

This is the health probe for monitoring: each credential costs at most one
token request per %s on each node, however often the check is called;
within that time the last result is answered again, with its checked_at. A
config or role write, and a rejection of a credential on any read, make the
next check ask Piwik PRO anew, so that a check right after rotating or
deleting a credential is live.

When anything fails the answer is not a 200 but the failures' status (429,
502, 504, 409 or 500; 502 when they differ), with the same report in the
body, so that a probe which only looks at the status sees it.
`, checkInterval)
