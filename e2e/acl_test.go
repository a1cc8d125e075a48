package e2e

import (
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// examplesDir is the repo's examples/ folder.
func examplesDir(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the e2e sources")
	}
	return filepath.Join(filepath.Dir(file), "..", "examples")
}

// tokenWithPolicy writes the example policy file as policy name and returns
// a new token that carries it (and Vault's default policy).
func (v *vaultServer) tokenWithPolicy(t *testing.T, name string) string {
	t.Helper()
	v.vault(t, "policy", "write", name, filepath.Join(examplesDir(t), "policies", name+".hcl"))
	return v.newToken(t, name)
}

// newToken returns a new 15-minute token with policy (and Vault's default
// policy), remembered for the log scan.
func (v *vaultServer) newToken(t *testing.T, policy string) string {
	t.Helper()
	var s struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	decode(t, "vault token create", v.vault(t, "token", "create", "-format=json", "-ttl=15m", "-policy="+policy), &s)
	if s.Auth.ClientToken == "" {
		t.Fatal("vault token create returned no token")
	}
	rememberSecret(t, "Vault token with policy "+policy, s.Auth.ClientToken)
	return s.Auth.ClientToken
}

// TestReportingReaderPolicy pins examples/policies/reporting-reader.hcl:
// its holder gets tokens of the reporting role and nothing else of the
// mount.
func TestReportingReaderPolicy(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	v.vault(t, "write", "piwik/roles/admin-reports", "ttl=0")

	reader := v.tokenWithPolicy(t, "reporting-reader")
	c := v.readCreds(t, reader, "piwik/creds/reporting")
	env.standin.requireTokenWorks(t, "token read with reporting-reader", c.accessToken)

	for _, args := range [][]string{
		{"read", "piwik/config"},
		{"read", "piwik/roles/reporting"},
		{"list", "piwik/roles"},
		{"read", "piwik/creds/admin-reports"},
		{"write", "piwik/roles/reporting", "ttl=60"},
		{"delete", "piwik/config"},
	} {
		v.requireDenied(t, reader, args...)
	}
}

// TestPiwikAdminPolicy pins examples/policies/piwik-admin.hcl: its holder
// manages config and roles and reads creds, but cannot touch sys/.
func TestPiwikAdminPolicy(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	admin := v.tokenWithPolicy(t, "piwik-admin")

	v.vaultAs(t, admin, "", "read", "piwik/config")
	v.vaultAs(t, admin, "", "write", "piwik/roles/acl-check", "ttl=300")
	v.vaultAs(t, admin, "", "patch", "piwik/roles/acl-check", "ttl=600")
	var list struct {
		Keys []string `json:"keys"`
	}
	// `vault list -format=json` prints the keys as a bare JSON array.
	decode(t, "vault list piwik/roles", v.vaultAs(t, admin, "", "list", "-format=json", "piwik/roles"), &list.Keys)
	if !slices.Contains(list.Keys, "acl-check") || !slices.Contains(list.Keys, "reporting") {
		t.Errorf("vault list piwik/roles = %v, want acl-check and reporting in it", list.Keys)
	}
	c := v.readCreds(t, admin, "piwik/creds/acl-check")
	env.standin.requireTokenWorks(t, "token read with piwik-admin", c.accessToken)
	v.vaultAs(t, admin, "", "delete", "piwik/roles/acl-check")

	for _, args := range [][]string{
		{"secrets", "disable", "piwik"},
		{"secrets", "tune", "-default-lease-ttl=1h", "piwik"},
		{"policy", "write", "piwik-admin", filepath.Join(examplesDir(t), "policies", "piwik-admin.hcl")},
		{"plugin", "register", "-sha256=" + strings.Repeat("0", 64), "secret", "not-a-plugin"},
	} {
		v.requireDenied(t, admin, args...)
	}
}
