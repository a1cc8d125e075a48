package e2e

import (
	"path/filepath"
	"sync"
	"testing"
)

// devEnv is a Vault dev server with the plugin mounted at piwik/ against a
// stand-in, with the role "reporting".
type devEnv struct {
	vault   *vaultServer
	standin *standin
	version string // of the plugin binary under test
}

// shared is the devEnv that tests which do not disturb it use together; it
// stops after all tests.
var shared struct {
	sync.Mutex
	env    *devEnv
	failed bool
}

// sharedDev returns the shared devEnv, starting it on first use.
func sharedDev(t *testing.T) *devEnv {
	t.Helper()
	requireBinaries(t)
	shared.Lock()
	defer shared.Unlock()
	if shared.env != nil {
		return shared.env
	}
	if shared.failed {
		t.Fatal("the shared dev server failed to start in an earlier test")
	}
	shared.failed = true // until proven otherwise; t.Fatal below skips the rest
	env := newDevEnv(t, filepath.Join(suite.root, "shared"), atSuiteEnd)
	shared.env, shared.failed = env, false
	return env
}

// newDevEnv starts a stand-in and a dev server in dir and mounts the plugin
// at piwik/; keep decides how long they live.
func newDevEnv(t *testing.T, dir string, keep func(func())) *devEnv {
	t.Helper()
	st := startStandin(t, mkdir(t, dir), "standin", keep)
	v := startDevVault(t, dir, "vault", keep)
	v.enableAudit(t)
	version := v.builtVersion(t)
	v.registerPlugin(t, pluginName, version)
	v.mountPiwik(t, "piwik", version, st)
	return &devEnv{vault: v, standin: st, version: version}
}

// enableAudit sends v's audit log to a file that the log scan reads too.
// Vault HMACs the secrets in requests and responses it audits; a secret in
// the clear there came through an error or warning text.
func (v *vaultServer) enableAudit(t *testing.T) {
	t.Helper()
	path := filepath.Join(v.dir, v.name+"-audit.log")
	v.vault(t, "audit", "enable", "file", "file_path="+path)
	rememberLog(path)
	v.auditLog = path
}

// privateMount mounts the plugin at mount on the shared dev server, against
// a stand-in of its own with a "reporting" role, for a test that changes
// the stand-in's behaviour or reads its counters without disturbing other
// tests. The mount is disabled when the test ends.
func (env *devEnv) privateMount(t *testing.T, mount string) *standin {
	t.Helper()
	st := startStandin(t, testDir(t), mount+"-standin", t.Cleanup)
	env.vault.mountPiwik(t, mount, env.version, st)
	t.Cleanup(func() { env.vault.vault(t, "secrets", "disable", mount) })
	return st
}

// mountPrivately is privateMount on the shared dev server: the server, and
// the stand-in of mount.
func mountPrivately(t *testing.T, mount string) (*vaultServer, *standin) {
	t.Helper()
	env := sharedDev(t)
	return env.vault, env.privateMount(t, mount)
}
