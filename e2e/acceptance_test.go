package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// piwikAccount is a Piwik PRO account URL and one of its API credentials.
type piwikAccount struct {
	url          string // base URL, without trailing slashes
	clientID     string
	clientSecret string
}

// accountFromEnv returns the account in PIWIK_URL, PIWIK_CLIENT_ID and
// PIWIK_CLIENT_SECRET. Like the acceptance tests of HashiCorp's engines,
// which run only when TF_ACC (or VAULT_ACC) is set, the test is skipped
// when none of them is set, CI or not; setting only some is a mistake.
func accountFromEnv(t *testing.T) piwikAccount {
	t.Helper()
	acct := piwikAccount{
		url:          strings.TrimRight(os.Getenv("PIWIK_URL"), "/"),
		clientID:     os.Getenv("PIWIK_CLIENT_ID"),
		clientSecret: os.Getenv("PIWIK_CLIENT_SECRET"),
	}
	set := 0
	for _, v := range []string{acct.url, acct.clientID, acct.clientSecret} {
		if v != "" {
			set++
		}
	}
	switch set {
	case 0:
		t.Skip("acceptance test against a real Piwik PRO account: set PIWIK_URL, PIWIK_CLIENT_ID and PIWIK_CLIENT_SECRET to run it (make acc)")
	case 1, 2:
		t.Fatal("set all of PIWIK_URL, PIWIK_CLIENT_ID and PIWIK_CLIENT_SECRET, or none")
	}
	return acct
}

// TestAcceptance runs the plugin in the real Vault against the Piwik PRO
// account given in the environment (see accountFromEnv); `make acc` runs
// it alone. It makes four token requests to Piwik PRO (one with a wrong
// secret) and two calls of GET /api/users/v2/me.
func TestAcceptance(t *testing.T) {
	acct := accountFromEnv(t)
	runAcceptance(t, sharedDev(t), acct)
}

// TestAcceptanceOnStandin runs the acceptance checks against the stand-in,
// in every e2e run: they hold for what the stand-in assumes of Piwik PRO,
// and they keep compiling and working between runs against a real account.
func TestAcceptanceOnStandin(t *testing.T) {
	env := sharedDev(t)
	st := startStandin(t, testDir(t), "acc-standin", t.Cleanup)
	runAcceptance(t, env, piwikAccount{url: st.url, clientID: st.clientID, clientSecret: st.clientSecret})
}

// runAcceptance checks, on mounts of its own on env's Vault, what the
// plugin promises against acct: a config write verified by a token
// request; a creds read whose token works on a read-only API call and whose
// lease matches the token's expires_in and JWT exp; and a config write with
// a wrong secret refused with invalid_client, without echoing the secret.
func runAcceptance(t *testing.T, env *devEnv, acct piwikAccount) {
	t.Helper()
	v := env.vault
	rememberSecret(t, "client secret of the acceptance account", acct.clientSecret)
	const mount = "piwik-acc"
	v.vault(t, "secrets", "enable", "-path="+mount, "-plugin-version="+env.version, pluginName)
	t.Cleanup(func() { v.run(t, v.token, "", "secrets", "disable", mount) })

	// Config: verify_credentials (the default) mints a token before storing.
	body, err := json.Marshal(map[string]string{
		"url": acct.url, "client_id": acct.clientID, "client_secret": acct.clientSecret,
	})
	if err != nil {
		t.Fatal(err)
	}
	v.vaultAs(t, v.token, string(body), "write", mount+"/config", "-")
	cfg := v.readSecret(t, v.token, mount+"/config")
	if got := strings.TrimRight(stringField(cfg.Data, "url"), "/"); got != acct.url {
		t.Errorf("%s/config url = %q, want %q", mount, got, acct.url)
	}
	v.vault(t, "write", mount+"/roles/acc", "ttl=0")

	// What Piwik PRO says a token lives, asked without Vault.
	direct := acct.mint(t)
	if direct.TokenType != "Bearer" || direct.ExpiresIn <= 0 {
		t.Fatalf("POST /auth/token: token_type %q, expires_in %d; want Bearer and a positive lifetime", direct.TokenType, direct.ExpiresIn)
	}

	// Creds: the lease lasts what the token does, and no longer.
	before := time.Now()
	c := v.readCreds(t, v.token, mount+"/creds/acc")
	exp := jwtExpiry(t, c.accessToken)
	if c.renewable {
		t.Error("the lease is renewable; Piwik PRO tokens cannot be renewed")
	}
	if got := c.data["token_type"]; got != "Bearer" {
		t.Errorf("token_type = %v, want Bearer", got)
	}
	// The lease never outlives the token: it is the earlier of exp and
	// send time + expires_in, less the time since, truncated; the read
	// began before any of that.
	if end := before.Add(time.Duration(c.leaseDuration) * time.Second); end.After(exp) {
		t.Errorf("lease_duration %ds outlives the token: the lease ends at %s, its JWT exp is %s", c.leaseDuration, end, exp)
	}
	if d := c.leaseDuration - direct.ExpiresIn; d < -5 || d > 5 {
		t.Errorf("lease_duration %ds, want within 5s of expires_in %ds", c.leaseDuration, direct.ExpiresIn)
	}
	if at, err := time.Parse(time.RFC3339, stringField(c.data, "expires_at")); err != nil {
		t.Errorf("expires_at: %v", err)
	} else if at.After(exp) || exp.Sub(at) > 2*time.Second {
		t.Errorf("expires_at = %s, want the JWT's exp %s or just before it", at, exp)
	}

	// The token works on a read-only call, for the user its sub claim
	// names, and a made-up token does not.
	sub := jwtClaim(t, c.accessToken, "sub")
	if sub == "" {
		t.Error("the token has no sub claim (its user)")
	} else if got := stringField(c.data, "sub"); got != sub {
		t.Errorf("creds sub = %q, want the token's sub claim %q", got, sub)
	}
	status, id := acct.me(t, c.accessToken)
	if status != http.StatusOK {
		t.Errorf("GET /api/users/v2/me with the token from Vault: HTTP %d, want 200", status)
	} else if id != sub {
		t.Errorf("GET /api/users/v2/me: user %q, want the token's sub %q", id, sub)
	}
	if status, _ := acct.me(t, "not-a-token"); status != http.StatusUnauthorized {
		t.Errorf("GET /api/users/v2/me with a made-up token: HTTP %d, want 401", status)
	}
	v.vault(t, "lease", "revoke", c.leaseID)

	acceptanceWrongSecret(t, env, acct)
}

// acceptanceWrongSecret writes a config with acct's client id and a wrong
// secret: Vault must answer 400 with Piwik PRO's invalid_client in the
// plugin's words, never echo a secret, and store nothing.
func acceptanceWrongSecret(t *testing.T, env *devEnv, acct piwikAccount) {
	t.Helper()
	v := env.vault
	const mount = "piwik-acc-wrong"
	v.vault(t, "secrets", "enable", "-path="+mount, "-plugin-version="+env.version, pluginName)
	t.Cleanup(func() { v.run(t, v.token, "", "secrets", "disable", mount) })

	wrong := randomString(t, 32)
	rememberSecret(t, "wrong client secret", wrong)
	_, err := v.client(t, v.token).Logical().Write(mount+"/config", map[string]any{
		"url": acct.url, "client_id": acct.clientID, "client_secret": wrong,
	})
	var resp *api.ResponseError
	if !errors.As(err, &resp) {
		t.Fatalf("config write with a wrong secret: want a 400 from Vault, got %v", redactErr(err))
	}
	msg := strings.Join(resp.Errors, "\n")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("config write with a wrong secret: HTTP %d, want 400: %s", resp.StatusCode, redact(msg))
	}
	for _, want := range []string{msgCredentialsRejected, "invalid_client"} {
		if !strings.Contains(msg, want) {
			t.Errorf("config write with a wrong secret: error %q does not say %q", redact(msg), want)
		}
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), acct.clientSecret) {
		t.Error("the refused config write echoes a client secret")
	}
	if s, err := v.client(t, v.token).Logical().Read(mount + "/config"); err != nil || s != nil {
		t.Errorf("after the refused write, %s/config reads as %v (err %v), want nothing stored", mount, s, redactErr(err))
	}
}

// redactErr is err's text with remembered secrets replaced.
func redactErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return redact(err.Error())
}

// mint asks Piwik PRO for a token with acct's credential, as the plugin
// does, and remembers the token for the log scan.
func (acct piwikAccount) mint(t *testing.T) tokenResponse {
	t.Helper()
	body, err := json.Marshal(map[string]string{
		"grant_type": "client_credentials", "client_id": acct.clientID, "client_secret": acct.clientSecret,
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Post(acct.url+"/auth/token", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /auth/token: %s", redactErr(err))
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var tr tokenResponse
	if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &tr) != nil {
		t.Fatalf("POST /auth/token: %s, want 200 with a token reply", resp.Status)
	}
	rememberSecret(t, "access token minted directly by "+t.Name(), tr.AccessToken)
	return tr
}

// me calls GET /api/users/v2/me with token and returns the status and, on
// success, the user id of the JSON:API document it answers with.
func (acct piwikAccount) me(t *testing.T, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, acct.url+"/api/users/v2/me", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("GET /api/users/v2/me: %s", redactErr(err))
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, ""
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/vnd.api+json" {
		t.Errorf("GET /api/users/v2/me: Content-Type %q, want application/vnd.api+json", resp.Header.Get("Content-Type"))
	}
	var doc struct {
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Errorf("GET /api/users/v2/me: not a JSON document: %v", err)
	}
	return resp.StatusCode, doc.Data.ID
}

// jwtClaim returns a string claim of a JWT, read without verifying it.
func jwtClaim(t *testing.T, token, claim string) string {
	t.Helper()
	s, _ := jwtClaims(t, token)[claim].(string)
	return s
}
