package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// raftNode is one server of a Vault cluster on integrated storage. Its
// ports are chosen on the first start and kept: the other nodes know it by
// its cluster address, so a restarted node must come back at the same one.
type raftNode struct {
	*vaultServer
	id     string
	port   int // the API port; the cluster port is port+1
	config string
	// logStart is where the current run's output starts in the log.
	logStart int64
}

// raftCluster is a Vault HA cluster, unsealed with a single key share. Each
// node has a plugin directory of its own, as separate hosts would.
type raftCluster struct {
	nodes     []*raftNode
	unsealKey string
	token     string // root token
}

// clusterWait bounds every wait for the cluster: a start, an election, a
// node catching up.
const clusterWait = 60 * time.Second

// startRaftCluster starts n servers in dir, initialises and unseals the
// first, joins the others to it, and waits until all n are voters. The
// servers stop when t ends.
func startRaftCluster(t *testing.T, dir string, n int) *raftCluster {
	t.Helper()
	c := &raftCluster{}
	mkdir(t, filepath.Join(dir, "home"))
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("node%d", i)
		pluginDir := filepath.Join(dir, id+"-plugins")
		copyPlugin(t, pluginDir, pluginName)
		node := &raftNode{
			vaultServer: &vaultServer{name: id, dir: dir, pluginDir: pluginDir},
			id:          id,
			config:      filepath.Join(dir, id+".hcl"),
		}
		mkdir(t, filepath.Join(dir, id+"-raft"))
		node.launch(t)
		c.nodes = append(c.nodes, node)
	}

	first := c.nodes[0]
	var initOut struct {
		Keys      []string `json:"unseal_keys_b64"`
		RootToken string   `json:"root_token"`
	}
	decode(t, "vault operator init", first.vaultAs(t, "", "", "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json"), &initOut)
	if len(initOut.Keys) != 1 || initOut.RootToken == "" {
		t.Fatal("vault operator init returned no unseal key or root token")
	}
	c.unsealKey, c.token = initOut.Keys[0], initOut.RootToken
	rememberSecret(t, "unseal key of the raft cluster", c.unsealKey)
	rememberSecret(t, "root token of the raft cluster", c.token)
	for _, node := range c.nodes {
		node.token = c.token
	}
	first.unsealMember(t, c.unsealKey)
	c.waitActive(t)
	// Autopilot makes a new node a voter once it has been healthy this
	// long; its default of 10s would dominate the test's runtime.
	first.vault(t, "operator", "raft", "autopilot", "set-config", "-server-stabilization-time=1s")

	for _, node := range c.nodes[1:] {
		node.vaultAs(t, "", "", "operator", "raft", "join", first.addr)
		node.unsealMember(t, c.unsealKey)
	}
	c.waitVoters(t, c.ids())
	return c
}

// launch starts the node's server and waits until its API answers. On the
// first start it picks free ports, and tries others if they were taken
// meanwhile; on a restart it reuses them.
func (n *raftNode) launch(t *testing.T) {
	t.Helper()
	logPath := filepath.Join(n.dir, n.id+".log")
	for attempt := 1; ; attempt++ {
		fresh := n.port == 0
		if fresh {
			n.port = stablePortPair(t)
		}
		storage := fmt.Sprintf("storage \"raft\" {\n  path = %q\n  node_id = %q\n  performance_multiplier = 1\n}\n",
			filepath.Join(n.dir, n.id+"-raft"), n.id)
		writeFile(t, n.config, serverConfig(storage, n.port, n.pluginDir))

		logStart := fileSize(logPath)
		p, err := startProcess("vault "+n.id, logPath, n.dir, []string{"HOME=" + filepath.Join(n.dir, "home")},
			suite.vaultBin, "server", "-config="+n.config)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.stop)
		n.proc = p
		n.addr = fmt.Sprintf("http://127.0.0.1:%d", n.port)

		client := n.client(t, "")
		err = waitFor(clusterWait, 100*time.Millisecond, p, func() (bool, error) {
			_, err := client.Sys().Health()
			return err == nil, nil
		})
		if err == nil {
			n.logStart = logStart
			return
		}
		p.stop()
		if fresh && attempt < 3 && logContains(logPath, logStart, "address already in use") {
			n.port = 0
			continue
		}
		t.Fatal(p.failure("API did not answer: " + err.Error()))
	}
}

// stablePortPair returns a free loopback port, and the one after it, below
// the kernel's ephemeral range. A port from that range (what freePortPair
// returns) can be taken by any outgoing connection while a node is down,
// and Vault then restarts without its cluster listener.
func stablePortPair(t *testing.T) int {
	t.Helper()
	low := 32768
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if fields := strings.Fields(string(data)); len(fields) == 2 {
			if n, err := strconv.Atoi(fields[0]); err == nil {
				low = n
			}
		}
	}
	const base = 10000
	if low-base < 1000 {
		return freePortPair(t) // no room below the range: take the risk
	}
	for range 100 {
		port := base + rand.IntN(low-base-1)
		l1, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		l1.Close()
		if err == nil {
			l2.Close()
			return port
		}
	}
	t.Fatal("no free pair of loopback ports found below the ephemeral range")
	return 0
}

// crash kills the node's server and its plugin processes at once, as a
// power cut would: no step-down, no seal.
func (n *raftNode) crash() {
	_ = syscall.Kill(-n.proc.cmd.Process.Pid, syscall.SIGKILL)
	<-n.proc.done
}

// fileSize is the size of path, 0 when it does not exist.
func fileSize(path string) int64 {
	info, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return info.Size()
}

// logContains reports whether the part of the log at path after offset
// contains s.
func logContains(path string, offset int64, s string) bool {
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) < offset {
		return false
	}
	return bytes.Contains(data[offset:], []byte(s))
}

// unsealMember unseals n with key and waits until it is unsealed, as the
// active node or as a standby.
func (n *raftNode) unsealMember(t *testing.T, key string) {
	t.Helper()
	client := n.client(t, "")
	if _, err := client.Sys().Unseal(key); err != nil {
		t.Fatal(n.proc.failure("unseal: " + err.Error()))
	}
	err := waitFor(clusterWait, 100*time.Millisecond, n.proc, func() (bool, error) {
		h, err := client.Sys().Health()
		return err == nil && h.Initialized && !h.Sealed, nil
	})
	if err != nil {
		t.Fatal(n.proc.failure("still sealed after the unseal key was given: " + err.Error()))
	}
	// Vault starts its cluster listener on unsealing, and carries on cut
	// off from its peers when it cannot.
	if logContains(n.proc.logPath, n.logStart, "error starting listener") {
		t.Fatal(n.proc.failure(fmt.Sprintf("unsealed without its cluster listener on port %d", n.port+1)))
	}
}

// ids returns the node ids of the cluster.
func (c *raftCluster) ids() []string {
	var ids []string
	for _, n := range c.nodes {
		ids = append(ids, n.id)
	}
	return ids
}

// running returns the nodes whose process runs.
func (c *raftCluster) running() []*raftNode {
	var out []*raftNode
	for _, n := range c.nodes {
		if !n.proc.exited() {
			out = append(out, n)
		}
	}
	return out
}

// waitActive waits until exactly one running node is active and every
// other unsealed node names it as the leader (so that it can forward
// requests to it), and returns the active node.
func (c *raftCluster) waitActive(t *testing.T) *raftNode {
	t.Helper()
	var active *raftNode
	var state string
	err := waitFor(clusterWait, 200*time.Millisecond, nil, func() (bool, error) {
		active = nil
		var standbys []*raftNode
		var seen []string
		for _, n := range c.running() {
			h, err := n.client(t, "").Sys().Health()
			switch {
			case err != nil:
				seen = append(seen, n.id+": "+err.Error())
			case h.Sealed:
				seen = append(seen, n.id+": sealed")
			case h.Standby:
				seen = append(seen, n.id+": standby")
				standbys = append(standbys, n)
			case active != nil:
				state = "two active nodes: " + active.id + " and " + n.id
				return false, nil
			default:
				seen = append(seen, n.id+": active")
				active = n
			}
		}
		state = strings.Join(seen, ", ")
		if active == nil {
			return false, nil
		}
		for _, n := range standbys {
			l, err := n.client(t, "").Sys().Leader()
			if err != nil || l.LeaderAddress != active.addr {
				state += "; " + n.id + " does not know the leader yet"
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("no single active node with standbys following it: %v (%s); logs in %s", err, state, c.nodes[0].dir)
	}
	return active
}

// raftPeer is one server in `vault operator raft list-peers`.
type raftPeer struct {
	NodeID  string `json:"node_id"`
	Address string `json:"address"`
	Leader  bool   `json:"leader"`
	Voter   bool   `json:"voter"`
}

// peers returns the raft configuration as the active node sees it.
func (c *raftCluster) peers(t *testing.T, via *raftNode) []raftPeer {
	t.Helper()
	var out struct {
		Data struct {
			Config struct {
				Servers []raftPeer `json:"servers"`
			} `json:"config"`
		} `json:"data"`
	}
	decode(t, "vault operator raft list-peers", via.vault(t, "operator", "raft", "list-peers", "-format=json"), &out)
	return out.Data.Config.Servers
}

// waitVoters waits until the raft configuration holds exactly the nodes
// ids, all of them voters.
func (c *raftCluster) waitVoters(t *testing.T, ids []string) {
	t.Helper()
	active := c.waitActive(t)
	var got []raftPeer
	err := waitFor(clusterWait, 250*time.Millisecond, active.proc, func() (bool, error) {
		got = c.peers(t, active)
		var voters []string
		for _, p := range got {
			if p.Voter {
				voters = append(voters, p.NodeID)
			}
		}
		slices.Sort(voters)
		return len(got) == len(ids) && slices.Equal(voters, ids), nil
	})
	if err != nil {
		t.Fatalf("raft peers are %+v, want the voters %v: %v", got, ids, err)
	}
}

// waitHealthy waits until autopilot on the active node reports every node
// as a healthy voter (or the leader): in contact with the leader and caught
// up with its log.
func (c *raftCluster) waitHealthy(t *testing.T) {
	t.Helper()
	active := c.waitActive(t)
	client := active.client(t, c.token)
	var state string
	err := waitFor(clusterWait, 250*time.Millisecond, active.proc, func() (bool, error) {
		ap, err := client.Sys().RaftAutopilotState()
		if err != nil {
			state = err.Error()
			return false, nil
		}
		var seen []string
		healthy := len(ap.Servers) == len(c.nodes)
		for id, s := range ap.Servers {
			seen = append(seen, fmt.Sprintf("%s: %s, healthy %t", id, s.Status, s.Healthy))
			healthy = healthy && s.Healthy && (s.Status == "voter" || s.Status == "leader")
		}
		slices.Sort(seen)
		state = strings.Join(seen, "; ")
		return healthy, nil
	})
	if err != nil {
		t.Fatalf("autopilot does not report %d healthy voters (%s): %v", len(c.nodes), state, err)
	}
}
