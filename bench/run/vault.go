package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/harness"
)

// node is one Vault server of a deployment.
type node struct {
	*harness.Vault
	id      string
	client  *api.Client
	raftDir string // empty for the dev server
}

// deployment is one Vault set-up the scenarios run against: a dev server,
// one raft node, or a raft cluster.
type deployment struct {
	key   string // dev, raft, cluster
	title string
	dir   string
	nodes []*node // the active node first
	token string
	stop  func()
}

// entry is a node the load is sent to, as the report names it.
type entry struct {
	key   string // dev, raft, active, standby
	title string
	node  *node
}

// plugins are the binaries every Vault's plugin directory holds.
func (h *benchRun) plugins() map[string]string {
	return map[string]string{pluginName: h.pluginBin, baselineName: h.baselineBin}
}

// newNode wraps v with a client that uses token.
func newNode(v *harness.Vault, id, raftDir, token string) (*node, error) {
	c, err := v.Client(token)
	return &node{Vault: v, id: id, client: c, raftDir: raftDir}, err
}

// startDev starts `vault server -dev`: storage in memory, unsealed, with
// a root token of its own.
func (h *benchRun) startDev() (*deployment, error) {
	d := &deployment{key: "dev", title: "dev server (storage in memory)", dir: filepath.Join(h.work, "dev"), stop: func() {}}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, err
	}
	v, err := h.lab.StartDev(harness.DevSpec{Dir: d.dir, Name: "vault", Plugins: h.plugins()})
	if err != nil {
		return nil, err
	}
	d.stop, d.token = v.Proc.Stop, v.Token
	n, err := newNode(v, "dev", "", d.token)
	d.nodes = []*node{n}
	return d, err
}

// startRaft starts size servers on integrated storage (raft) on disk,
// initialises and unseals the first, joins the others to it and waits
// until every node is a healthy voter.
func (h *benchRun) startRaft(key, title string, size int) (*deployment, error) {
	d := &deployment{key: key, title: title, dir: filepath.Join(h.work, key)}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, err
	}
	step("starting %s in %s", title, d.dir)
	c, err := h.lab.StartCluster(harness.ClusterSpec{Dir: d.dir, Size: size, Plugins: h.plugins()})
	d.stop = c.Stop
	if err == nil {
		err = c.WaitHealthy()
	}
	if err != nil {
		return d, fmt.Errorf("raft cluster did not settle: %w; logs in %s", err, d.dir)
	}
	d.token = c.Token
	for _, cn := range c.Nodes {
		n, err := newNode(cn.Vault, cn.ID, cn.RaftDir, d.token)
		if err != nil {
			return d, err
		}
		d.nodes = append(d.nodes, n)
	}
	return d, nil
}

// active is the node that holds the lock: the first one, in these
// deployments, which never fail over.
func (d *deployment) active() *node { return d.nodes[0] }

// pluginPIDs returns the processes of plugin name under every node.
func (d *deployment) pluginPIDs(name string) []int {
	var out []int
	for _, n := range d.nodes {
		out = append(out, harness.ChildrenRunning(n.Proc.PID(), filepath.Join(n.PluginDir, name))...)
	}
	return out
}

// vaultPIDs returns the Vault server processes.
func (d *deployment) vaultPIDs() []int {
	var out []int
	for _, n := range d.nodes {
		out = append(out, n.Proc.PID())
	}
	return out
}

// setUp registers both plugins by SHA-256 and version, mounts kv-v2, the
// baseline and the piwik plugin, writes the piwik config and the
// scenarios' roles.
func (h *benchRun) setUp(d *deployment) error {
	c := d.active().client
	ctx := context.Background()
	versions := map[string]string{pluginName: pluginVersion, baselineName: baselineVersion}
	for _, name := range []string{pluginName, baselineName} {
		sum, err := harness.FileSHA256(filepath.Join(d.active().PluginDir, name))
		if err != nil {
			return err
		}
		step("registering %s %s (sha256 %s...)", name, versions[name], sum[:12])
		err = c.Sys().RegisterPluginWithContext(ctx, &api.RegisterPluginInput{
			Name: name, Type: api.PluginTypeSecrets, Command: name, SHA256: sum, Version: versions[name],
		})
		if err != nil {
			return fmt.Errorf("register %s: %w", name, err)
		}
	}
	step("enabling kv-v2 at kv/, %s at baseline/ and %s at piwik/", baselineName, pluginName)
	mounts := map[string]*api.MountInput{
		"kv":       {Type: "kv", Options: map[string]string{"version": "2"}},
		"baseline": {Type: baselineName, Config: api.MountConfigInput{PluginVersion: baselineVersion}},
		"piwik":    {Type: pluginName, Config: api.MountConfigInput{PluginVersion: pluginVersion}},
	}
	for _, path := range []string{"kv", "baseline", "piwik"} {
		if err := c.Sys().Mount(path, mounts[path]); err != nil {
			return fmt.Errorf("enable %s/: %w", path, err)
		}
	}
	// A new kv-v2 mount refuses writes until it has finished setting up.
	err := harness.WaitFor(30*time.Second, 200*time.Millisecond, nil, func() (bool, error) {
		_, err := c.Logical().Write("kv/data/bench", map[string]any{"data": map[string]any{"value": "benchmark"}})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("write kv/bench: %w", err)
	}
	step("writing piwik/config (url %s) and the roles", h.standin.URL)
	_, err = c.Logical().Write("piwik/config", map[string]any{
		"url": h.standin.URL, "client_id": standinClientID, "client_secret": h.standin.ClientSecret,
	})
	if err != nil {
		return fmt.Errorf("write piwik/config: %w", err)
	}
	for name, data := range roleData {
		if err := writeRole(c, name, data); err != nil {
			return err
		}
	}
	return nil
}

// roleData are the roles of the scenarios.
var roleData = map[string]map[string]any{
	"reuse":  {"token_reuse": true},
	"mint":   {},
	"ureuse": {"token_reuse": true, "leased": false},
	"umint":  {"leased": false},
}

func writeRole(c *api.Client, name string, data map[string]any) error {
	if _, err := c.Logical().Write("piwik/roles/"+name, data); err != nil {
		return fmt.Errorf("write piwik/roles/%s: %w", name, err)
	}
	return nil
}
