package e2e

import (
	"net/http"
	"testing"
)

// TestTwoMountsTwoAccounts mounts the plugin twice on the shared dev
// server, each mount against its own stand-in (two Piwik PRO accounts with
// their own credentials), and checks that each mount issues only its own
// account's tokens: a token from one mount works at its account and is
// refused by the other, its claims name its own credential and user, and
// reading from one mount sends no request to the other account.
func TestTwoMountsTwoAccounts(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	accounts := []struct {
		mount string
		st    *standin
	}{
		{mount: "piwik-account-a"},
		{mount: "piwik-account-b"},
	}
	for i := range accounts {
		accounts[i].st = env.privateMount(t, accounts[i].mount)
	}

	var read []creds
	for i, a := range accounts {
		other := accounts[1-i]
		before, otherBefore := a.st.stats(t), other.st.stats(t)
		c := v.readCreds(t, v.token, a.mount+"/creds/reporting")
		read = append(read, c)
		if got := a.st.stats(t).TokenRequests - before.TokenRequests; got != 1 {
			t.Errorf("reading %s/creds/reporting sent %d token requests to its account, want 1", a.mount, got)
		}
		if got := other.st.stats(t).TokenRequests - otherBefore.TokenRequests; got != 0 {
			t.Errorf("reading %s/creds/reporting sent %d token requests to the other account (%s)", a.mount, got, other.mount)
		}

		a.st.requireTokenWorks(t, "token from "+a.mount+" at its own account", c.accessToken)
		if code := other.st.me(t, c.accessToken); code != http.StatusUnauthorized {
			t.Errorf("token from %s at the other account (%s): /api/users/v2/me answered %d, want 401", a.mount, other.mount, code)
		}
		if got, want := c.data["aud"], "Client-Name-"+a.st.clientID; got != want {
			t.Errorf("token from %s: aud %v, want %s (its own account's credential)", a.mount, got, want)
		}
	}
	for _, claim := range []string{"sub", "aud"} {
		if a, b := read[0].data[claim], read[1].data[claim]; a == b {
			t.Errorf("both mounts' tokens have %s %v; want each account's own", claim, a)
		}
	}
}
