package harness

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// Node is one server of a Vault cluster on integrated storage (raft). Its
// ports are chosen on the first start and kept: the other nodes know it by
// its cluster address, so a restarted node must come back at the same one.
type Node struct {
	*Vault
	ID      string
	Config  string // its HCL file
	RaftDir string

	cluster *Cluster
}

// ClusterSpec is a raft cluster to start.
type ClusterSpec struct {
	Dir  string
	Size int
	// Plugins are copied into every node's plugin directory (each node has
	// its own, as separate hosts would): command name to the binary.
	Plugins  map[string]string
	LogLevel string // empty for Vault's default
	// PerformanceMultiplier is raft's; 0 leaves Vault's default.
	PerformanceMultiplier int
}

// Cluster is a Vault HA cluster, unsealed with a single key share.
type Cluster struct {
	Nodes     []*Node
	UnsealKey string
	Token     string // root token

	lab  *Lab
	spec ClusterSpec
}

// StartCluster starts s.Size servers in s.Dir, initialises and unseals the
// first, joins the others to it, and waits until all are voters and every
// standby follows the active node. The cluster it returns holds the nodes
// started so far even when it fails; Stop stops them.
func (l *Lab) StartCluster(s ClusterSpec) (*Cluster, error) {
	c := &Cluster{lab: l, spec: s}
	if err := os.MkdirAll(filepath.Join(s.Dir, "home"), 0o700); err != nil {
		return c, err
	}
	for i := 1; i <= s.Size; i++ {
		id := fmt.Sprintf("node%d", i)
		n := &Node{
			Vault:   &Vault{Name: id, Dir: s.Dir, PluginDir: filepath.Join(s.Dir, id+"-plugins")},
			ID:      id,
			Config:  filepath.Join(s.Dir, id+".hcl"),
			RaftDir: filepath.Join(s.Dir, id+"-raft"),
			cluster: c,
		}
		if err := copyPlugins(s.Plugins, n.PluginDir); err != nil {
			return c, err
		}
		if err := os.MkdirAll(n.RaftDir, 0o700); err != nil {
			return c, err
		}
		err := n.Launch()
		if n.Proc != nil {
			c.Nodes = append(c.Nodes, n)
		}
		if err != nil {
			return c, err
		}
	}

	first := c.Nodes[0]
	client, err := first.Client("")
	if err != nil {
		return c, err
	}
	init, err := client.Sys().Init(&api.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		return c, first.Proc.Failure("init: " + err.Error())
	}
	if len(init.KeysB64) != 1 || init.RootToken == "" {
		return c, errors.New("vault operator init returned no unseal key or root token")
	}
	c.UnsealKey, c.Token = init.KeysB64[0], init.RootToken
	l.remember("unseal key of the raft cluster", c.UnsealKey)
	l.remember("root token of the raft cluster", c.Token)
	for _, n := range c.Nodes {
		n.Token = c.Token
	}
	if err := first.Unseal(c.UnsealKey); err != nil {
		return c, err
	}
	if _, err := c.WaitActive(); err != nil {
		return c, err
	}
	// Autopilot makes a new node a voter once it has been healthy this
	// long; its default of 10s would only make the set-up slower.
	client.SetToken(c.Token)
	if _, err := client.Logical().Write("sys/storage/raft/autopilot/configuration",
		map[string]any{"server_stabilization_time": "1s"}); err != nil {
		return c, fmt.Errorf("configure autopilot: %w", err)
	}
	for _, n := range c.Nodes[1:] {
		l.logf("joining %s to %s", n.ID, first.ID)
		nc, err := n.Client("")
		if err != nil {
			return c, err
		}
		if _, err := nc.Sys().RaftJoin(&api.RaftJoinRequest{LeaderAPIAddr: first.Addr}); err != nil {
			return c, n.Proc.Failure("raft join: " + err.Error())
		}
		if err := n.Unseal(c.UnsealKey); err != nil {
			return c, err
		}
	}
	if err := c.WaitVoters(c.IDs()); err != nil {
		return c, err
	}
	_, err = c.WaitActive()
	return c, err
}

// Launch (re)starts the node's server and waits until its API answers; a
// restarted node comes back sealed.
func (n *Node) Launch() error {
	s := n.cluster.spec
	return n.cluster.lab.Launch(n.Vault, LaunchSpec{
		Env:         []string{"HOME=" + filepath.Join(n.Dir, "home")},
		StablePorts: true,
		Args: func(port int) ([]string, error) {
			storage := fmt.Sprintf("storage \"raft\" {\n  path = %q\n  node_id = %q\n", n.RaftDir, n.ID)
			if s.PerformanceMultiplier > 0 {
				storage += fmt.Sprintf("  performance_multiplier = %d\n", s.PerformanceMultiplier)
			}
			storage += "}\n"
			config := ServerConfig(storage, port, n.PluginDir, s.LogLevel)
			if err := os.WriteFile(n.Config, []byte(config), 0o600); err != nil {
				return nil, err
			}
			return []string{"server", "-config=" + n.Config}, nil
		},
	})
}

// Crash kills the node's server and its plugin processes at once, as a
// power cut would: no step-down, no seal.
func (n *Node) Crash() { n.Proc.Kill() }

// Stop stops every node.
func (c *Cluster) Stop() {
	for i := len(c.Nodes) - 1; i >= 0; i-- {
		c.Nodes[i].Proc.Stop()
	}
}

// IDs returns the node ids of the cluster.
func (c *Cluster) IDs() []string {
	var ids []string
	for _, n := range c.Nodes {
		ids = append(ids, n.ID)
	}
	return ids
}

// Running returns the nodes whose process runs.
func (c *Cluster) Running() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if !n.Proc.Exited() {
			out = append(out, n)
		}
	}
	return out
}

// WaitActive waits until exactly one running node is active and every
// other unsealed node names it as the leader (so that it can forward
// requests to it), and returns the active node.
func (c *Cluster) WaitActive() (*Node, error) {
	var active *Node
	var state string
	err := WaitFor(StartWait, 200*time.Millisecond, nil, func() (bool, error) {
		active = nil
		var standbys []*Node
		var seen []string
		for _, n := range c.Running() {
			client, err := n.Client("")
			if err != nil {
				return false, err
			}
			h, err := client.Sys().Health()
			switch {
			case err != nil:
				seen = append(seen, n.ID+": "+err.Error())
			case h.Sealed:
				seen = append(seen, n.ID+": sealed")
			case h.Standby:
				seen = append(seen, n.ID+": standby")
				standbys = append(standbys, n)
			case active != nil:
				state = "two active nodes: " + active.ID + " and " + n.ID
				return false, nil
			default:
				seen = append(seen, n.ID+": active")
				active = n
			}
		}
		state = strings.Join(seen, ", ")
		if active == nil {
			return false, nil
		}
		for _, n := range standbys {
			client, err := n.Client("")
			if err != nil {
				return false, err
			}
			l, err := client.Sys().Leader()
			if err != nil || l.LeaderAddress != active.Addr {
				state += "; " + n.ID + " does not know the leader yet"
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("no single active node with standbys following it: %w (%s); logs in %s", err, state, c.spec.Dir)
	}
	return active, nil
}

// Peer is one server of the raft configuration.
type Peer struct {
	NodeID  string `json:"node_id"`
	Address string `json:"address"`
	Leader  bool   `json:"leader"`
	Voter   bool   `json:"voter"`
}

// Peers returns the raft configuration as node via sees it.
func (c *Cluster) Peers(via *Node) ([]Peer, error) {
	client, err := via.Client(c.Token)
	if err != nil {
		return nil, err
	}
	s, err := client.Logical().Read("sys/storage/raft/configuration")
	if err != nil || s == nil {
		return nil, fmt.Errorf("read the raft configuration through %s: %v", via.ID, err)
	}
	data, err := json.Marshal(s.Data["config"])
	if err != nil {
		return nil, err
	}
	var config struct {
		Servers []Peer `json:"servers"`
	}
	if err := json.Unmarshal(data, &config); err != nil {
		return nil, fmt.Errorf("the raft configuration through %s: %w", via.ID, err)
	}
	return config.Servers, nil
}

// WaitVoters waits until the raft configuration holds exactly the nodes
// ids, all of them voters.
func (c *Cluster) WaitVoters(ids []string) error {
	active, err := c.WaitActive()
	if err != nil {
		return err
	}
	want := slices.Sorted(slices.Values(ids))
	var got []Peer
	var readErr error
	err = WaitFor(StartWait, 250*time.Millisecond, active.Proc, func() (bool, error) {
		got, readErr = c.Peers(active)
		if readErr != nil {
			return false, nil
		}
		var voters []string
		for _, p := range got {
			if p.Voter {
				voters = append(voters, p.NodeID)
			}
		}
		slices.Sort(voters)
		return len(got) == len(want) && slices.Equal(voters, want), nil
	})
	if err != nil {
		return fmt.Errorf("raft peers are %+v (last error: %v), want the voters %v: %w", got, readErr, want, err)
	}
	return nil
}

// WaitHealthy waits until autopilot on the active node reports every node
// as a healthy voter (or the leader): in contact with the leader and
// caught up with its log.
func (c *Cluster) WaitHealthy() error {
	active, err := c.WaitActive()
	if err != nil {
		return err
	}
	client, err := active.Client(c.Token)
	if err != nil {
		return err
	}
	var state string
	err = WaitFor(StartWait, 250*time.Millisecond, active.Proc, func() (bool, error) {
		ap, err := client.Sys().RaftAutopilotState()
		if err != nil {
			state = err.Error()
			return false, nil
		}
		var seen []string
		healthy := len(ap.Servers) == len(c.Nodes)
		for id, s := range ap.Servers {
			seen = append(seen, fmt.Sprintf("%s: %s, healthy %t", id, s.Status, s.Healthy))
			healthy = healthy && s.Healthy && (s.Status == "voter" || s.Status == "leader")
		}
		slices.Sort(seen)
		state = strings.Join(seen, "; ")
		return healthy, nil
	})
	if err != nil {
		return fmt.Errorf("autopilot does not report %d healthy voters (%s): %w", len(c.Nodes), state, err)
	}
	return nil
}
