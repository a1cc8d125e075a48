package piwik

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestTokens_listReadAndPurge(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	tokens := map[string]string{}
	for _, role := range []string{"a", "b"} {
		e.mustDo(logical.CreateOperation, "roles/"+role, map[string]any{"token_reuse": true})
		tokens[role] = e.mustDo(logical.ReadOperation, "creds/"+role, nil).Data["access_token"].(string)
	}
	if keys := e.mustDo(logical.ListOperation, "tokens/", nil).Data["keys"]; !slices.Equal(keys.([]string), []string{"a", "b"}) {
		t.Errorf("list tokens/ = %v, want a and b", keys)
	}
	resp := e.mustDo(logical.ReadOperation, "tokens/a", nil)
	if text := responseText(t, resp, nil); strings.Contains(text, tokens["a"]) || resp.Data["expires_at"] == nil || resp.Data["minted_at"] == nil || resp.Data["sub"] == nil {
		t.Errorf("read tokens/a = %v, want when it was minted and expires and whom it acts for, never the token", resp.Data)
	}

	e.mustDo(logical.DeleteOperation, "tokens/a", nil)
	before := e.piwik.TokenRequests()
	if got := e.mustDo(logical.ReadOperation, "creds/a", nil).Data["access_token"]; got == tokens["a"] {
		t.Error("a purged token was handed out again")
	}
	if got := e.mustDo(logical.ReadOperation, "creds/b", nil).Data["access_token"]; got != tokens["b"] {
		t.Error("purging a's token dropped b's")
	}
	if got := e.piwik.TokenRequests() - before; got != 1 {
		t.Errorf("%d token requests, want 1", got)
	}

	e.mustDo(logical.DeleteOperation, "tokens", nil)
	if keys, _ := e.storage.List(context.Background(), tokenStoragePrefix); len(keys) != 0 {
		t.Errorf("after purging every token storage holds %v", keys)
	}
	if got := e.mustDo(logical.ReadOperation, "creds/b", nil).Data["access_token"]; got == tokens["b"] {
		t.Error("a purged token was handed out again")
	}
	if resp, err := e.do(logical.ReadOperation, "tokens/ghost", nil); err != nil || resp != nil {
		t.Errorf("read of a role without a stored token: %v %v, want nothing", resp, err)
	}
}

func TestTokens_purgeVoidsAMintInFlight(t *testing.T) {
	e, h, done := newEnvWithHeldMint(t)
	e.mustDo(logical.DeleteOperation, "tokens/r", nil)
	h.release(testClientID)
	<-done
	if stored, _ := e.b.readStoredToken(context.Background(), "r"); stored != nil {
		t.Error("a mint started before the purge stored its token after it")
	}
}

func TestTokens_purgingRolesThisNodeNeverSawKeepsNothingInMemory(t *testing.T) {
	e := newEnvWithRole(t, "r", map[string]any{"token_reuse": true})
	e.mustDo(logical.ReadOperation, "creds/r", nil)
	size := func() int {
		e.b.tokens.mu.Lock()
		defer e.b.tokens.mu.Unlock()
		return len(e.b.tokens.gens) + len(e.b.tokens.entries)
	}
	before := size()
	for i := range 1000 {
		e.mustDo(logical.DeleteOperation, fmt.Sprintf("tokens/no-such-role-%d", i), nil)
		e.mustDo(logical.DeleteOperation, fmt.Sprintf("roles/no-such-role-%d", i), nil)
	}
	if after := size(); after != before {
		t.Errorf("the token cache grew from %d to %d entries for roles that never had a token", before, after)
	}
}
