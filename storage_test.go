package piwik

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestStorage_corruptedRoleIsReportedAndReplaceable(t *testing.T) {
	e := newEnvWithRole(t, "good", nil)
	if err := e.storage.Put(context.Background(), &logical.StorageEntry{Key: "roles/bad", Value: []byte(`{"ttl":"` + testClientSecret)}); err != nil {
		t.Fatal(err)
	}
	status, report := e.check()
	roles := report["roles"].(map[string]any)
	bad, good := roles["bad"].(map[string]any), roles["good"].(map[string]any)
	if status != http.StatusInternalServerError || bad["ok"] != false || !strings.Contains(bad["error"].(string), "does not decode") || good["ok"] != true {
		t.Errorf("check = %d %v, want the corrupted role reported and the others checked", status, report)
	}
	if status, msg := statusOf(e.do(logical.ReadOperation, "creds/bad", nil)); status != http.StatusInternalServerError || !strings.Contains(msg, "write it again") {
		t.Errorf("creds of a corrupted role: %d %q", status, msg)
	}
	if status, _ := statusOf(e.do(logical.PatchOperation, "roles/bad", map[string]any{"ttl": "1m"})); status != http.StatusConflict {
		t.Errorf("patch of a corrupted role: %d, want 409 (a patch cannot apply to what does not decode)", status)
	}
	e.mustDo(logical.UpdateOperation, "roles/bad", map[string]any{"ttl": "1m"})
	if role := e.mustDo(logical.ReadOperation, "roles/bad", nil).Data; role["ttl"] != int64(60) {
		t.Errorf("full write did not replace the corrupted role: %v", role)
	}
}
