package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
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
// mount, whether the role is leased or not. It also pins what an unleased
// read looks like to the CLI and the Go client: ttl, and no lease.
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

	// The same policy reads the role once it is unleased: the CLI (table
	// and JSON) and the Go client then show ttl and no lease.
	v.vault(t, "patch", "piwik/roles/reporting", "leased=false")
	t.Cleanup(func() { v.vault(t, "patch", "piwik/roles/reporting", "leased=true") })
	requireUnleased := func(how, leaseID string, leaseDuration int, data map[string]any) {
		t.Helper()
		access := stringField(data, "access_token")
		if access == "" {
			t.Fatalf("%s: no access_token (keys: %v)", how, keys(data))
		}
		rememberSecret(t, "unleased access token read by "+how, access)
		env.standin.requireTokenWorks(t, how, access)
		// The CLI's table shows a ttl as a duration (29m59s), JSON as seconds.
		ttl, err := strconv.Atoi(fmt.Sprint(data["ttl"]))
		if d, derr := time.ParseDuration(fmt.Sprint(data["ttl"])); err != nil && derr == nil {
			ttl, err = int(d.Seconds()), nil
		}
		if err != nil || ttl < 1700 || ttl > 1800 {
			t.Errorf("%s: ttl = %v, want the token's remaining 1700-1800 seconds", how, data["ttl"])
		}
		if leaseID != "" || leaseDuration != 0 {
			t.Errorf("%s: lease_id %q, lease_duration %d; want no lease", how, leaseID, leaseDuration)
		}
		for _, f := range []string{"token_type", "expires_at", "sub", "org", "aud"} {
			if stringField(data, f) == "" {
				t.Errorf("%s: %s is missing", how, f)
			}
		}
	}

	u := v.readCreds(t, reader, "piwik/creds/reporting")
	requireUnleased("vault read -format=json", u.leaseID, u.leaseDuration, u.data)

	table := v.vaultAs(t, reader, "", "read", "piwik/creds/reporting")
	rows := map[string]any{}
	for _, line := range strings.Split(table, "\n")[2:] { // after "Key Value" and "--- -----"
		if k, val, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			rows[k] = strings.TrimSpace(val)
		}
	}
	if _, ok := rows["lease_id"]; ok {
		t.Errorf("vault read shows a lease_id row for an unleased read:\n%s", redact(table))
	}
	requireUnleased("vault read (table)", "", 0, rows)

	s, err := v.client(t, reader).Logical().Read("piwik/creds/reporting")
	if err != nil {
		t.Fatalf("Go client read: %s", redact(err.Error()))
	}
	if _, ok := s.Data["ttl"].(json.Number); !ok {
		t.Errorf("Go client: Data[\"ttl\"] is a %T, want a json.Number", s.Data["ttl"])
	}
	requireUnleased("the Go client", s.LeaseID, s.LeaseDuration, s.Data)
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

// TestPiwikMonitoringPolicy pins examples/policies/piwik-monitoring.hcl:
// its holder reads check and metrics, in JSON and in the Prometheus
// format, and nothing else of the mount.
func TestPiwikMonitoringPolicy(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	monitor := v.tokenWithPolicy(t, "piwik-monitoring")

	var check checkReport
	decode(t, "vault read piwik/check", v.vaultAs(t, monitor, "", "read", "-format=json", "piwik/check"), &check)
	if !check.Data.OK {
		t.Errorf("piwik/check read with piwik-monitoring reports a failure: %+v", check.Data)
	}
	if out := v.vaultAs(t, monitor, "", "read", "piwik/metrics"); !strings.Contains(out, "tokens_minted") {
		t.Errorf("vault read piwik/metrics with piwik-monitoring shows no tokens_minted:\n%s", out)
	}
	parseProm(t, "vault read -format=raw piwik/metrics format=prometheus",
		v.vaultAs(t, monitor, "", "read", "-format=raw", "piwik/metrics", "format=prometheus"))
	// As the README's Prometheus scrape job does: the token as a bearer.
	req, err := http.NewRequest(http.MethodGet, v.addr+"/v1/piwik/metrics?format=prometheus", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+monitor)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("GET piwik/metrics?format=prometheus: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET piwik/metrics?format=prometheus with piwik-monitoring as a bearer token: HTTP %d: %s", resp.StatusCode, body)
	}
	parseProm(t, "GET piwik/metrics?format=prometheus", string(body))

	for _, args := range [][]string{
		{"read", "piwik/creds/reporting"},
		{"read", "piwik/config"},
		{"list", "piwik/roles"},
		{"read", "piwik/roles/reporting"},
		{"write", "piwik/roles/reporting", "ttl=60"},
	} {
		v.requireDenied(t, monitor, args...)
	}
}
