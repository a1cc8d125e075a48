package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestCredsLeaseMatchesTokenLifetime pins what a reader of
// piwik/creds/<role> gets: a working token whose lease lasts as long as
// Piwik PRO says the token does, truncated to the second and never past
// the JWT's exp, and cannot be renewed.
func TestCredsLeaseMatchesTokenLifetime(t *testing.T) {
	env := sharedDev(t)
	v, st := env.vault, env.standin

	direct := st.mintDirectly(t)
	if direct.ExpiresIn != 1800 {
		t.Fatalf("the stand-in issues tokens with expires_in %d, want its default 1800", direct.ExpiresIn)
	}

	before := time.Now()
	c := v.readCreds(t, v.token, "piwik/creds/reporting")
	if !fullLease(c.leaseDuration) {
		t.Errorf("lease_duration = %d, want the token's expires_in %d, truncated", c.leaseDuration, direct.ExpiresIn)
	}
	if c.renewable {
		t.Error("renewable = true, want false: Piwik PRO tokens cannot be renewed")
	}
	if !strings.HasPrefix(c.leaseID, "piwik/creds/reporting/") {
		t.Errorf("lease_id %q does not start with piwik/creds/reporting/", c.leaseID)
	}
	if got := c.data["token_type"]; got != "Bearer" {
		t.Errorf("token_type = %v, want Bearer", got)
	}
	for _, claim := range []string{"sub", "org", "aud"} {
		if s, _ := c.data[claim].(string); s == "" {
			t.Errorf("data.%s is missing or empty", claim)
		}
	}
	expiresAt, err := time.Parse(time.RFC3339, stringField(c.data, "expires_at"))
	if err != nil {
		t.Errorf("expires_at: %v", err)
	} else if exp := jwtExpiry(t, c.accessToken); expiresAt.After(exp) || exp.Sub(expiresAt) > 2*time.Second {
		t.Errorf("expires_at = %s, want the JWT's exp %s or just before it", expiresAt, exp)
	} else if leaseEnd := before.Add(time.Duration(c.leaseDuration) * time.Second); leaseEnd.After(exp.Add(time.Second)) {
		t.Errorf("the lease ends at %s, after the token's exp %s", leaseEnd, exp)
	} else if d := expiresAt.Sub(before); d < 1790*time.Second || d > 1810*time.Second {
		t.Errorf("expires_at is %s after the read, want about 30m", d)
	}

	st.requireTokenWorks(t, "token from piwik/creds/reporting", c.accessToken)
	if code := st.me(t, "not-a-token"); code != 401 {
		t.Fatalf("the stand-in answered %d for a made-up token, want 401: it cannot tell good tokens from bad", code)
	}
}

// TestConfigReadOmitsSecret pins that the client secret never comes back;
// the client id, an identifier, does.
func TestConfigReadOmitsSecret(t *testing.T) {
	env := sharedDev(t)
	v, st := env.vault, env.standin

	out := v.vault(t, "read", "-format=json", "piwik/config")
	if strings.Contains(out, st.clientSecret) {
		t.Fatal("vault read piwik/config printed the client secret")
	}
	var s struct {
		Data map[string]any `json:"data"`
	}
	decode(t, "vault read piwik/config", out, &s)
	if got := s.Data["url"]; got != st.url {
		t.Errorf("url = %v, want %s", got, st.url)
	}
	if got := s.Data["client_id"]; got != st.clientID {
		t.Errorf("client_id = %v, want %s", got, st.clientID)
	}
	if _, ok := s.Data["client_secret"]; ok {
		t.Error("piwik/config read has a client_secret field")
	}
}

// TestLeaseLookupRevokeAndDisable pins the lease lifecycle: the TTL shows
// in a lookup, renewing is refused, revoking works, and disabling a mount
// with leases outstanding succeeds (revoking never needs Piwik PRO).
func TestLeaseLookupRevokeAndDisable(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	const mount = "piwik-disable"
	v.mountPiwik(t, mount, env.version, env.standin)

	c := v.readCreds(t, v.token, mount+"/creds/reporting")
	var lookup struct {
		Data struct {
			ID        string `json:"id"`
			TTL       int    `json:"ttl"`
			Renewable bool   `json:"renewable"`
		} `json:"data"`
	}
	decode(t, "vault lease lookup", v.vault(t, "lease", "lookup", "-format=json", c.leaseID), &lookup)
	if lookup.Data.ID != c.leaseID {
		t.Errorf("lease lookup id = %q, want %q", lookup.Data.ID, c.leaseID)
	}
	if lookup.Data.TTL <= 1700 || lookup.Data.TTL > 1800 {
		t.Errorf("lease lookup ttl = %d, want just under 1800", lookup.Data.TTL)
	}
	if lookup.Data.Renewable {
		t.Error("lease lookup says renewable")
	}
	if r := v.run(t, v.token, "", "lease", "renew", c.leaseID); r.exitCode == 0 {
		t.Error("vault lease renew succeeded on a lease that must not be renewable")
	}

	v.vault(t, "lease", "revoke", c.leaseID)
	if r := v.run(t, v.token, "", "lease", "lookup", c.leaseID); r.exitCode == 0 {
		t.Error("the lease can still be looked up after vault lease revoke")
	}

	var outstanding []string
	for range 3 {
		outstanding = append(outstanding, v.readCreds(t, v.token, mount+"/creds/reporting").leaseID)
	}
	v.vault(t, "secrets", "disable", mount)
	if _, ok := v.mounts(t)[mount+"/"]; ok {
		t.Errorf("%s/ is still mounted after vault secrets disable", mount)
	}
	for _, id := range outstanding {
		if r := v.run(t, v.token, "", "lease", "lookup", id); r.exitCode == 0 {
			t.Errorf("lease %s survived disabling its mount", id)
		}
	}
}

// stringField returns m[key] as a string ("" when absent).
func stringField(m map[string]any, key string) string {
	switch v := m[key].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

// TestWrongSecretFailsWithoutEcho pins the failure paths where a secret
// would most likely leak: a config write whose credentials Piwik PRO
// refuses, and a creds read with such credentials stored unverified. Both
// must fail, and neither the answer nor (through the log scan) any log may
// contain the secret.
func TestWrongSecretFailsWithoutEcho(t *testing.T) {
	env := sharedDev(t)
	v, st := env.vault, env.standin
	const mount = "piwik-wrong"
	v.vault(t, "secrets", "enable", "-path="+mount, "-plugin-version="+env.version, pluginName)
	t.Cleanup(func() { v.run(t, v.token, "", "secrets", "disable", mount) })

	wrong := randomString(t, 32)
	rememberSecret(t, "wrong client secret", wrong)
	body := func(verify bool) string {
		data, _ := json.Marshal(map[string]any{
			"url": st.url, "client_id": st.clientID, "client_secret": wrong, "verify_credentials": verify,
		})
		return string(data)
	}

	r := v.run(t, v.token, body(true), "write", mount+"/config", "-")
	if r.exitCode == 0 {
		t.Fatal("config write with a wrong client secret succeeded despite verify_credentials")
	}
	if strings.Contains(r.stdout+r.stderr, wrong) {
		t.Error("the refused config write echoes the client secret")
	}

	v.vaultAs(t, v.token, body(false), "write", mount+"/config", "-")
	v.vault(t, "write", mount+"/roles/reporting", "ttl=0")
	r = v.run(t, v.token, "", "read", mount+"/creds/reporting")
	if r.exitCode == 0 {
		t.Fatal("creds read with a wrong client secret succeeded")
	}
	if strings.Contains(r.stdout+r.stderr, wrong) {
		t.Error("the failed creds read echoes the client secret")
	}
}
