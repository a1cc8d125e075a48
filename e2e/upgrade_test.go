package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// upgradeVersion is the version of the plugin build this test upgrades to.
const upgradeVersion = "v0.1.1-e2e"

// TestUpgradePluginVersion upgrades one mount to a newer build of the
// plugin in place, the way an operator does: register the new version,
// tune the mount to it, reload. Leases taken before must stay revocable,
// config and roles must carry over, and other mounts must stay on their
// version.
func TestUpgradePluginVersion(t *testing.T) {
	env := sharedDev(t)
	v, st := env.vault, env.standin
	const mount = "piwik-upgrade"
	v.mountPiwik(t, mount, env.version, st)
	before := v.readCreds(t, v.token, mount+"/creds/reporting")

	command := pluginName + "_" + upgradeVersion // the release file name
	copyBinary(t, upgradeBinary(t), v.pluginDir, command)
	v.registerPlugin(t, command, upgradeVersion)
	v.vault(t, "secrets", "tune", "-plugin-version="+upgradeVersion, mount+"/")
	v.vault(t, "plugin", "reload", "-type=secret", "-plugin="+pluginName, "-scope=global")

	err := waitFor(30*time.Second, 200*time.Millisecond, v.proc, func() (bool, error) {
		return v.mounts(t)[mount+"/"].RunningPluginVersion == upgradeVersion, nil
	})
	if err != nil {
		t.Fatalf("%s/ does not run %s after the reload: %v; mounts: %+v", mount, upgradeVersion, err, v.mounts(t))
	}
	mounts := v.mounts(t)
	if got := mounts[mount+"/"].PluginVersion; got != upgradeVersion {
		t.Errorf("%s/ plugin_version = %q, want %q", mount, got, upgradeVersion)
	}
	if got := mounts["piwik/"].RunningPluginVersion; got != env.version {
		t.Errorf("piwik/ running_plugin_version = %q, want it left at %q", got, env.version)
	}

	after := v.readCreds(t, v.token, mount+"/creds/reporting")
	st.requireTokenWorks(t, "token read after the upgrade", after.accessToken)
	v.vault(t, "read", mount+"/roles/reporting")
	v.vault(t, "lease", "revoke", before.leaseID)
	if r := v.run(t, v.token, "", "lease", "lookup", before.leaseID); r.exitCode == 0 {
		t.Error("the lease from before the upgrade survived vault lease revoke")
	}
	v.vault(t, "lease", "revoke", after.leaseID)
}

// upgraded holds the plugin built as upgradeVersion, built once for the
// tests that upgrade to it.
var upgraded struct {
	sync.Mutex
	path string
}

// upgradeBinary returns the path of the plugin built as upgradeVersion,
// building it on first use.
func upgradeBinary(t *testing.T) string {
	t.Helper()
	upgraded.Lock()
	defer upgraded.Unlock()
	if upgraded.path == "" {
		path := filepath.Join(mkdir(t, filepath.Join(suite.root, "build")), pluginName+"-"+upgradeVersion)
		buildPlugin(t, path, upgradeVersion)
		upgraded.path = path
	}
	return upgraded.path
}

// buildPlugin builds the plugin from this repo into out, stamped with
// version.
func buildPlugin(t *testing.T, out, version string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-s -w -X "+module+".Version="+version,
		"-o", out, "./cmd/"+pluginName)
	cmd.Dir = filepath.Join(examplesDir(t), "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if output, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", version, err, output)
	}
	t.Logf("built the plugin as %s in %s", version, time.Since(start).Round(time.Second))
}
