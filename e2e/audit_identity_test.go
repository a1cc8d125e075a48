package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// auditClearKeys are the response keys that README.md and SECURITY.md tell
// operators to write to the audit log in the clear: together they say which
// Piwik PRO user and API credential a read's token acts for, and until
// when. access_token is never among them.
var auditClearKeys = []string{"sub", "org", "aud", "expires_at"}

// auditTuneCommand is the documented command that leaves auditClearKeys
// un-HMAC'd on mount (with its trailing slash).
func auditTuneCommand(mount string) string {
	var b strings.Builder
	b.WriteString("vault secrets tune")
	for _, k := range auditClearKeys {
		b.WriteString(" -audit-non-hmac-response-keys=" + k)
	}
	return b.String() + " " + mount
}

// TestAuditShowsTokenIdentityInClear tunes a mount with the command
// README.md and SECURITY.md show, on a file audit device of its own, and
// checks that a creds read's sub, org, aud and expires_at are then in the
// audit log in the clear, while its access_token stays an HMAC (the one
// sys/audit-hash gives for the token) and is nowhere in the log. A read
// before the tune, on the same mount, must have them HMAC'd: the tune is
// what changes it.
func TestAuditShowsTokenIdentityInClear(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	documented := auditTuneCommand("piwik/")
	for _, doc := range []string{"README.md", "SECURITY.md"} {
		data, err := os.ReadFile(repoFile(t, doc))
		if err != nil {
			t.Fatal(err)
		}
		// Shell line continuations and indentation do not matter.
		text := strings.Join(strings.Fields(strings.ReplaceAll(string(data), "\\\n", " ")), " ")
		if !strings.Contains(text, documented) {
			t.Errorf("%s does not show %q", doc, documented)
		}
	}

	const mount, device = "piwik-audit", "file-identity"
	env.privateMount(t, mount)
	logPath := filepath.Join(testDir(t), "audit-identity.log")
	v.vault(t, "audit", "enable", "-path="+device, "file", "file_path="+logPath)
	rememberLog(logPath)
	t.Cleanup(func() { v.vault(t, "audit", "disable", device) })

	before := v.readCreds(t, v.token, mount+"/creds/reporting")
	hmacd := auditResponseData(t, logPath, before.requestID)
	for _, k := range auditClearKeys {
		if got, _ := hmacd[k].(string); !strings.HasPrefix(got, "hmac-sha256:") {
			t.Errorf("before the tune, %s is %q in the audit log, want an HMAC", k, got)
		}
	}

	args := strings.Fields(auditTuneCommand(mount + "/"))
	v.vault(t, args[1:]...)
	var tune struct {
		Data struct {
			Keys []string `json:"audit_non_hmac_response_keys"`
		} `json:"data"`
	}
	decode(t, "mount tune", v.vault(t, "read", "-format=json", "sys/mounts/"+mount+"/tune"), &tune)
	if strings.Join(tune.Data.Keys, ",") != strings.Join(auditClearKeys, ",") {
		t.Fatalf("after the tune, audit_non_hmac_response_keys is %v, want %v", tune.Data.Keys, auditClearKeys)
	}

	after := v.readCreds(t, v.token, mount+"/creds/reporting")
	clear := auditResponseData(t, logPath, after.requestID)
	for _, k := range auditClearKeys {
		want, _ := after.data[k].(string)
		if want == "" {
			t.Fatalf("the read returned no %s", k)
		}
		if got := clear[k]; got != want {
			t.Errorf("after the tune, %s is %q in the audit log, want %q as the read returned it", k, got, want)
		}
	}
	logged, _ := clear["access_token"].(string)
	if !strings.HasPrefix(logged, "hmac-sha256:") {
		t.Fatalf("after the tune, access_token in the audit log is not an HMAC (%d characters)", len(logged))
	}
	hash := strings.TrimSpace(v.vaultAs(t, v.token, after.accessToken, "write", "-field=hash", "sys/audit-hash/"+device, "input=-"))
	if logged != hash {
		t.Errorf("access_token in the audit log is %s, but the device's HMAC of the token is %s", logged, hash)
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), after.accessToken) || strings.Contains(string(data), before.accessToken) {
		t.Error("an access token is in the audit log in the clear")
	}
}

// auditResponseData returns response.data of the audit log's response
// entry for the request requestID; it fails t when there is not exactly one.
func auditResponseData(t *testing.T, logPath, requestID string) map[string]any {
	t.Helper()
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var found []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var e struct {
			Type    string `json:"type"`
			Request struct {
				ID string `json:"id"`
			} `json:"request"`
			Response struct {
				Data map[string]any `json:"data"`
			} `json:"response"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s: a line is not JSON: %v", logPath, err)
		}
		if e.Type == "response" && e.Request.ID == requestID {
			found = append(found, e.Response.Data)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 {
		t.Fatalf("%s has %d response entries for request %s, want 1", logPath, len(found), requestID)
	}
	return found[0]
}
