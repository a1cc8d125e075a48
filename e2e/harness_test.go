package e2e

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/harness"
	standinpkg "github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

// The suite's names for what internal/harness does: each fails the test
// where the harness returns an error.

// process is a long-running child (Vault server, Agent, stand-in) with its
// output going to a log file, in a process group of its own.
type process struct {
	*harness.Process
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	exitErr error         // valid once done is closed
}

func wrapProcess(p *harness.Process) *process {
	w := &process{Process: p, name: p.Name, logPath: p.LogPath, cmd: p.Cmd, done: make(chan struct{})}
	go func() {
		<-p.Done()
		w.exitErr = p.Err()
		close(w.done)
	}()
	return w
}

// startProcess starts bin with args in dir, its output appended to
// logPath, with env added to a copy of this process's environment from
// which every VAULT_* variable was removed.
func startProcess(name, logPath, dir string, env []string, bin string, args ...string) (*process, error) {
	p, err := lab.Start(harness.Spec{Name: name, Bin: bin, Args: args, Dir: dir, Env: env, LogPath: logPath})
	if err != nil {
		return nil, err
	}
	return wrapProcess(p), nil
}

// baseEnv is this process's environment without VAULT_* variables and
// without the Piwik PRO account of the acceptance test.
func baseEnv() []string { return harness.CleanEnv() }

// stop ends the process group: SIGTERM, then SIGKILL after a grace period.
func (p *process) stop() {
	p.Stop()
	<-p.done
}

// failure describes why the process is not usable, with its log's end.
func (p *process) failure(what string) string { return p.Failure(what).Error() }

// waitFor calls check every interval until it returns true, an error, or
// timeout passes. When p is not nil and exits, waiting stops early.
func waitFor(timeout, interval time.Duration, p *process, check func() (bool, error)) error {
	var hp *harness.Process
	if p != nil {
		hp = p.Process
	}
	return harness.WaitFor(timeout, interval, hp, check)
}

// freePortPair returns a loopback port that is free along with the port
// after it, for a Vault listener and its cluster listener.
func freePortPair(t *testing.T) int {
	t.Helper()
	port, err := harness.FreePortPair()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// fileSize is the size of path, 0 when it does not exist.
func fileSize(path string) int64 { return harness.FileSize(path) }

// copyPlugin copies the plugin binary under test into dir as name.
func copyPlugin(t *testing.T, dir, name string) {
	t.Helper()
	copyBinary(t, suite.pluginBin, dir, name)
}

// copyBinary copies the executable src into dir as name.
func copyBinary(t *testing.T, src, dir, name string) {
	t.Helper()
	if err := harness.CopyFile(src, dir, name, 0o755); err != nil {
		t.Fatal(err)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	sum, err := harness.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// randomString returns n random URL-safe characters.
func randomString(t *testing.T, n int) string {
	t.Helper()
	return harness.RandomString(n)
}

// jwtClaims returns the claims of a JWT, read without verifying it.
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a JWT (%d parts)", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	return claims
}

// jwtExpiry returns the exp claim of a JWT, read without verifying it.
func jwtExpiry(t *testing.T, token string) time.Time {
	t.Helper()
	exp, _ := jwtClaims(t, token)["exp"].(float64)
	if exp == 0 {
		t.Fatal("JWT payload has no exp claim")
	}
	return time.Unix(int64(exp), 0)
}

// httpClient is for requests a test sends itself.
var httpClient = &http.Client{Timeout: 10 * time.Second}

// standin is a running Piwik PRO stand-in with one API credential.
type standin struct {
	url          string // base URL, http://127.0.0.1:PORT
	clientID     string
	clientSecret string
	proc         *process
}

// What the stand-in reports (GET /_standin/stats, clients, schedule and
// issued), in the stand-in's own types.
type (
	standinCounters = standinpkg.Stats
	standinClients  = standinpkg.ClientsReport
	scheduleReport  = standinpkg.ScheduleReport
	phaseRun        = standinpkg.PhaseReport
	issuedToken     = standinpkg.IssuedToken
	// phaseSpec is one phase of a fault schedule, as POST
	// /_standin/schedule takes it.
	phaseSpec = harness.Phase
	// tokenResponse is the stand-in's (and Piwik PRO's) /auth/token answer.
	tokenResponse = harness.TokenResponse
)

// startStandin starts a stand-in with a fresh credential; keep decides how
// long it lives (t.Cleanup or atSuiteEnd). Its files go in dir.
func startStandin(t *testing.T, dir, name string, keep func(func())) *standin {
	t.Helper()
	s, err := lab.StartStandin(harness.StandinSpec{Dir: dir, Name: name})
	if err != nil {
		t.Fatal(redact(err.Error()))
	}
	keep(s.Proc.Stop)
	return &standin{url: s.URL, clientID: s.ClientID, clientSecret: s.ClientSecret, proc: wrapProcess(s.Proc)}
}

// api is the harness's client of s.
func (s *standin) api() *harness.Standin {
	return &harness.Standin{URL: s.url, ClientID: s.clientID, ClientSecret: s.clientSecret}
}

// must fails t with err's text, secrets redacted, unless err is nil.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(redact(err.Error()))
	}
}

// control posts body to one of the stand-in's /_standin/ endpoints.
func (s *standin) control(t *testing.T, endpoint string, body any) {
	t.Helper()
	must(t, s.api().Control(endpoint, body))
}

// setLifetime makes the stand-in issue tokens valid for seconds.
func (s *standin) setLifetime(t *testing.T, seconds int) {
	t.Helper()
	must(t, s.api().SetLifetime(time.Duration(seconds)*time.Second))
}

// schedule starts a fault schedule on the stand-in.
func (s *standin) schedule(t *testing.T, phases []phaseSpec, repeat bool) {
	t.Helper()
	must(t, s.api().Schedule(phases, repeat))
}

// addCredential makes the stand-in accept another credential, with a fresh
// secret it returns (and remembers for the log scan).
func (s *standin) addCredential(t *testing.T, clientID string) string {
	t.Helper()
	secret := randomString(t, 32)
	rememberSecret(t, "client secret of "+clientID, secret)
	must(t, s.api().AddCredential(clientID, secret))
	return secret
}

// me calls GET /api/users/v2/me with token and returns the status code.
func (s *standin) me(t *testing.T, token string) int {
	t.Helper()
	return read(t, func() (int, error) { return s.api().Me(token) })
}

// requireTokenWorks fails t unless the stand-in accepts token.
func (s *standin) requireTokenWorks(t *testing.T, what, token string) {
	t.Helper()
	if code := s.me(t, token); code != http.StatusOK {
		t.Fatalf("%s: GET /api/users/v2/me answered %d, want 200", what, code)
	}
}

// mintDirectly asks the stand-in for a token without Vault, to learn what
// the stand-in currently issues.
func (s *standin) mintDirectly(t *testing.T) tokenResponse {
	t.Helper()
	tr := read(t, s.api().Mint)
	rememberSecret(t, "access token minted directly by "+t.Name(), tr.AccessToken)
	return tr
}

// read returns what get reads, and fails t when it cannot.
func read[T any](t *testing.T, get func() (T, error)) T {
	t.Helper()
	v, err := get()
	must(t, err)
	return v
}

// stats reads the stand-in's counters.
func (s *standin) stats(t *testing.T) standinCounters {
	t.Helper()
	return read(t, s.api().Stats)
}

// clients reads the stand-in's records of every client id.
func (s *standin) clients(t *testing.T) standinClients {
	t.Helper()
	return read(t, s.api().Clients)
}

// scheduleReport reads the stand-in's phase runs so far.
func (s *standin) scheduleReport(t *testing.T) scheduleReport {
	t.Helper()
	return read(t, s.api().ScheduleReport)
}

// issued reads when the stand-in sent each token to clientID.
func (s *standin) issued(t *testing.T, clientID string) []issuedToken {
	t.Helper()
	return read(t, func() ([]issuedToken, error) { return s.api().Issued(clientID) })
}

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
	h        *harness.Node
}

// raftCluster is a Vault HA cluster, unsealed with a single key share. Each
// node has a plugin directory of its own, as separate hosts would.
type raftCluster struct {
	nodes     []*raftNode
	unsealKey string
	token     string // root token
	h         *harness.Cluster
}

// clusterWait bounds every wait for the cluster: a start, an election, a
// node catching up.
const clusterWait = 60 * time.Second

// startRaftCluster starts n servers in dir, initialises and unseals the
// first, joins the others to it, and waits until all n are voters. The
// servers stop when t ends.
func startRaftCluster(t *testing.T, dir string, n int) *raftCluster {
	t.Helper()
	hc, err := lab.StartCluster(harness.ClusterSpec{
		Dir: dir, Size: n, Plugins: map[string]string{pluginName: suite.pluginBin},
		LogLevel: "debug", PerformanceMultiplier: 1,
	})
	t.Cleanup(hc.Stop)
	must(t, err)
	c := &raftCluster{unsealKey: hc.UnsealKey, token: hc.Token, h: hc}
	for _, hn := range hc.Nodes {
		node := &raftNode{
			vaultServer: &vaultServer{name: hn.ID, dir: hn.Dir, pluginDir: hn.PluginDir, token: hc.Token},
			id:          hn.ID,
			config:      hn.Config,
			h:           hn,
		}
		node.sync()
		c.nodes = append(c.nodes, node)
	}
	return c
}

// sync copies what a (re)start of the node's server changed.
func (n *raftNode) sync() {
	n.addr, n.port, n.logStart = n.h.Addr, n.h.Port, n.h.LogStart
	if n.proc == nil || n.proc.Process != n.h.Proc {
		n.proc = wrapProcess(n.h.Proc)
	}
}

// launch restarts the node's server at its address and waits until its
// API answers; it comes back sealed.
func (n *raftNode) launch(t *testing.T) {
	t.Helper()
	err := n.h.Launch()
	if n.h.Proc != nil {
		t.Cleanup(n.h.Proc.Stop)
		n.sync()
	}
	must(t, err)
}

// crash kills the node's server and its plugin processes at once, as a
// power cut would: no step-down, no seal.
func (n *raftNode) crash() {
	n.h.Crash()
	<-n.proc.done
}

// unsealMember unseals n with key and waits until it is unsealed, as the
// active node or as a standby.
func (n *raftNode) unsealMember(t *testing.T, key string) {
	t.Helper()
	must(t, n.h.Unseal(key))
}

// ids returns the node ids of the cluster.
func (c *raftCluster) ids() []string { return c.h.IDs() }

// running returns the nodes whose process runs.
func (c *raftCluster) running() []*raftNode {
	var out []*raftNode
	for _, hn := range c.h.Running() {
		out = append(out, c.node(hn))
	}
	return out
}

// node returns the raftNode of a harness node.
func (c *raftCluster) node(hn *harness.Node) *raftNode {
	for _, n := range c.nodes {
		if n.h == hn {
			return n
		}
	}
	return nil
}

// waitActive waits until exactly one running node is active and every
// other unsealed node names it as the leader (so that it can forward
// requests to it), and returns the active node.
func (c *raftCluster) waitActive(t *testing.T) *raftNode {
	t.Helper()
	active, err := c.h.WaitActive()
	must(t, err)
	return c.node(active)
}

// waitVoters waits until the raft configuration holds exactly the nodes
// ids, all of them voters.
func (c *raftCluster) waitVoters(t *testing.T, ids []string) {
	t.Helper()
	must(t, c.h.WaitVoters(ids))
}

// waitHealthy waits until autopilot on the active node reports every node
// as a healthy voter (or the leader): in contact with the leader and caught
// up with its log.
func (c *raftCluster) waitHealthy(t *testing.T) {
	t.Helper()
	must(t, c.h.WaitHealthy())
}
