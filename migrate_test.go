package piwik

import (
	"context"
	"net/http"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestMigrate_legacyRolesAreBoundAtInitialize(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	legacy := `{"ttl":0,"client_id":"` + roleClientID + `","client_secret":"` + roleClientSecret + `","token_reuse":false}`
	if err := e.storage.Put(context.Background(), &logical.StorageEntry{Key: "roles/legacy", Value: []byte(legacy)}); err != nil {
		t.Fatal(err)
	}
	status, _ := statusOf(e.do(logical.ReadOperation, "creds/legacy", nil))
	if status != http.StatusConflict {
		t.Errorf("an unbound legacy role minted (status %d) before Initialize bound it", status)
	}
	if err := e.b.Initialize(context.Background(), &logical.InitializationRequest{Storage: e.storage}); err != nil {
		t.Fatal(err)
	}
	if resp := e.mustDo(logical.ReadOperation, "creds/legacy", nil); resp.Data["sub"] != "7d3a2b10-reporting" {
		t.Errorf("legacy role after Initialize acts for %v", resp.Data["sub"])
	}
}
