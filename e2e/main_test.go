package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

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

// secrets holds every Piwik PRO client secret the suite made up and every
// access token (and other credential) it saw, so that the log scan can
// look for them and so that test output can be scrubbed of them.
var secrets struct {
	sync.Mutex
	labels map[string]string // value -> what it is
}

// rememberSecret records value as a secret described by label. Values too
// short to search for meaningfully are refused.
func rememberSecret(t *testing.T, label, value string) {
	t.Helper()
	if len(value) < 12 {
		t.Fatalf("%s: implausibly short secret (%d bytes)", label, len(value))
	}
	secrets.Lock()
	defer secrets.Unlock()
	if secrets.labels == nil {
		secrets.labels = make(map[string]string)
	}
	if _, ok := secrets.labels[value]; !ok {
		secrets.labels[value] = label
	}
	// The signature of a JWT is unique to it too: a log line that printed
	// a token cut short would still carry it.
	if parts := strings.Split(value, "."); len(parts) == 3 && len(parts[2]) >= 16 {
		if _, ok := secrets.labels[parts[2]]; !ok {
			secrets.labels[parts[2]] = label + " (JWT signature)"
		}
	}
}

// redact replaces every remembered secret in s, for output that is about
// to be printed.
func redact(s string) string {
	secrets.Lock()
	defer secrets.Unlock()
	for value, label := range secrets.labels {
		s = strings.ReplaceAll(s, value, "[REDACTED "+label+"]")
	}
	return s
}

// logFiles lists every file a process of the suite wrote its output to.
var logFiles struct {
	sync.Mutex
	paths []string
}

func rememberLog(path string) {
	logFiles.Lock()
	defer logFiles.Unlock()
	if !slices.Contains(logFiles.paths, path) { // a restarted process reuses its log
		logFiles.paths = append(logFiles.paths, path)
	}
}

// scanLogs reports whether no log file holds a remembered secret. It names
// the file and the kind of secret, never the secret.
func scanLogs() bool {
	logFiles.Lock()
	paths := append([]string(nil), logFiles.paths...)
	logFiles.Unlock()
	secrets.Lock()
	labels := make(map[string]string, len(secrets.labels))
	for v, l := range secrets.labels {
		labels[v] = l
	}
	secrets.Unlock()
	if len(paths) == 0 {
		return true
	}

	findings, scanned, err := scanFiles(paths, labels)
	for _, f := range findings {
		fmt.Printf("e2e: log scan: FAIL: %s\n", f)
	}
	if err != nil {
		fmt.Printf("e2e: log scan: %v\n", err)
	}
	clean := len(findings) == 0 && err == nil
	fmt.Printf("e2e: log scan: %d log files (%d KiB) checked for %d secrets and tokens: %s\n",
		len(paths), scanned>>10, len(labels), map[bool]string{true: "clean", false: "LEAKS FOUND"}[clean])
	return clean
}

// scanWindow is how many consecutive characters of a remembered secret
// count as a leak in the log scan: a secret cut short, or split in two,
// still shows.
const scanWindow = 12

// scanFiles looks for every run of scanWindow characters of every key of
// labels in every file of paths and describes each hit by file, line and
// label. A JWT is looked for by its signature (remembered on its own),
// since its header and claims are shared by every token. It also returns
// how many bytes it read.
func scanFiles(paths []string, labels map[string]string) (findings []string, scanned int64, err error) {
	windows := map[string]string{}
	for v, label := range labels {
		if strings.Count(v, ".") == 2 || len(v) < scanWindow {
			continue
		}
		for i := 0; i+scanWindow <= len(v); i++ {
			windows[v[i:i+scanWindow]] = label
		}
	}
	for _, path := range paths {
		data, readErr := os.ReadFile(path)
		if readErr != nil {
			err = errors.Join(err, readErr)
			continue
		}
		scanned += int64(len(data))
		reported := map[string]bool{}
		for i := 0; i+scanWindow <= len(data); i++ {
			label, hit := windows[string(data[i:i+scanWindow])]
			if !hit || reported[label] {
				continue
			}
			reported[label] = true
			line := bytes.Count(data[:i], []byte("\n")) + 1
			findings = append(findings, fmt.Sprintf("%s line %d contains %d characters of a %s", path, line, scanWindow, label))
		}
	}
	sort.Strings(findings)
	return findings, scanned, err
}

// mkdir creates dir (and its parents) and returns it.
func mkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}
