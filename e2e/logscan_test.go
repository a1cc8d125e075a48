package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestScanFilesFindsSecrets checks the log scanner itself, so that a clean
// scan at the end of the suite means something. It needs no binaries.
func TestScanFilesFindsSecrets(t *testing.T) {
	dir := t.TempDir()
	leaky := filepath.Join(dir, "leaky.log")
	clean := filepath.Join(dir, "clean.log")
	if err := os.WriteFile(leaky, []byte("line one\nrequest failed: body client_secret=s3cr3t-value-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(clean, []byte("nothing to see here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"s3cr3t-value-123": "client secret", "eyJ.not.present": "access token"}

	findings, scanned, err := scanFiles([]string{leaky, clean}, labels)
	if err != nil {
		t.Fatal(err)
	}
	if len(findings) != 1 || !strings.Contains(findings[0], "leaky.log line 2 contains a client secret") {
		t.Fatalf("findings = %q, want one hit in leaky.log line 2", findings)
	}
	if strings.Contains(findings[0], "s3cr3t") {
		t.Error("the finding prints the secret it found")
	}
	if scanned == 0 {
		t.Error("scanned no bytes")
	}
	if _, _, err := scanFiles([]string{filepath.Join(dir, "missing.log")}, labels); err == nil {
		t.Error("a log file that cannot be read is not reported")
	}
}

// TestScanFilesManySecrets checks the scanner with as many secrets as the
// soak test remembers, some sharing a prefix or a suffix, one too short to
// index.
func TestScanFilesManySecrets(t *testing.T) {
	labels := make(map[string]string)
	for i := range 20000 {
		labels[fmt.Sprintf("eyJhbGciOiJSUzI1NiJ9.payload-%06d.sig", i)] = "access token"
	}
	labels["another.payload-012345.sig"] = "token with the same end"
	labels["short-secret"] = "client secret" // exactly the index key's length
	labels["tiny"] = "test value"            // shorter: searched for on its own
	log := "start\nnothing\nBearer eyJhbGciOiJSUzI1NiJ9.payload-012345.sig leaked\n" +
		"eyJhbGciOiJSUzI1NiJ9.payload-01234 (cut short, not a hit)\nshort-secret and tiny\n" +
		"Bearer eyJhbGciOiJSUzI1NiJ9.payload-012345.sig again\n"
	path := filepath.Join(t.TempDir(), "many.log")
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	findings, _, err := scanFiles([]string{path}, labels)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		path + " line 3 contains a access token",
		path + " line 5 contains a client secret",
		path + " line 5 contains a test value",
	}
	if strings.Join(findings, "\n") != strings.Join(want, "\n") {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(findings, "\n"), strings.Join(want, "\n"))
	}
}
