package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestReuseRoleKeepsItsMintWhenAnotherRoleIsRejected pins that the token
// cache keeps a generation per role: a role whose credential was deleted
// in Piwik PRO, read while another reuse role's token is being minted,
// does not void that mint, so the other role's next read costs no request.
func TestReuseRoleKeepsItsMintWhenAnotherRoleIsRejected(t *testing.T) {
	const mount = "piwik-generations"
	v, st := mountPrivately(t, mount)
	v.vault(t, "write", mount+"/roles/g", "token_reuse=true")
	broken := addStandinCredential(t, st, "generations-broken")
	writeRoleCredential(t, v, mount, "broken", broken, "token_reuse=true")
	// The credential is deleted in Piwik PRO (made again with another
	// secret); Vault still holds the old one.
	st.control(t, "credentials", map[string]string{"client_id": broken.clientID, "client_secret": randomString(t, 32)})

	// g's first token is slow to come (its client id only); broken is read
	// and rejected meanwhile.
	st.control(t, "fault", map[string]any{"kind": "slow", "delay_ms": 3000, "count": 1, "client_ids": []string{st.clientID}})
	before := st.stats(t).TokenRequests
	done := make(chan cliResult, 1)
	go func() { done <- v.run(t, v.token, "", "read", "-format=json", mount+"/creds/g") }()
	waitForStats(t, st, "g's token request reaches the stand-in", func(c standinCounters) bool { return c.TokenRequests > before })
	if r := v.run(t, v.token, "", "read", mount+"/creds/broken"); r.exitCode == 0 || !strings.Contains(r.stderr, "invalid_client") {
		t.Fatalf("read of the rejected role: exit %d, want Piwik PRO's invalid_client:\n%s", r.exitCode, redact(r.stderr))
	}
	select {
	case <-done:
		t.Fatal("g's slow mint ended before the rejected read: the test proves nothing")
	default:
	}
	if r := <-done; r.exitCode != 0 {
		t.Fatalf("read of g: exit %d:\n%s", r.exitCode, redact(r.stderr))
	} else {
		rememberCredsOutput(t, r.stdout)
	}

	before = st.stats(t).TokenRequests
	v.readCreds(t, v.token, mount+"/creds/g")
	if got := st.stats(t).TokenRequests - before; got != 0 {
		t.Errorf("the next read of g made %d token requests, want 0: the rejection of another role voided g's mint", got)
	}
}

// TestRejectedCredentialIsForgottenOnEveryRole pins that a 401 met on one
// role's read forgets the cached tokens of that credential on every role:
// during the next outage no role serves a token of it stale.
func TestRejectedCredentialIsForgottenOnEveryRole(t *testing.T) {
	const mount = "piwik-rejected"
	v, st := mountPrivately(t, mount)
	// Every read asks Piwik PRO (a 10-minute token never has 600s left)
	// and falls back on the cached token when it cannot have a new one.
	st.setLifetime(t, 600)
	v.vault(t, "write", mount+"/config", "max_retries=0")
	shared := addStandinCredential(t, st, "rejected-shared")
	for _, role := range []string{"a", "b"} {
		writeRoleCredential(t, v, mount, role, shared, "token_reuse=true", "reuse_min_remaining=600")
		v.readCreds(t, v.token, mount+"/creds/"+role)
	}
	st.control(t, "fault", map[string]any{"kind": "unavailable"})
	if r := v.run(t, v.token, "", "read", "-format=json", mount+"/creds/b"); r.exitCode != 0 || !strings.Contains(r.stdout, "serving the cached token") {
		t.Fatalf("no stale serve during an outage before the rejection (exit %d): the test proves nothing:\n%s", r.exitCode, redact(r.stderr))
	} else {
		rememberCredsOutput(t, r.stdout)
	}
	st.control(t, "fault", map[string]any{"kind": ""})

	st.control(t, "credentials", map[string]string{"client_id": shared.clientID, "client_secret": randomString(t, 32)})
	if r := v.run(t, v.token, "", "read", mount+"/creds/a"); r.exitCode == 0 || !strings.Contains(r.stderr, "invalid_client") {
		t.Fatalf("read of a after the deletion: exit %d, want invalid_client:\n%s", r.exitCode, redact(r.stderr))
	}
	st.control(t, "fault", map[string]any{"kind": "unavailable"})
	defer st.control(t, "fault", map[string]any{"kind": ""})
	if r := v.run(t, v.token, "", "read", "-format=json", mount+"/creds/b"); r.exitCode == 0 {
		rememberCredsOutput(t, r.stdout)
		t.Errorf("b was served a cached token of the rejected credential during an outage:\n%s", redact(r.stderr))
	}
}

// writeRoleCredential writes mount/roles/<role> with credential c (its
// secret on stdin) and the extra key=value fields.
func writeRoleCredential(t *testing.T, v *vaultServer, mount, role string, c *standin, extra ...string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"client_id": c.clientID, "client_secret": c.clientSecret})
	v.vaultAs(t, v.token, string(body), "write", mount+"/roles/"+role, "-")
	if len(extra) > 0 {
		v.vault(t, append([]string{"patch", mount + "/roles/" + role}, extra...)...)
	}
}

// rememberCredsOutput remembers the token in the JSON output of a creds
// read for the log scan.
func rememberCredsOutput(t *testing.T, out string) {
	t.Helper()
	var s struct {
		Data struct {
			AccessToken string `json:"access_token"`
		} `json:"data"`
	}
	if json.Unmarshal([]byte(out), &s) == nil && s.Data.AccessToken != "" {
		rememberSecret(t, "access token", s.Data.AccessToken)
	}
}

// waitForStats polls the stand-in's counters until cond holds.
func waitForStats(t *testing.T, st *standin, what string, cond func(standinCounters) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond(st.stats(t)) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
