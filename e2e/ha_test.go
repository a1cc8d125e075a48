package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHAClusterFailoverSealUpgrade runs the plugin in a three-node Vault
// cluster on integrated storage, the way it is deployed in production, and
// pins what an operator relies on: creds can be read through any node,
// and config, roles and creds survive the leader dying, a node rejoining
// and a node being sealed and unsealed, with the client secrets never
// readable on any node. Last, the plugin is upgraded in place while a
// reader keeps reading (upgradeUnderLoad).
func TestHAClusterFailoverSealUpgrade(t *testing.T) {
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
	// A token_reuse role's token, minted on the leader, is stored in the
	// cluster's storage.
	leader.vault(t, "write", "piwik/roles/warm", "token_reuse=true")
	warm := leader.readCreds(t, c.token, "piwik/creds/warm").accessToken

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
	// The new active node, which starts the plugin afresh, serves the
	// stored token: the failover costs Piwik PRO no request.
	before := st.stats(t).TokenRequests
	for _, n := range c.running() {
		if got := n.readCreds(t, c.token, "piwik/creds/warm").accessToken; got != warm {
			t.Errorf("piwik/creds/warm through %s after the failover: another token than the stored one", n.id)
		}
	}
	if n := st.stats(t).TokenRequests - before; n != 0 {
		t.Errorf("reads of a token_reuse role after the failover made %d token requests, want 0", n)
	}
	leader.vault(t, "delete", "piwik/roles/warm")
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

	concurrentWritesThroughStandby(t, c, h, second)
	upgradeUnderLoad(t, c, h)
	t.Logf("upgrade done; %s in all", time.Since(start).Round(time.Millisecond))
}

// concurrentWritesThroughStandby writes the config and a role twice at
// once, once through a standby (which forwards to the active node) and
// once through the active node, while every verification is slow, and
// checks on every node that both changes of each pair survived: the write
// locks are per node, and every write lands on the active one.
func concurrentWritesThroughStandby(t *testing.T, c *raftCluster, h haCheck, second *standin) {
	t.Helper()
	active := c.waitActive(t)
	var standby *raftNode
	for _, n := range c.running() {
		if n != active {
			standby = n
			break
		}
	}
	h.st.control(t, "fault", map[string]any{"kind": "slow", "delay_ms": 400})
	defer h.st.control(t, "fault", map[string]any{"kind": ""})

	secretBody := func(secret string) string {
		body, _ := json.Marshal(map[string]string{"client_secret": secret})
		return string(body)
	}
	writes := []struct {
		node  *raftNode
		stdin string
		args  []string
	}{
		{standby, "", []string{"patch", "piwik/config", "request_timeout=20"}},
		{active, secretBody(h.st.clientSecret), []string{"patch", "piwik/config", "-"}},
		{standby, secretBody(second.clientSecret), []string{"patch", "piwik/roles/second", "-"}},
		{active, "", []string{"patch", "piwik/roles/second", "token_reuse=true"}},
	}
	var wg sync.WaitGroup
	for _, w := range writes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := w.node.run(t, c.token, w.stdin, w.args...); r.exitCode != 0 {
				t.Errorf("vault %s through %s: %s", strings.Join(w.args[:2], " "), w.node.id, redact(r.stderr))
			}
		}()
	}
	wg.Wait()
	for _, n := range c.running() {
		var cfg, role struct {
			Data map[string]any `json:"data"`
		}
		decode(t, "config", n.vault(t, "read", "-format=json", "piwik/config"), &cfg)
		decode(t, "role", n.vault(t, "read", "-format=json", "piwik/roles/second"), &role)
		if cfg.Data["request_timeout"] != float64(20) {
			t.Errorf("through %s: request_timeout %v after concurrent config writes, want 20", n.id, cfg.Data["request_timeout"])
		}
		if role.Data["token_reuse"] != true || role.Data["client_id"] != second.clientID {
			t.Errorf("through %s: role %v after concurrent role writes, want token_reuse and its credential", n.id, role.Data)
		}
	}
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
		if !fullLease(c.leaseDuration) {
			t.Errorf("%s through %s: lease_duration %d, want the token's 1800s, truncated", path, n.id, c.leaseDuration)
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

// upgradeUnderLoad upgrades piwik/ to upgradeVersion the way the README
// says (binary into every node's plugin directory, register, tune, reload
// with -scope=global) while a reader reads creds through a standby without
// pause. Every node must then report the new running version, no node may
// still run the old binary, and reads may fail only while the reload runs:
// every failed read must have started before the reload completed and
// ended after it began. A step-down then shows that another node runs the
// new version from its own plugin directory.
func upgradeUnderLoad(t *testing.T, c *raftCluster, h haCheck) {
	t.Helper()
	active := c.waitActive(t)
	var standby *raftNode
	for _, n := range c.nodes {
		if n != active {
			standby = n
			break
		}
	}
	command := pluginName + "-" + upgradeVersion
	bin := upgradeBinary(t)
	for _, n := range c.nodes {
		copyBinary(t, bin, n.pluginDir, command)
	}
	active.registerPlugin(t, command, upgradeVersion)
	active.vault(t, "secrets", "tune", "-plugin-version="+upgradeVersion, "piwik/")
	if m := active.mounts(t)["piwik/"]; m.PluginVersion != upgradeVersion || m.RunningPluginVersion == upgradeVersion {
		t.Fatalf("after the tune, piwik/ has plugin_version %q and runs %q; want %q pinned and the old version running until the reload",
			m.PluginVersion, m.RunningPluginVersion, upgradeVersion)
	}

	r := startCredsReader(t, standby, "piwik/creds/reporting")
	defer r.stop(t)
	r.waitSuccesses(t, 5, time.Time{})

	reloadStart := time.Now()
	out := standby.vault(t, "plugin", "reload", "-type=secret", "-plugin="+pluginName, "-scope=global")
	reloadReturned := time.Now()
	m := regexp.MustCompile(`reload_id: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("vault plugin reload -scope=global printed no reload_id:\n%s", out)
	}
	// Vault Enterprise reports a global reload's progress per node; the
	// community edition reloads on the active node (the only one running
	// plugins) before it answers, and has no status endpoint.
	if st := standby.run(t, c.token, "", "plugin", "reload-status", m[1]); st.exitCode == 0 {
		t.Logf("vault plugin reload-status %s:\n%s", m[1], st.stdout)
	} else if !strings.Contains(st.stderr, "enterprise-only feature") {
		t.Errorf("vault plugin reload-status %s: exit %d:\n%s%s", m[1], st.exitCode, st.stdout, st.stderr)
	}

	// The reload is complete when every node reports the new version. On
	// the community edition that is so at the first look, when the reload
	// command returned; otherwise completion is when it was first seen.
	completed := reloadReturned
	polls := 0
	err := waitFor(clusterWait, 50*time.Millisecond, nil, func() (bool, error) {
		polls++
		for _, n := range c.nodes {
			if got := n.mounts(t)["piwik/"].RunningPluginVersion; got != upgradeVersion {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("not every node reports piwik/ running %s: %v", upgradeVersion, err)
	}
	if polls > 1 {
		completed = time.Now()
	}
	r.waitSuccesses(t, 10, completed)
	reads := r.stop(t)

	var failed []timedRead
	overlapped := 0
	var slowest time.Duration // of the reads that ran while the reload did
	for _, rd := range reads {
		if rd.start.Before(reloadReturned) && rd.end.After(reloadStart) {
			overlapped++
			slowest = max(slowest, rd.end.Sub(rd.start))
		}
		if rd.err == nil {
			if rd.aud != "Client-Name-"+h.st.clientID {
				t.Errorf("a read through %s returned a token with aud %q", standby.id, rd.aud)
			}
			continue
		}
		failed = append(failed, rd)
		if !rd.start.Before(completed) || !rd.end.After(reloadStart) {
			t.Errorf("a read failed outside the reload: it ran from %s to %s after the reload began (completed after %s): %v",
				rd.start.Sub(reloadStart).Round(time.Millisecond), rd.end.Sub(reloadStart).Round(time.Millisecond),
				completed.Sub(reloadStart).Round(time.Millisecond), rd.err)
		}
	}
	if overlapped == 0 {
		t.Fatal("no read ran while the reload did: the reader proves nothing")
	}
	window := "none"
	if len(failed) > 0 {
		window = fmt.Sprintf("%s, from %s to %s after the reload began; first error: %v",
			failed[len(failed)-1].end.Sub(failed[0].start).Round(time.Millisecond),
			failed[0].start.Sub(reloadStart).Round(time.Millisecond),
			failed[len(failed)-1].end.Sub(reloadStart).Round(time.Millisecond), failed[0].err)
	}
	t.Logf("upgrade under load: %d reads through %s, %d failed; the reload command took %s and was complete %s after it began (%d polls); "+
		"%d reads ran during the reload, the slowest took %s; failed window: %s",
		len(reads), standby.id, len(failed), reloadReturned.Sub(reloadStart).Round(time.Millisecond),
		completed.Sub(reloadStart).Round(time.Millisecond), polls, overlapped, slowest.Round(time.Millisecond), window)
	h.st.requireTokenWorks(t, "last token read during the upgrade", reads[len(reads)-1].token)

	// Nothing runs the old binary any more; the active node runs the new
	// one from its own plugin directory.
	old := func(n *raftNode) string { return filepath.Join(n.pluginDir, pluginName) }
	err = waitFor(clusterWait, 100*time.Millisecond, nil, func() (bool, error) {
		for _, n := range c.nodes {
			if slices.Contains(pluginExecutables(n), old(n)) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		for _, n := range c.nodes {
			t.Logf("%s runs %v", n.id, pluginExecutables(n))
		}
		t.Fatalf("a node still runs the old plugin binary after the reload: %v", err)
	}
	requireRuns(t, active, filepath.Join(active.pluginDir, command))

	// Another node takes over and starts the new version from its own
	// plugin directory.
	active.vault(t, "operator", "step-down")
	next := c.waitActive(t)
	if next == active {
		t.Fatalf("%s is still active after vault operator step-down", active.id)
	}
	if got := next.mounts(t)["piwik/"].RunningPluginVersion; got != upgradeVersion {
		t.Errorf("after the step-down %s runs piwik/ at %q, want %q", next.id, got, upgradeVersion)
	}
	h.requireCreds(next)
	requireRuns(t, next, filepath.Join(next.pluginDir, command))
}

// requireRuns fails t unless node n runs the plugin executable exe.
func requireRuns(t *testing.T, n *raftNode, exe string) {
	t.Helper()
	err := waitFor(clusterWait, 100*time.Millisecond, nil, func() (bool, error) {
		return slices.Contains(pluginExecutables(n), exe), nil
	})
	if err != nil {
		t.Fatalf("%s does not run %s; it runs %v", n.id, exe, pluginExecutables(n))
	}
}

// pluginExecutables lists the executables of the processes node n's server
// started (its process group, less the server itself).
func pluginExecutables(n *raftNode) []string {
	pgid := n.proc.cmd.Process.Pid
	entries, _ := os.ReadDir("/proc")
	var exes []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == pgid {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp …; comm may contain spaces.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) < 3 || fields[2] != strconv.Itoa(pgid) {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil {
			exes = append(exes, exe)
		}
	}
	return exes
}

// timedRead is one creds read of a credsReader.
type timedRead struct {
	start, end time.Time
	err        error
	token, aud string
}

// credsReader reads a creds path through one node again and again, a few
// milliseconds apart, and records each read.
type credsReader struct {
	mu    sync.Mutex
	reads []timedRead
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// readPause is the pause between two reads of a credsReader: it paces the
// reader, it synchronises nothing.
const readPause = 10 * time.Millisecond

func startCredsReader(t *testing.T, n *raftNode, path string) *credsReader {
	t.Helper()
	client := n.client(t, n.token)
	r := &credsReader{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			select {
			case <-r.quit:
				return
			default:
			}
			rd := timedRead{start: time.Now()}
			s, err := client.Logical().Read(path)
			rd.end = time.Now()
			switch {
			case err != nil:
				rd.err = err
			case s == nil || s.Data["access_token"] == nil:
				rd.err = errors.New("no token in the response")
			default:
				rd.token, _ = s.Data["access_token"].(string)
				rd.aud, _ = s.Data["aud"].(string)
			}
			r.mu.Lock()
			r.reads = append(r.reads, rd)
			r.mu.Unlock()
			time.Sleep(readPause)
		}
	}()
	return r
}

// waitSuccesses waits until at least n reads that started after since have
// succeeded.
func (r *credsReader) waitSuccesses(t *testing.T, n int, since time.Time) {
	t.Helper()
	err := waitFor(clusterWait, 20*time.Millisecond, nil, func() (bool, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		ok := 0
		for _, rd := range r.reads {
			if rd.err == nil && rd.start.After(since) {
				ok++
			}
		}
		return ok >= n, nil
	})
	if err != nil {
		reads := r.stop(t)
		last := "none"
		if len(reads) > 0 {
			last = fmt.Sprint(reads[len(reads)-1].err)
		}
		t.Fatalf("the reader did not get %d tokens in %s (%d reads; last error: %s)", n, clusterWait, len(reads), last)
	}
}

// stop ends the reader and returns its reads; every token read is
// remembered for the log scan. It may be called more than once.
func (r *credsReader) stop(t *testing.T) []timedRead {
	t.Helper()
	r.once.Do(func() {
		close(r.quit)
		<-r.done
		for _, rd := range r.reads {
			if rd.token != "" {
				rememberSecret(t, "access token read during the HA upgrade", rd.token)
			}
		}
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reads)
}
