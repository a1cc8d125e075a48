package e2e

import (
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
	// The secret cut short and split in two across a line: each part holds
	// 12 of its characters.
	partial := filepath.Join(dir, "partial.log")
	if err := os.WriteFile(partial, []byte("a\nb\nc\nclient_secret 'another-secret-4' is malformed: another-sec\nret-456789...\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(clean, []byte("nothing to see here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"s3cr3t-value-123": "client secret", "another-secret-456789": "second secret", "eyJ.not.present": "access token"}

	findings, scanned, err := scanFiles([]string{leaky, clean, partial}, labels)
	if err != nil {
		t.Fatal(err)
	}
	if len(findings) != 2 || !strings.Contains(findings[0], "leaky.log line 2 contains 12 characters of a client secret") ||
		!strings.Contains(findings[1], "partial.log line 4 contains 12 characters of a second secret") {
		t.Fatalf("findings = %q, want a hit in leaky.log line 2 and one in partial.log line 4", findings)
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
