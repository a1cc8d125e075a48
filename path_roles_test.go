package piwik

import (
	"encoding/json"
	"reflect"
	"strings"
	"sync"
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

func TestRoles_durationsAreStoredAsGiven(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	for _, tc := range []struct {
		given any
		want  int64
	}{
		{"90", 90}, {"90s", 90}, {90, 90}, {json.Number("90"), 90}, {90.0, 90},
		{"10m", 600}, {"1h30m", 5400}, {"2d", 172800}, {"0", 0}, {0, 0},
	} {
		e.mustDo(logical.UpdateOperation, "roles/r", map[string]any{"ttl": tc.given, "reuse_min_remaining": tc.given})
		data := e.mustDo(logical.ReadOperation, "roles/r", nil).Data
		if data["ttl"] != tc.want || data["reuse_min_remaining"] != tc.want {
			t.Errorf("ttl and reuse_min_remaining %#v stored as %v and %v, want %d", tc.given, data["ttl"], data["reuse_min_remaining"], tc.want)
		}
	}
}

func TestRoles_secretFromAFileWithATrailingNewline(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	for _, newline := range []string{"\n", "\r\n"} {
		e.mustDo(logical.UpdateOperation, "roles/own", map[string]any{"client_id": roleClientID + newline, "client_secret": roleClientSecret + newline})
		resp := e.mustDo(logical.ReadOperation, "creds/own", nil)
		if resp.Data["aud"] != "Client-Name-"+roleClientID {
			t.Errorf("%q: token for %v, want the role's credential", newline, resp.Data["aud"])
		}
		if got := e.mustDo(logical.ReadOperation, "roles/own", nil).Data["client_id"]; got != roleClientID {
			t.Errorf("%q: client_id stored as %q, want it without the newline", newline, got)
		}
		// client_id given again from the same file is no change.
		e.mustDo(logical.PatchOperation, "roles/own", map[string]any{"client_id": roleClientID + newline})
	}
}

func TestRoles_concurrentWritesLoseNothing(t *testing.T) {
	e := newEnvWithRole(t, "r", nil)
	var wg sync.WaitGroup
	for i, data := range []map[string]any{
		{"ttl": "5m"},
		{"client_id": roleClientID, "client_secret": roleClientSecret},
		{"token_reuse": true},
		{"leased": false},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := e.do(logical.PatchOperation, "roles/r", data); err != nil || resp.IsError() {
				t.Errorf("patch %d: %v %v", i, err, errorText(resp))
			}
		}()
	}
	wg.Wait()
	role := e.mustDo(logical.ReadOperation, "roles/r", nil).Data
	if role["ttl"] != int64(300) || role["client_id"] != roleClientID || role["token_reuse"] != true || role["leased"] != false {
		t.Errorf("role after four concurrent patches = %v; a change was lost", role)
	}
}
