package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/harness"
)

// lab starts the suite's processes; see internal/harness.
var lab *harness.Lab

// suite is what every test shares: the binaries under test and the
// directory that holds every test's files until the log scan has run.
var suite struct {
	vaultBin   string
	pluginBin  string
	standinBin string
	// missing names the unset binary variables; the tests skip (or, in
	// CI, fail) when it is not empty.
	missing []string
	root    string
}

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	for _, v := range []struct {
		env    string
		target *string
	}{
		{"VAULT_BINARY", &suite.vaultBin},
		{"PLUGIN_BINARY", &suite.pluginBin},
		{"STANDIN_BINARY", &suite.standinBin},
	} {
		path := os.Getenv(v.env)
		if path == "" {
			suite.missing = append(suite.missing, v.env)
			continue
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %s: %v\n", v.env, err)
			return 1
		}
		*v.target = abs
	}

	lab = &harness.Lab{VaultBin: suite.vaultBin, StandinBin: suite.standinBin, BaseEnv: harness.CleanEnv(), Secrets: &watch}

	root, err := os.MkdirTemp("", "piwik-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	suite.root = root

	code := m.Run()

	// The shared servers stop first, so that their logs are complete
	// before they are scanned.
	runSuiteCleanups()
	if !scanLogs() {
		code = 1
	}
	entries, _ := os.ReadDir(root)
	if len(entries) == 0 || code == 0 && os.Getenv("E2E_KEEP") == "" {
		os.RemoveAll(root)
	} else {
		fmt.Printf("e2e: test files and logs kept in %s\n", root)
	}
	return code
}

// requireBinaries skips t when the binaries under test were not given, or
// fails it when CI=true, so that CI cannot pass by skipping everything.
func requireBinaries(t *testing.T) {
	t.Helper()
	if len(suite.missing) == 0 {
		return
	}
	msg := strings.Join(suite.missing, ", ") + " not set; run `make e2e`"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: refusing to skip)")
	}
	t.Skip(msg)
}

// testDir returns a directory for t's files under the suite root. Unlike
// t.TempDir it outlives t, so the logs in it can be scanned at the end.
func testDir(t *testing.T) string {
	t.Helper()
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_")
	dir := filepath.Join(suite.root, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// suiteCleanups run when all tests are done, last registered first. They
// stop what tests share.
var suiteCleanups struct {
	sync.Mutex
	funcs []func()
}

// atSuiteEnd registers f to run after all tests; it has the signature of
// t.Cleanup so that helpers can be told which lifetime to give a process.
func atSuiteEnd(f func()) {
	suiteCleanups.Lock()
	defer suiteCleanups.Unlock()
	suiteCleanups.funcs = append(suiteCleanups.funcs, f)
}

func runSuiteCleanups() {
	suiteCleanups.Lock()
	funcs := suiteCleanups.funcs
	suiteCleanups.funcs = nil
	suiteCleanups.Unlock()
	for i := len(funcs) - 1; i >= 0; i-- {
		funcs[i]()
	}
}

// watch holds every Piwik PRO client secret the suite made up and every
// access token (and other credential) it saw, so that the log scan can
// look for them and test output can be scrubbed of them, and every file a
// process of the suite wrote its output to.
var watch harness.Secrets

// rememberSecret records value as a secret described by label. Values too
// short to search for meaningfully are refused.
func rememberSecret(t *testing.T, label, value string) {
	t.Helper()
	if err := watch.Remember(label, value); err != nil {
		t.Fatal(err)
	}
}

// redact replaces every remembered secret in s, for output that is about
// to be printed.
func redact(s string) string {
	return watch.Redact(s)
}

// rememberLog adds path to the files the log scan reads.
func rememberLog(path string) {
	watch.AddLog(path)
}

// scanLogs reports whether no log file holds a remembered secret. It names
// the file and the kind of secret, never the secret.
func scanLogs() bool {
	if len(watch.Logs()) == 0 {
		return true
	}
	r, err := watch.Scan()
	for _, f := range r.Findings {
		fmt.Printf("e2e: log scan: FAIL: %s\n", f)
	}
	if err != nil {
		fmt.Printf("e2e: log scan: %v\n", err)
	}
	clean := len(r.Findings) == 0 && err == nil
	fmt.Printf("e2e: log scan: %d log files (%d KiB) checked for %d secrets and tokens: %s\n",
		r.Files, r.Bytes>>10, r.Secrets, map[bool]string{true: "clean", false: "LEAKS FOUND"}[clean])
	return clean
}

// mkdir creates dir (and its parents) and returns it.
func mkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}
