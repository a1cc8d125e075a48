package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestScanFilesFindsSecrets checks the log scanner itself, so that a clean
// scan at the end of the e2e suite means something.
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

	r, err := ScanFiles([]string{leaky, clean, partial}, labels)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Findings) != 2 || !strings.Contains(r.Findings[0], "leaky.log line 2 contains 12 characters of a client secret") ||
		!strings.Contains(r.Findings[1], "partial.log line 4 contains 12 characters of a second secret") {
		t.Fatalf("findings = %q, want a hit in leaky.log line 2 and one in partial.log line 4", r.Findings)
	}
	if strings.Contains(r.Findings[0], "s3cr3t") {
		t.Error("the finding prints the secret it found")
	}
	if r.Bytes == 0 {
		t.Error("scanned no bytes")
	}
	if _, err := ScanFiles([]string{filepath.Join(dir, "missing.log")}, labels); err == nil {
		t.Error("a log file that cannot be read is not reported")
	}
}

// TestSecretsRedactsWhatItRemembers checks that output is scrubbed of a
// remembered secret and of a JWT's signature alone, and that a value too
// short to search for is refused.
func TestSecretsRedactsWhatItRemembers(t *testing.T) {
	var s Secrets
	if err := s.Remember("client secret", "short"); err == nil {
		t.Error("a 5-byte secret was taken")
	}
	if err := s.Remember("client secret", "s3cr3t-value-123"); err != nil {
		t.Fatal(err)
	}
	jwt := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
	if err := s.Remember("access token", jwt); err != nil {
		t.Fatal(err)
	}
	got := s.Redact("secret s3cr3t-value-123, token cut short ...c2lnbmF0dXJlLW9mLXRoZS10b2tlbg")
	if strings.Contains(got, "s3cr3t") || strings.Contains(got, "c2lnbmF0") {
		t.Errorf("Redact left a secret in %q", got)
	}
	if !strings.Contains(got, "[REDACTED client secret]") || !strings.Contains(got, "[REDACTED access token (JWT signature)]") {
		t.Errorf("Redact does not say what it withheld: %q", got)
	}
}
