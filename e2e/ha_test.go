package e2e

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestHAClusterFailoverAndSeal runs the plugin in a three-node Vault
// cluster on integrated storage, the way it is deployed in production, and
// pins what an operator relies on: creds can be read through any node,
// and config, roles and creds survive the leader dying, a node rejoining
// and a node being sealed and unsealed, with the client secrets never
// readable on any node.
func TestHAClusterFailoverAndSeal(t *testing.T) {
	requireBinaries(t)
	start := time.Now()
	dir := testDir(t)
	st := startStandin(t, dir, "standin", t.Cleanup)
	second := addStandinCredential(t, st, "second-client")

	c := startRaftCluster(t, dir, 3)
	leader := c.waitActive(t)
	t.Logf("cluster of %v up with %s active after %s", c.ids(), leader.id, time.Since(start).Round(time.Millisecond))

	version := leader.builtVersion(t)
	leader.registerPlugin(t, pluginName, version)
	leader.mountPiwik(t, "piwik", version, st)
	roleBody, err := json.Marshal(map[string]string{"client_id": second.clientID, "client_secret": second.clientSecret})
	if err != nil {
		t.Fatal(err)
	}
	leader.vaultAs(t, c.token, string(roleBody), "write", "piwik/roles/second", "-")
	h := haCheck{t: t, st: st, secrets: []string{st.clientSecret, second.clientSecret}, clientIDs: map[string]string{
		"reporting": st.clientID,
		"second":    second.clientID,
	}}

	// Every node serves creds: the leader itself, the standbys by
	// forwarding to it.
	for _, n := range c.nodes {
		h.requireCreds(n)
	}

	// The leader crashes; one of the others takes over with everything
	// intact.
	old := leader
	crashed := time.Now()
	old.crash()
	leader = c.waitActive(t)
	if leader == old {
		t.Fatalf("%s is still active after it was killed", old.id)
	}
	t.Logf("%s killed; %s active after %s", old.id, leader.id, time.Since(crashed).Round(time.Millisecond))
	for _, n := range c.running() {
		h.requireIntact(n)
		h.requireCreds(n)
	}

	// The old leader comes back at its address, catches up and follows.
	old.launch(t)
	old.unsealMember(t, c.unsealKey)
	if active := c.waitActive(t); active == old {
		t.Errorf("%s took over again on rejoining; want it a standby while %s is healthy", old.id, leader.id)
	}
	c.waitVoters(t, c.ids())
	c.waitHealthy(t)
	requireStandby(t, old)
	h.requireIntact(old)
	h.requireCreds(old)

	// Sealing the active node steps it down; unsealed again, it is a
	// standby with the same view of config and roles.
	sealed := c.waitActive(t)
	sealed.vault(t, "operator", "seal")
	if active := c.waitActive(t); active == sealed {
		t.Fatalf("%s is still active after vault operator seal", sealed.id)
	}
	if health, err := sealed.client(t, "").Sys().Health(); err != nil || !health.Sealed {
		t.Fatalf("%s after vault operator seal: health %+v, %v; want sealed", sealed.id, health, err)
	}
	sealed.unsealMember(t, c.unsealKey)
	c.waitActive(t)
	requireStandby(t, sealed)
	c.waitHealthy(t)
	for _, n := range c.nodes {
		h.requireIntact(n)
	}
	h.requireCreds(sealed)
	t.Logf("failover, rejoin and seal/unseal done in %s", time.Since(start).Round(time.Millisecond))
}

// addStandinCredential adds a credential to the running stand-in s and
// returns it as a standin with only the id and secret set.
func addStandinCredential(t *testing.T, s *standin, clientID string) *standin {
	t.Helper()
	cred := &standin{url: s.url, clientID: clientID, clientSecret: randomString(t, 32)}
	rememberSecret(t, "client secret of stand-in credential "+clientID, cred.clientSecret)
	s.control(t, "credentials", map[string]string{"client_id": clientID, "client_secret": cred.clientSecret})
	return cred
}

// haCheck holds what the HA test expects to find on every node.
type haCheck struct {
	t  *testing.T
	st *standin
	// secrets must never appear in what a node returns.
	secrets []string
	// clientIDs maps each role to the credential its tokens are for.
	clientIDs map[string]string
}

// requireCreds reads a token for every role through node n and checks it:
// a 30 minute lease, for the role's credential, accepted by Piwik PRO.
func (h haCheck) requireCreds(n *raftNode) {
	t := h.t
	t.Helper()
	for role, clientID := range h.clientIDs {
		path := "piwik/creds/" + role
		c := n.readCreds(t, n.token, path)
		if c.leaseDuration < 1799 || c.leaseDuration > 1800 {
			t.Errorf("%s through %s: lease_duration %d, want 1799-1800", path, n.id, c.leaseDuration)
		}
		if !strings.HasPrefix(c.leaseID, path+"/") {
			t.Errorf("%s through %s: lease_id %q", path, n.id, c.leaseID)
		}
		// The stand-in names a token's credential in its aud claim.
		if got, want := c.data["aud"], "Client-Name-"+clientID; got != want {
			t.Errorf("%s through %s: aud %v, want %s", path, n.id, got, want)
		}
		h.st.requireTokenWorks(t, path+" through "+n.id, c.accessToken)
	}
}

// requireIntact checks through node n that the config and every role are
// there, and that neither gives away a client secret.
func (h haCheck) requireIntact(n *raftNode) {
	t := h.t
	t.Helper()
	out := n.vault(t, "read", "-format=json", "piwik/config")
	h.requireNoSecret(n, "piwik/config", out)
	var cfg struct {
		Data map[string]any `json:"data"`
	}
	decode(t, "vault read piwik/config", out, &cfg)
	if got := cfg.Data["url"]; got != h.st.url {
		t.Errorf("piwik/config through %s: url %v, want %s", n.id, got, h.st.url)
	}
	if _, ok := cfg.Data["client_secret"]; ok {
		t.Errorf("piwik/config through %s has a client_secret field", n.id)
	}
	if got := cfg.Data["client_id"]; got != h.st.clientID {
		t.Errorf("piwik/config through %s: client_id %v, want %s", n.id, got, h.st.clientID)
	}

	var roles []string
	decode(t, "vault list piwik/roles", n.vault(t, "list", "-format=json", "piwik/roles"), &roles)
	want := slices.Sorted(maps.Keys(h.clientIDs))
	if !slices.Equal(roles, want) {
		t.Errorf("piwik/roles through %s: %v, want %v", n.id, roles, want)
	}
	for _, role := range want {
		out := n.vault(t, "read", "-format=json", "piwik/roles/"+role)
		h.requireNoSecret(n, "piwik/roles/"+role, out)
	}
}

// requireNoSecret fails the test if out, what node n returned for path,
// contains a client secret.
func (h haCheck) requireNoSecret(n *raftNode, path, out string) {
	h.t.Helper()
	for _, s := range h.secrets {
		if strings.Contains(out, s) {
			h.t.Errorf("vault read %s through %s returned a client secret", path, n.id)
		}
	}
}

// requireStandby fails t unless n is an unsealed standby.
func requireStandby(t *testing.T, n *raftNode) {
	t.Helper()
	health, err := n.client(t, "").Sys().Health()
	if err != nil || health.Sealed || !health.Standby {
		t.Fatalf("%s: health %+v, %v; want an unsealed standby", n.id, health, err)
	}
}
