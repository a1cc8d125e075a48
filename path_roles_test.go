package piwik

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestRoles_crudListPatch(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)

	e.mustDo(logical.CreateOperation, "roles/reporting", map[string]any{"ttl": "10m"})
	e.mustDo(logical.CreateOperation, "roles/admin", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})

	resp := e.mustDo(logical.ReadOperation, "roles/reporting", nil)
	want := map[string]any{"ttl": int64(600), "own_credentials": false, "token_reuse": false, "reuse_min_remaining": int64(0), "leased": true, "client_id": "", "credentials_url": ""}
	if !reflect.DeepEqual(resp.Data, want) {
		t.Errorf("role read = %#v, want %#v", resp.Data, want)
	}

	list := e.mustDo(logical.ListOperation, "roles/", nil)
	if got := list.Data["keys"]; !reflect.DeepEqual(got, []string{"admin", "reporting"}) {
		t.Errorf("list = %v, want [admin reporting]", got)
	}

	e.mustDo(logical.PatchOperation, "roles/reporting", map[string]any{"token_reuse": true})
	resp = e.mustDo(logical.ReadOperation, "roles/reporting", nil)
	if resp.Data["ttl"] != int64(600) || resp.Data["token_reuse"] != true {
		t.Errorf("patch lost or missed a field: %#v", resp.Data)
	}

	// Update keeps what it does not mention, like patch.
	e.mustDo(logical.UpdateOperation, "roles/admin", map[string]any{"ttl": "5m"})
	resp = e.mustDo(logical.ReadOperation, "roles/admin", nil)
	if resp.Data["own_credentials"] != true {
		t.Errorf("update dropped the role's credentials")
	}
	e.assertNoSecret("role read", responseText(t, resp, nil))
	if resp.Data["client_id"] != roleClientID || resp.Data["credentials_url"] != e.server.URL {
		t.Errorf("role read: client_id %v, credentials_url %v; want %s and the config's url", resp.Data["client_id"], resp.Data["credentials_url"], roleClientID)
	}

	e.mustDo(logical.DeleteOperation, "roles/admin", nil)
	if resp, err := e.do(logical.ReadOperation, "roles/admin", nil); resp != nil || err != nil {
		t.Errorf("deleted role still reads as %v, %v", resp, err)
	}
}

func TestRoles_unknownRoleReadsAsNothing(t *testing.T) {
	e := newEnv(t)
	resp, err := e.do(logical.ReadOperation, "roles/nope", nil)
	if resp != nil || err != nil {
		t.Errorf("unknown role = %v, %v; want nil, nil", resp, err)
	}
	if _, err := e.do(logical.PatchOperation, "roles/nope", map[string]any{"ttl": 5}); !isStatus(err, 404) {
		t.Errorf("patch of an unknown role accepted")
	}
}

func TestRoles_credentialsNeedConfigToVerify(t *testing.T) {
	e := newEnv(t)
	resp, _ := e.do(logical.CreateOperation, "roles/r", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
	if !strings.Contains(errorText(resp), "piwik/config") {
		t.Errorf("error = %q, want it to ask for piwik/config first", errorText(resp))
	}
}

func TestRoles_emptyCredentialsGoBackToConfig(t *testing.T) {
	e := newEnvWithRole(t, "r", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
	e.mustDo(logical.UpdateOperation, "roles/r", map[string]any{"client_id": "", "client_secret": ""})
	resp := e.mustDo(logical.ReadOperation, "roles/r", nil)
	if resp.Data["own_credentials"] != false {
		t.Errorf("role kept its credentials after clearing them")
	}
}
