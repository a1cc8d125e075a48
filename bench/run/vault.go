package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// startWait bounds every wait for a server: a start, an unseal, an
// election, a node joining.
const startWait = 90 * time.Second

// node is one Vault server.
type node struct {
	id      string
	proc    *proc
	addr    string
	client  *api.Client
	raftDir string // empty for the dev server
}

// deployment is one Vault set-up the scenarios run against: a dev server,
// one raft node, or a raft cluster.
type deployment struct {
	key       string // dev, raft, cluster
	title     string
	dir       string
	pluginDir string
	nodes     []*node
	token     string
}

// entry is a node the load is sent to, as the report names it.
type entry struct {
	key   string // dev, raft, active, standby
	title string
	node  *node
}

// serverEnv is the environment of a Vault server: nothing of the caller's
// but PATH, and a private HOME.
func serverEnv(dir string, extra ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Join(dir, "home")}, extra...)
}

// newNodeClient returns an API client for addr with token.
func newNodeClient(addr, token string) (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	cfg.Timeout = 60 * time.Second
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetToken(token)
	return c, nil
}

// newDeployment makes the directories of a deployment and copies the
// plugin binaries into its plugin directory.
func (h *harness) newDeployment(key, title string) (*deployment, error) {
	d := &deployment{key: key, title: title, dir: filepath.Join(h.work, key)}
	d.pluginDir = filepath.Join(d.dir, "plugins")
	for _, dir := range []string{d.pluginDir, filepath.Join(d.dir, "home")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	for name, src := range map[string]string{pluginName: h.pluginBin, baselineName: h.baselineBin} {
		if err := copyFile(src, filepath.Join(d.pluginDir, name), 0o755); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// startDev starts `vault server -dev`: storage in memory, unsealed, with
// a root token of our choosing.
func (h *harness) startDev() (*deployment, error) {
	d, err := h.newDeployment("dev", "dev server (storage in memory)")
	if err != nil {
		return nil, err
	}
	port, err := freePortPair()
	if err != nil {
		return nil, err
	}
	d.token = randomString()
	n := &node{id: "dev", addr: fmt.Sprintf("http://127.0.0.1:%d", port)}
	step("starting Vault dev server on %s (log: %s)", n.addr, filepath.Join(d.dir, "vault.log"))
	// The root token goes through the environment, out of ps.
	n.proc, err = startProc("vault dev server", filepath.Join(d.dir, "vault.log"),
		serverEnv(d.dir, "VAULT_DEV_ROOT_TOKEN_ID="+d.token), h.vaultBin,
		"server", "-dev", "-dev-listen-address=127.0.0.1:"+fmt.Sprint(port), "-dev-plugin-dir="+d.pluginDir)
	if err != nil {
		return nil, err
	}
	d.nodes = []*node{n}
	if n.client, err = newNodeClient(n.addr, d.token); err != nil {
		return nil, err
	}
	if err := n.waitActive(); err != nil {
		return nil, err
	}
	return d, nil
}

// startRaft starts size servers on integrated storage (raft) on disk,
// initialises and unseals the first, joins the others to it and waits
// until every node is a healthy voter.
func (h *harness) startRaft(key, title string, size int) (*deployment, error) {
	d, err := h.newDeployment(key, title)
	if err != nil {
		return nil, err
	}
	for i := 1; i <= size; i++ {
		n, err := d.launchRaftNode(h, fmt.Sprintf("node%d", i))
		if err != nil {
			return nil, err
		}
		d.nodes = append(d.nodes, n)
	}
	first := d.nodes[0]
	init, err := first.client.Sys().Init(&api.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		return nil, first.proc.failure("init: " + err.Error())
	}
	if len(init.KeysB64) != 1 || init.RootToken == "" {
		return nil, errors.New("vault operator init returned no unseal key or root token")
	}
	key64 := init.KeysB64[0]
	d.token = init.RootToken
	for _, n := range d.nodes {
		n.client.SetToken(d.token)
	}
	if err := first.unseal(key64); err != nil {
		return nil, err
	}
	if err := first.waitActive(); err != nil {
		return nil, err
	}
	if size == 1 {
		return d, nil
	}
	// Autopilot makes a new node a voter once it has been healthy this
	// long; its default of 10s would only make the set-up slower.
	if _, err := first.client.Logical().Write("sys/storage/raft/autopilot/configuration",
		map[string]any{"server_stabilization_time": "1s"}); err != nil {
		return nil, fmt.Errorf("configure autopilot: %w", err)
	}
	for _, n := range d.nodes[1:] {
		step("joining %s to %s", n.id, first.id)
		if _, err := n.client.Sys().RaftJoin(&api.RaftJoinRequest{LeaderAPIAddr: first.addr}); err != nil {
			return nil, n.proc.failure("raft join: " + err.Error())
		}
		if err := n.unseal(key64); err != nil {
			return nil, err
		}
	}
	return d, d.waitVoters()
}

// launchRaftNode writes a node's configuration and starts it.
func (d *deployment) launchRaftNode(h *harness, id string) (*node, error) {
	port, err := freePortPair()
	if err != nil {
		return nil, err
	}
	n := &node{id: id, addr: fmt.Sprintf("http://127.0.0.1:%d", port), raftDir: filepath.Join(d.dir, id+"-raft")}
	if err := os.MkdirAll(n.raftDir, 0o700); err != nil {
		return nil, err
	}
	config := fmt.Sprintf(`storage "raft" {
  path    = %q
  node_id = %q
}

listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}

api_addr         = "http://127.0.0.1:%d"
cluster_addr     = "https://127.0.0.1:%d"
plugin_directory = %q
disable_mlock    = true
`, n.raftDir, id, port, port+1, port, port+1, d.pluginDir)
	configPath := filepath.Join(d.dir, id+".hcl")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(d.dir, id+".log")
	step("starting Vault %s %s on %s, raft storage in %s (log: %s)", d.key, id, n.addr, n.raftDir, logPath)
	n.proc, err = startProc("vault "+d.key+" "+id, logPath, serverEnv(d.dir), h.vaultBin, "server", "-config="+configPath)
	if err != nil {
		return nil, err
	}
	if n.client, err = newNodeClient(n.addr, ""); err != nil {
		return nil, err
	}
	err = waitFor(startWait, 100*time.Millisecond, n.proc, func() (bool, error) {
		_, err := n.client.Sys().Health()
		return err == nil, nil
	})
	if err != nil {
		return nil, n.proc.failure("API did not answer: " + err.Error())
	}
	return n, nil
}

// unseal gives n the unseal key and waits until it is unsealed.
func (n *node) unseal(key string) error {
	if _, err := n.client.Sys().Unseal(key); err != nil {
		return n.proc.failure("unseal: " + err.Error())
	}
	err := waitFor(startWait, 100*time.Millisecond, n.proc, func() (bool, error) {
		h, err := n.client.Sys().Health()
		return err == nil && h.Initialized && !h.Sealed, nil
	})
	if err != nil {
		return n.proc.failure("still sealed: " + err.Error())
	}
	return nil
}

// waitActive waits until n is the active node.
func (n *node) waitActive() error {
	err := waitFor(startWait, 100*time.Millisecond, n.proc, func() (bool, error) {
		h, err := n.client.Sys().Health()
		return err == nil && h.Initialized && !h.Sealed && !h.Standby, nil
	})
	if err != nil {
		return n.proc.failure("did not become active: " + err.Error())
	}
	return nil
}

// waitVoters waits until autopilot reports every node as a healthy voter,
// and every standby knows the active node.
func (d *deployment) waitVoters() error {
	first := d.nodes[0]
	var state string
	err := waitFor(startWait, 250*time.Millisecond, first.proc, func() (bool, error) {
		ap, err := first.client.Sys().RaftAutopilotState()
		if err != nil {
			state = err.Error()
			return false, nil
		}
		var seen []string
		ok := len(ap.Servers) == len(d.nodes)
		for id, s := range ap.Servers {
			seen = append(seen, fmt.Sprintf("%s: %s, healthy %t", id, s.Status, s.Healthy))
			ok = ok && s.Healthy && (s.Status == "voter" || s.Status == "leader")
		}
		state = strings.Join(seen, "; ")
		if !ok {
			return false, nil
		}
		for _, n := range d.nodes[1:] {
			l, err := n.client.Sys().Leader()
			if err != nil || l.LeaderAddress != first.addr {
				state = n.id + " does not know the leader yet"
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("raft cluster did not settle (%s): %w; logs in %s", state, err, d.dir)
	}
	return nil
}

// active is the node that holds the lock: the first one, in these
// deployments, which never fail over.
func (d *deployment) active() *node { return d.nodes[0] }

// stop stops every node.
func (d *deployment) stop() {
	for i := len(d.nodes) - 1; i >= 0; i-- {
		d.nodes[i].proc.stop()
	}
}

// pluginPIDs returns the processes of plugin name under every node.
func (d *deployment) pluginPIDs(name string) []int {
	var out []int
	for _, n := range d.nodes {
		out = append(out, children(n.proc.pid(), filepath.Join(d.pluginDir, name)+"\x00")...)
	}
	return out
}

// vaultPIDs returns the Vault server processes.
func (d *deployment) vaultPIDs() []int {
	var out []int
	for _, n := range d.nodes {
		out = append(out, n.proc.pid())
	}
	return out
}

// setUp registers both plugins by SHA-256 and version, mounts kv-v2, the
// baseline and the piwik plugin, writes the piwik config and the
// scenarios' roles.
func (h *harness) setUp(d *deployment) error {
	c := d.active().client
	ctx := context.Background()
	versions := map[string]string{pluginName: pluginVersion, baselineName: baselineVersion}
	for _, name := range []string{pluginName, baselineName} {
		sum, err := fileSHA256(filepath.Join(d.pluginDir, name))
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
	err := waitFor(30*time.Second, 200*time.Millisecond, nil, func() (bool, error) {
		_, err := c.Logical().Write("kv/data/bench", map[string]any{"data": map[string]any{"value": "benchmark"}})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("write kv/bench: %w", err)
	}
	step("writing piwik/config (url %s) and the roles", h.standinURL)
	_, err = c.Logical().Write("piwik/config", map[string]any{
		"url": h.standinURL, "client_id": standinClientID, "client_secret": h.standinSecret,
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

// fileSHA256 is the hex SHA-256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// copyFile copies src to dst with mode.
func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
