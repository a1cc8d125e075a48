package piwik

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func TestRoles_credentialRules(t *testing.T) {
	e := newEnvWithRole(t, "r", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
	for _, tc := range []struct {
		data map[string]any
		want string
	}{
		{map[string]any{"client_id": "someone-else"}, "client_secret: required when client_id changes"},
		{map[string]any{"client_secret": ""}, "client_secret: must not be empty"},
		{map[string]any{"client_id": "", "client_secret": "x"}, `client_secret: not allowed with client_id=""`},
	} {
		if status, msg := statusOf(e.do(logical.PatchOperation, "roles/r", tc.data)); status != http.StatusBadRequest || !strings.Contains(msg, tc.want) {
			t.Errorf("patch %v: %d %q, want 400 %q", tc.data, status, msg, tc.want)
		}
	}
	e.mustDo(logical.PatchOperation, "roles/r", map[string]any{"client_id": roleClientID}) // unchanged: fine
	e.mustDo(logical.CreateOperation, "roles/plain", nil)
	if status, msg := statusOf(e.do(logical.PatchOperation, "roles/plain", map[string]any{"client_secret": "s"})); status != http.StatusBadRequest || !strings.Contains(msg, "client_id: required") {
		t.Errorf("secret alone on a role without client_id: %d %q", status, msg)
	}
}

// FuzzRoleUpdate: a role that passes validation has sane durations and
// either both credentials or neither.
func FuzzRoleUpdate(f *testing.F) {
	f.Add("10m", "", "", true, "5m")
	f.Add("-1s", "id", "", false, "0")
	f.Add("9999999999h", "", "s", true, "x")
	schema := roleFields()
	f.Fuzz(func(t *testing.T, ttl, id, secret string, reuse bool, floor string) {
		raw := map[string]any{"ttl": ttl, "token_reuse": reuse, "reuse_min_remaining": floor}
		if id != "" || secret != "" {
			raw["client_id"], raw["client_secret"] = id, secret
		}
		d := &framework.FieldData{Schema: schema, Raw: raw}
		if d.Validate() != nil {
			return
		}
		role := &piwikRole{}
		if _, err := role.update(d); err != nil {
			return
		}
		if role.TTL < 0 || role.TTL > maxTokenLifetime || role.ReuseMinRemaining < 0 || role.ReuseMinRemaining > maxTokenLifetime {
			t.Fatalf("stored durations ttl=%s floor=%s", role.TTL, role.ReuseMinRemaining)
		}
		if (role.ClientID == "") != (role.ClientSecret == "") {
			t.Fatal("stored one of client_id and client_secret without the other")
		}
	})
}
