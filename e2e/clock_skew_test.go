package e2e

import (
	"testing"
	"time"
)

// TestRemoteClockAheadOnlyShortensTheLease pins that a Piwik PRO whose
// clock runs two minutes ahead of Vault's cannot stretch a lease: a token
// whose exp - iat is 300 s (while expires_in says 1800) gets a lease of at
// most 300 s, not the 420 s that exp read on Vault's clock would give.
func TestRemoteClockAheadOnlyShortensTheLease(t *testing.T) {
	const mount = "piwik-skew"
	v, st := mountPrivately(t, mount)
	st.control(t, "clock", map[string]int{"skew_seconds": 120})
	st.control(t, "fault", map[string]any{"kind": "short_jwt"}) // exp = iat + 300
	defer st.control(t, "fault", map[string]any{"kind": ""})

	before := time.Now()
	c := v.readCreds(t, v.token, mount+"/creds/reporting")
	if c.leaseDuration > 300 || c.leaseDuration < 290 {
		t.Errorf("lease_duration %d s, want at most the token's own 300 s (exp - iat)", c.leaseDuration)
	}
	expiresAt, err := time.Parse(time.RFC3339, stringField(c.data, "expires_at"))
	if err != nil {
		t.Fatal(err)
	}
	if d := expiresAt.Sub(before); d > 301*time.Second {
		t.Errorf("expires_at is %s after the read, want at most 300 s", d)
	}
	st.requireTokenWorks(t, "token read with a skewed Piwik PRO clock", c.accessToken)

	v.vault(t, "write", mount+"/roles/unleased", "leased=false")
	var out struct {
		Data struct {
			TTL int `json:"ttl"`
		} `json:"data"`
	}
	raw := v.vault(t, "read", "-format=json", mount+"/creds/unleased")
	rememberCredsOutput(t, raw)
	decode(t, "vault read "+mount+"/creds/unleased", raw, &out)
	if out.Data.TTL > 300 || out.Data.TTL < 290 {
		t.Errorf("ttl of a leased=false read %d s, want at most 300 s", out.Data.TTL)
	}
}
