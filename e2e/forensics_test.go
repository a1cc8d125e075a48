package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// runbookSection is the SECURITY.md section whose shell blocks the
// forensics test runs, and runbookSteps how many blocks it has.
const (
	runbookSection = "Tracing a leaked access token to its reader"
	runbookSteps   = 7
)

// TestAuditForensicsRunbook follows SECURITY.md's runbook for a leaked
// access token, block by block as written there, on the shared dev server
// and its file audit device. A reader with an entity of its own (a
// userpass login) reads a leased and an unleased token; starting from
// nothing but each token, and with only the audit-forensics example
// policy, the runbook must arrive at that read (its request id), the
// reader's entity, display name, policies and token accessor, and, for
// the leased read, the lease that `vault lease lookup` confirms. Its last
// step revokes the lease and the reader's token.
func TestAuditForensicsRunbook(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	dir := testDir(t)
	requireTools(t, "bash", "jq")
	if v.auditLog == "" {
		t.Fatal("the shared dev server has no file audit device")
	}

	const unleasedRole = "forensics-unleased"
	v.vault(t, "write", "piwik/roles/"+unleasedRole, "leased=false")
	t.Cleanup(func() { v.vault(t, "delete", "piwik/roles/"+unleasedRole) })
	policyFile := filepath.Join(dir, "forensics-reader.hcl")
	writeFile(t, policyFile, fmt.Sprintf("path %q {\n  capabilities = [\"read\"]\n}\n\npath %q {\n  capabilities = [\"read\"]\n}\n",
		"piwik/creds/reporting", "piwik/creds/"+unleasedRole))
	v.vault(t, "policy", "write", "forensics-reader", policyFile)
	const authPath = "userpass-forensics"
	reader := v.userpassLogin(t, authPath, "alice", "forensics-reader")
	t.Cleanup(func() { v.vault(t, "auth", "disable", authPath) })

	start := time.Now().Add(-time.Second)
	unleased := v.readCreds(t, reader.token, "piwik/creds/"+unleasedRole)
	leased := v.readCreds(t, reader.token, "piwik/creds/reporting")
	if leased.leaseID == "" || unleased.leaseID != "" {
		t.Fatalf("want a lease for the reporting role and none for %s, got %q and %q", unleasedRole, leased.leaseID, unleased.leaseID)
	}
	if leased.requestID == "" || unleased.requestID == "" || reader.displayName == "" {
		t.Fatal("the reads or the reader's token lookup came back without a request id or display name")
	}

	v.vault(t, "policy", "write", "audit-forensics", filepath.Join(examplesDir(t), "policies", "audit-forensics.hcl"))
	operator := v.newToken(t, "audit-forensics")
	steps := readRunbook(t, v.auditLog)

	// The unleased read first, and without the last step, which revokes
	// the reader's token: the leased read's trace needs it alive.
	check := func(name string, out map[int]string, c creds, path string) {
		t.Helper()
		if hash := strings.TrimSpace(out[2]); !strings.HasPrefix(hash, "hmac-sha256:") {
			t.Errorf("%s, step 2: %q is not an HMAC", name, hash)
		}

		var found []runbookRead
		dec := json.NewDecoder(strings.NewReader(out[3]))
		for {
			var r runbookRead
			if err := dec.Decode(&r); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s, step 3: output is not JSON lines: %v\n%s", name, err, redact(out[3]))
			}
			found = append(found, r)
		}
		if len(found) != 1 {
			t.Fatalf("%s, step 3: %d audit entries match the token's HMAC, want 1:\n%s", name, len(found), redact(out[3]))
		}
		r := found[0]
		for _, d := range []struct {
			what      string
			got, want any
		}{
			{"request_id", r.RequestID, c.requestID},
			{"path", r.Path, path},
			{"lease_id", r.LeaseID, c.leaseID},
			{"display_name", r.DisplayName, reader.displayName},
			{"entity_id", r.EntityID, reader.entityID},
		} {
			if d.got != d.want {
				t.Errorf("%s, step 3: %s = %v, want %v", name, d.what, d.got, d.want)
			}
		}
		if !slices.Contains(r.Policies, "forensics-reader") {
			t.Errorf("%s, step 3: policies %v, want forensics-reader among them", name, r.Policies)
		}
		if r.Time.Before(start) || r.Time.After(time.Now()) {
			t.Errorf("%s, step 3: time %s is not the time of the test's read (after %s)", name, r.Time, start)
		}
		if !strings.HasPrefix(r.AccessorHMAC, "hmac-sha256:") {
			t.Errorf("%s, step 3: the accessor is %q, want its HMAC", name, r.AccessorHMAC)
		}

		if c.leaseID != "" {
			if got := tableValue(out[4], "id"); got != c.leaseID {
				t.Errorf("%s, step 4: vault lease lookup shows id %q, want %q:\n%s", name, got, c.leaseID, out[4])
			}
		} else if !strings.Contains(out[4], "no lease: the role has leased=false") {
			t.Errorf("%s, step 4: want the no-lease message, got:\n%s", name, out[4])
		}

		var entity struct {
			Aliases []struct {
				MountPath string `json:"mount_path"`
				Name      string `json:"name"`
			} `json:"aliases"`
		}
		decode(t, name+", step 5", out[5], &entity)
		if len(entity.Aliases) != 1 || entity.Aliases[0].MountPath != "auth/"+authPath+"/" || entity.Aliases[0].Name != "alice" {
			t.Errorf("%s, step 5: entity aliases %+v, want the userpass login alice at auth/%s/", name, entity.Aliases, authPath)
		}

		if got := tableValue(out[6], "accessor"); got != reader.accessor {
			t.Errorf("%s, step 6: found accessor %q, want the reader's %q:\n%s", name, got, reader.accessor, out[6])
		}
		if got := tableValue(out[6], "entity_id"); got != reader.entityID {
			t.Errorf("%s, step 6: the token found has entity_id %q, want %q", name, got, reader.entityID)
		}
	}
	began := time.Now()
	out := runRunbook(t, filepath.Join(dir, "unleased"), steps[:runbookSteps-1], unleased.accessToken, v.addr, operator)
	check("unleased read", out, unleased, "piwik/creds/"+unleasedRole)
	t.Logf("runbook steps 1-%d for the unleased read took %s", runbookSteps-1, time.Since(began).Round(time.Millisecond))
	began = time.Now()
	out = runRunbook(t, filepath.Join(dir, "leased"), steps, leased.accessToken, v.addr, operator)
	check("leased read", out, leased, "piwik/creds/reporting")
	t.Logf("runbook steps 1-%d for the leased read took %s", runbookSteps, time.Since(began).Round(time.Millisecond))

	if r := v.run(t, v.token, "", "lease", "lookup", leased.leaseID); r.exitCode == 0 {
		t.Errorf("step 7 did not revoke lease %s", leased.leaseID)
	}
	if r := v.run(t, reader.token, "", "token", "lookup"); r.exitCode == 0 {
		t.Error("step 7 did not revoke the reader's token")
	}
}

// runbookRead is one line of step 3's summary.
type runbookRead struct {
	Time          time.Time `json:"time"`
	RequestID     string    `json:"request_id"`
	Path          string    `json:"path"`
	RemoteAddress string    `json:"remote_address"`
	LeaseID       string    `json:"lease_id"`
	DisplayName   string    `json:"display_name"`
	EntityID      string    `json:"entity_id"`
	Policies      []string  `json:"policies"`
	AccessorHMAC  string    `json:"accessor_hmac"`
}

// readRunbook returns the shell blocks of SECURITY.md's runbook, with its
// example audit log path replaced by auditLog.
func readRunbook(t *testing.T, auditLog string) []string {
	t.Helper()
	lines := readMarkdown(t, repoFile(t, "SECURITY.md"))
	steps := codeBlocks(lines, "sh", func(l markdownLine) bool { return l.h2 == runbookSection })
	if len(steps) != runbookSteps {
		t.Fatalf("SECURITY.md: %q has %d sh blocks, want %d; update this test", runbookSection, len(steps), runbookSteps)
	}
	const example = "AUDIT_LOG=/var/log/vault/audit.log\n"
	if !strings.Contains(steps[0], example) {
		t.Fatalf("SECURITY.md: the runbook's first block no longer sets %s; update this test", strings.TrimSpace(example))
	}
	steps[0] = strings.Replace(steps[0], example, "AUDIT_LOG="+auditLog+"\n", 1)
	return steps
}

// runRunbook runs the runbook steps in dir for a leaked token, as the
// operator token, and returns each step's output by its number (1, 2, …).
func runRunbook(t *testing.T, dir string, steps []string, leaked, addr, operator string) map[int]string {
	t.Helper()
	mkdir(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "leaked-token"), []byte(leaked+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	for i, s := range steps {
		fmt.Fprintf(&script, "echo '=== step %d'\n%s", i+1, s)
	}
	out := runScript(t, dir, script.String(), "VAULT_ADDR="+addr, "VAULT_TOKEN="+operator)
	byStep := map[int]string{}
	step := 0
	for _, line := range strings.SplitAfter(out, "\n") {
		if _, err := fmt.Sscanf(line, "=== step %d\n", &step); err == nil {
			continue
		}
		byStep[step] += line
	}
	return byStep
}

// tableValue returns the value of key in the table output of a vault CLI
// command ("key    value" lines), or "".
func tableValue(out, key string) string {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `\s+(\S+)\s*$`).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return m[1]
}

// vaultLogin is what a login returned, and the token's display name.
type vaultLogin struct {
	token, accessor, entityID, displayName string
}

// userpassLogin enables userpass at auth/<path>, adds user with a random
// password and policy, logs in as that user and returns the login. The
// password goes in on stdin, never on a command line.
func (v *vaultServer) userpassLogin(t *testing.T, path, user, policy string) vaultLogin {
	t.Helper()
	v.vault(t, "auth", "enable", "-path="+path, "userpass")
	password := randomString(t, 24)
	rememberSecret(t, "userpass password of "+user, password)
	body, _ := json.Marshal(map[string]string{"password": password, "token_policies": policy})
	v.vaultAs(t, v.token, string(body), "write", "auth/"+path+"/users/"+user, "-")
	body, _ = json.Marshal(map[string]string{"password": password})
	var login struct {
		Auth struct {
			ClientToken string `json:"client_token"`
			Accessor    string `json:"accessor"`
			EntityID    string `json:"entity_id"`
		} `json:"auth"`
	}
	decode(t, "userpass login", v.vaultAs(t, "", string(body), "write", "-format=json", "auth/"+path+"/login/"+user, "-"), &login)
	if login.Auth.ClientToken == "" || login.Auth.Accessor == "" || login.Auth.EntityID == "" {
		t.Fatal("the userpass login returned no token, accessor or entity")
	}
	rememberSecret(t, "Vault token of userpass user "+user, login.Auth.ClientToken)
	var self struct {
		Data struct {
			DisplayName string `json:"display_name"`
		} `json:"data"`
	}
	decode(t, "vault token lookup", v.vaultAs(t, login.Auth.ClientToken, "", "token", "lookup", "-format=json"), &self)
	return vaultLogin{
		token:       login.Auth.ClientToken,
		accessor:    login.Auth.Accessor,
		entityID:    login.Auth.EntityID,
		displayName: self.Data.DisplayName,
	}
}
