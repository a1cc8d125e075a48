package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/harness"
)

// vaultServer is a running Vault server and what the CLI needs to talk to
// it.
type vaultServer struct {
	name      string
	addr      string // http://127.0.0.1:PORT
	token     string // root token
	dir       string
	pluginDir string
	proc      *process
	// auditLog is the file of the audit device at file/, once enabled.
	auditLog string
}

// startDevVault starts `vault server -dev` with the plugin binary copied
// into its plugin directory; keep decides how long it lives.
func startDevVault(t *testing.T, dir, name string, keep func(func())) *vaultServer {
	t.Helper()
	hv, err := lab.StartDev(harness.DevSpec{Dir: dir, Name: name, Plugins: map[string]string{pluginName: suite.pluginBin}, LogLevel: "debug"})
	if err != nil {
		t.Fatal(redact(err.Error()))
	}
	keep(hv.Proc.Stop)
	return &vaultServer{name: name, addr: hv.Addr, token: hv.Token, dir: dir, pluginDir: hv.PluginDir, proc: wrapProcess(hv.Proc)}
}

// startWithRetry picks ports, runs the server with args(port) and waits
// until its API answers; it tries again on other ports when the chosen
// ones were taken meanwhile.
func startWithRetry(t *testing.T, v *vaultServer, keep func(func()), args func(port int) []string, env []string) {
	t.Helper()
	hv := &harness.Vault{Name: v.name, Dir: v.dir, PluginDir: v.pluginDir}
	err := lab.Launch(hv, harness.LaunchSpec{Env: env, Args: func(port int) ([]string, error) { return args(port), nil }})
	if hv.Proc != nil {
		keep(hv.Proc.Stop)
		v.proc = wrapProcess(hv.Proc)
	}
	if err != nil {
		t.Fatal(redact(err.Error()))
	}
	v.addr = hv.Addr
}

// client returns an API client for v that uses token.
func (v *vaultServer) client(t *testing.T, token string) *api.Client {
	t.Helper()
	c, err := harness.NewClient(v.addr, token, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitActive waits until v is initialized, unsealed and active.
func (v *vaultServer) waitActive(t *testing.T) {
	t.Helper()
	hv := &harness.Vault{Addr: v.addr, Proc: v.proc.Process}
	if err := hv.WaitActive(); err != nil {
		t.Fatal(redact(err.Error()))
	}
}

// cliResult is the outcome of one vault CLI run.
type cliResult struct {
	stdout, stderr string
	exitCode       int
}

// run runs the vault CLI against v with token (none when empty) and stdin,
// and returns what it printed. It fails t only when the CLI could not run.
func (v *vaultServer) run(t *testing.T, token, stdin string, args ...string) cliResult {
	t.Helper()
	r, err := lab.CLI(v.addr, v.dir, token, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return cliResult{stdout: r.Stdout, stderr: r.Stderr, exitCode: r.ExitCode}
}

// vault runs the vault CLI as root and returns its output; it fails t when
// the command fails.
func (v *vaultServer) vault(t *testing.T, args ...string) string {
	t.Helper()
	return v.vaultAs(t, v.token, "", args...)
}

// vaultAs runs the vault CLI with token and stdin; it fails t when the
// command fails.
func (v *vaultServer) vaultAs(t *testing.T, token, stdin string, args ...string) string {
	t.Helper()
	r := v.run(t, token, stdin, args...)
	if r.exitCode != 0 {
		t.Fatalf("vault %s: exit %d:\n%s%s\n(server log: %s)",
			redact(strings.Join(args, " ")), r.exitCode, redact(r.stdout), redact(r.stderr), v.proc.logPath)
	}
	return r.stdout
}

// decode unmarshals the JSON output of a CLI command into out.
func decode(t *testing.T, what, output string, out any) {
	t.Helper()
	if err := json.Unmarshal([]byte(output), out); err != nil {
		t.Fatalf("%s: output is not the expected JSON: %v\n%s", what, err, redact(output))
	}
}

// readSecret runs `vault read -format=json path` with token and returns
// the secret.
func (v *vaultServer) readSecret(t *testing.T, token, path string) *api.Secret {
	t.Helper()
	var s api.Secret
	decode(t, "vault read "+path, v.vaultAs(t, token, "", "read", "-format=json", path), &s)
	return &s
}

// creds is what piwik/creds/<role> returns, with its lease.
type creds struct {
	requestID     string
	leaseID       string
	leaseDuration int
	renewable     bool
	accessToken   string
	data          map[string]any
}

// readCreds reads a token from path (e.g. "piwik/creds/reporting") as
// token and remembers it for the log scan.
func (v *vaultServer) readCreds(t *testing.T, token, path string) creds {
	t.Helper()
	s := v.readSecret(t, token, path)
	access, _ := s.Data["access_token"].(string)
	if access == "" {
		t.Fatalf("vault read %s: no access_token in data (keys: %v)", path, keys(s.Data))
	}
	rememberSecret(t, "access token read from "+path+" in "+t.Name(), access)
	return creds{
		requestID:     s.RequestID,
		leaseID:       s.LeaseID,
		leaseDuration: s.LeaseDuration,
		renewable:     s.Renewable,
		accessToken:   access,
		data:          s.Data,
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// requireDenied fails t unless running args with token was refused by
// Vault's ACL.
func (v *vaultServer) requireDenied(t *testing.T, token string, args ...string) {
	t.Helper()
	r := v.run(t, token, "", args...)
	if r.exitCode == 0 || !strings.Contains(r.stderr, "permission denied") || !strings.Contains(r.stderr, "403") {
		t.Errorf("vault %s: want 403 permission denied, got exit %d:\n%s%s",
			strings.Join(args, " "), r.exitCode, redact(r.stdout), redact(r.stderr))
	}
}

// pluginVersion returns the version PLUGIN_BINARY was built with: from
// PLUGIN_VERSION, or else what the binary reports to Vault when it is
// registered without a version (Vault then records the reported one).
var pluginVersion struct {
	sync.Mutex
	version string
}

func (v *vaultServer) builtVersion(t *testing.T) string {
	t.Helper()
	pluginVersion.Lock()
	defer pluginVersion.Unlock()
	if pluginVersion.version != "" {
		return pluginVersion.version
	}
	if env := os.Getenv("PLUGIN_VERSION"); env != "" {
		pluginVersion.version = env
		return env
	}
	sha := fileSHA256(t, filepath.Join(v.pluginDir, pluginName))
	v.vault(t, "plugin", "register", "-sha256="+sha, "secret", pluginName)
	version := v.catalogVersion(t, pluginName)
	if version == "" {
		t.Fatalf("the plugin registered without a version reported none; set PLUGIN_VERSION")
	}
	pluginVersion.version = version
	return version
}

// catalogVersion returns the version of the external secrets plugin name
// in v's catalog, "" if it has none. After a registration without
// -version, it is the version the binary reported to Vault.
func (v *vaultServer) catalogVersion(t *testing.T, name string) string {
	t.Helper()
	var plugins struct {
		Details []struct {
			Name    string `json:"name"`
			Type    string `json:"type"`
			Version string `json:"version"`
			Builtin bool   `json:"builtin"`
		} `json:"detailed"`
	}
	out := v.vault(t, "read", "-format=json", "sys/plugins/catalog")
	var wrapper struct {
		Data json.RawMessage `json:"data"`
	}
	decode(t, "sys/plugins/catalog", out, &wrapper)
	decode(t, "sys/plugins/catalog data", string(wrapper.Data), &plugins)
	for _, p := range plugins.Details {
		if p.Name == name && p.Type == "secret" && !p.Builtin && p.Version != "" {
			return p.Version
		}
	}
	return ""
}

// registerPlugin registers the binary command (a file in v's plugin
// directory) as version of the plugin, by its checksum.
func (v *vaultServer) registerPlugin(t *testing.T, command, version string) {
	t.Helper()
	sha := fileSHA256(t, filepath.Join(v.pluginDir, command))
	v.vault(t, "plugin", "register", "-sha256="+sha, "-version="+version, "-command="+command, "secret", pluginName)
}

// mountPiwik enables the plugin at path (no slashes) in version, points it
// at s and writes the "reporting" role with ttl=0.
func (v *vaultServer) mountPiwik(t *testing.T, path, version string, s *standin) {
	t.Helper()
	v.vault(t, "secrets", "enable", "-path="+path, "-plugin-version="+version, pluginName)
	v.configure(t, path, s)
	v.vault(t, "write", path+"/roles/reporting", "ttl=0")
}

// configure writes path/config for stand-in s. The client secret goes in
// on stdin, never in the command line.
func (v *vaultServer) configure(t *testing.T, path string, s *standin) {
	t.Helper()
	body, err := json.Marshal(map[string]string{
		"url":           s.url,
		"client_id":     s.clientID,
		"client_secret": s.clientSecret,
	})
	if err != nil {
		t.Fatal(err)
	}
	v.vaultAs(t, v.token, string(body), "write", path+"/config", "-")
}

// mountInfo is the part of `vault secrets list -detailed` the tests read.
type mountInfo struct {
	Type                 string `json:"type"`
	PluginVersion        string `json:"plugin_version"`
	RunningPluginVersion string `json:"running_plugin_version"`
}

// mounts returns the secrets engines of v by path ("piwik/").
func (v *vaultServer) mounts(t *testing.T) map[string]mountInfo {
	t.Helper()
	out := v.vault(t, "secrets", "list", "-detailed", "-format=json")
	var m map[string]mountInfo
	decode(t, "vault secrets list", out, &m)
	return m
}

// serverConfig is the HCL of a non-dev server on loopback around storage,
// its storage block: the API listens on port and the cluster on port+1.
func serverConfig(storage string, port int, pluginDir string) string {
	return harness.ServerConfig(storage, port, pluginDir, "debug")
}
