package e2e

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// releaseVersion is the version the release test stamps. It differs from
// the versions other tests register, so that registering the released
// binary on the shared server disturbs none of them.
const releaseVersion = "v0.9.0-release-test"

// releasePlatforms are the os/arch pairs every release is built for.
var releasePlatforms = []string{"darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64", "windows/amd64"}

// TestReleaseArtifacts runs `make release` (goreleaser) with a throwaway
// GPG key and checks what a user downloads: the signature of SHA256SUMS,
// every checksum, each zip and the binary in it (platform, static build,
// stamped version), each SBOM, and the printed register lines. The binary
// for this machine is then registered in the real Vault with the printed
// line, and must report the stamped version and serve creds.
func TestReleaseArtifacts(t *testing.T) {
	env := sharedDev(t)
	requireTool(t, "gpg")
	requireTool(t, "jq")
	requireTool(t, "make")

	work := t.TempDir()
	fpr := throwawayGPGKey(t, filepath.Join(work, "gnupg"))
	dist := filepath.Join(work, "dist")
	output := runRelease(t, dist, fpr)
	if want := "SHA256SUMS will be signed with GPG key " + fpr; !strings.Contains(output, want) {
		t.Errorf("make release did not say %q", want)
	}

	var want []string
	for _, p := range releasePlatforms {
		base := pluginName + "_" + releaseVersion + "_" + strings.Replace(p, "/", "_", 1)
		want = append(want, base+".sbom.json", base+".zip")
	}
	slices.Sort(want)

	verifySignature(t, filepath.Join(work, "gnupg"), dist, fpr)
	sums := verifyChecksums(t, dist)
	if got := slices.Sorted(maps.Keys(sums)); !slices.Equal(got, want) {
		t.Errorf("SHA256SUMS lists %v, want %v", got, want)
	}

	registerLines := parseRegisterLines(t, output)
	hostBinary := ""
	for _, p := range releasePlatforms {
		goos, goarch, _ := strings.Cut(p, "/")
		base := pluginName + "_" + releaseVersion + "_" + goos + "_" + goarch
		t.Run(goos+"_"+goarch, func(t *testing.T) {
			bin := checkArchive(t, filepath.Join(dist, base+".zip"), filepath.Join(work, base), goos, goarch)
			checkSBOM(t, filepath.Join(dist, base+".sbom.json"), bin, goos, goarch)
			wantLine := fmt.Sprintf("vault plugin register -sha256=%s -version=%s -command=%s secret %s",
				fileSHA256(t, bin), releaseVersion, filepath.Base(bin), pluginName)
			if got := registerLines[p]; got != wantLine {
				t.Errorf("make release printed for %s:\n  %s\nwant:\n  %s", p, got, wantLine)
			}
			if goos == runtime.GOOS && goarch == runtime.GOARCH {
				hostBinary = bin
			}
		})
	}
	if hostBinary == "" {
		t.Fatalf("no usable release binary for this machine (%s/%s)", runtime.GOOS, runtime.GOARCH)
	}
	checkReleasedBinaryInVault(t, env, hostBinary, registerLines[runtime.GOOS+"/"+runtime.GOARCH])
}

// requireTool skips t when a command it needs is missing, or fails it when
// CI=true (.ci/run installs it).
func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (CI=true: refusing to skip)", name)
		}
		t.Skipf("%s is not installed", name)
	}
}

// throwawayGPGKey makes a signing key without a passphrase in a new
// GNUPGHOME at home and returns its fingerprint. The gpg-agent it starts is
// stopped when t ends.
func throwawayGPGKey(t *testing.T, home string) string {
	t.Helper()
	mkdir(t, home)
	t.Cleanup(func() { _ = gpgCommand(home, "gpgconf", "--kill", "gpg-agent").Run() })
	gen := gpgCommand(home, "gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
		"--quick-generate-key", "piwik release test <release-test@example.invalid>", "ed25519", "sign", "1d")
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("gpg --quick-generate-key: %v\n%s", err, out)
	}
	out, err := gpgCommand(home, "gpg", "--batch", "--with-colons", "--list-secret-keys").Output()
	if err != nil {
		t.Fatalf("gpg --list-secret-keys: %v", err)
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if f := strings.Split(line, ":"); f[0] == "fpr" && len(f) > 9 && len(f[9]) == 40 {
			return f[9]
		}
	}
	t.Fatalf("no fingerprint in gpg --list-secret-keys:\n%s", out)
	return ""
}

// gpgCommand is a gpg (or gpgconf) command with GNUPGHOME set to home.
func gpgCommand(home, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
	return cmd
}

// runRelease runs `make release` into dist, signing with key fpr of the
// GNUPGHOME beside dist, and returns what it printed on stdout (its
// stderr, goreleaser's log, goes to a file of the test).
func runRelease(t *testing.T, dist, fpr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	root, err := filepath.Abs(filepath.Join(examplesDir(t), ".."))
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(testDir(t), "release.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	rememberLog(logPath)

	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "-C", root, "release", "VERSION="+releaseVersion)
	cmd.Env = append(baseEnv(),
		"DIST="+dist,
		"GPG_FINGERPRINT="+fpr,
		"GNUPGHOME="+filepath.Join(filepath.Dir(dist), "gnupg"),
	)
	cmd.Stdout = io.MultiWriter(&stdout, logFile)
	cmd.Stderr = logFile
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("make release: %v; its output is in %s", err, logPath)
	}
	t.Logf("make release took %s", time.Since(start).Round(time.Second))
	return stdout.String()
}

// verifySignature checks SHA256SUMS.sig against SHA256SUMS with gpg, and
// that a changed SHA256SUMS fails the same check.
func verifySignature(t *testing.T, home, dist, fpr string) {
	t.Helper()
	sums := filepath.Join(dist, "SHA256SUMS")
	sig := sums + ".sig"
	verify := func(file string) (string, error) {
		out, err := gpgCommand(home, "gpg", "--batch", "--status-fd", "1", "--verify", sig, file).Output()
		return string(out), err
	}
	out, err := verify(sums)
	if err != nil || !strings.Contains(out, "[GNUPG:] VALIDSIG "+fpr+" ") {
		t.Fatalf("gpg --verify SHA256SUMS.sig SHA256SUMS: %v; want VALIDSIG by %s in:\n%s", err, fpr, out)
	}

	data, err := os.ReadFile(sums)
	if err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(t.TempDir(), "SHA256SUMS")
	if err := os.WriteFile(changed, append(data, "0000  extra.zip\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := verify(changed); err == nil || !strings.Contains(out, "[GNUPG:] BADSIG") {
		t.Errorf("gpg accepted the signature for a changed SHA256SUMS (err %v):\n%s", err, out)
	}
}

// verifyChecksums checks every line of dist/SHA256SUMS against its file and
// returns the sums by file name.
func verifyChecksums(t *testing.T, dist string) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := make(map[string]string)
	s := bufio.NewScanner(f)
	for s.Scan() {
		sum, name, ok := strings.Cut(s.Text(), "  ")
		if !ok || len(sum) != 64 || strings.ContainsAny(name, "/\\") {
			t.Fatalf("SHA256SUMS line %q is not '<sha256>  <file name>'", s.Text())
		}
		if got := fileSHA256(t, filepath.Join(dist, name)); got != sum {
			t.Errorf("%s: SHA-256 %s, SHA256SUMS says %s", name, got, sum)
		}
		sums[name] = sum
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return sums
}

// parseRegisterLines reads the register lines make release prints, one
// under each "<os>/<arch>:" line, by platform.
func parseRegisterLines(t *testing.T, output string) map[string]string {
	t.Helper()
	lines := make(map[string]string)
	all := strings.Split(output, "\n")
	for i, line := range all {
		if p, ok := strings.CutSuffix(line, ":"); ok && slices.Contains(releasePlatforms, p) && i+1 < len(all) {
			lines[p] = strings.TrimSpace(all[i+1])
		}
	}
	return lines
}

// checkArchive checks the zip of one platform: the license and docs, and
// the binary, named as the register line names it, built for goos/goarch,
// static, without local paths, with releaseVersion in it. It extracts the
// binary into dir and returns its path.
func checkArchive(t *testing.T, path, dir, goos, goarch string) string {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatalf("open %s: %v", filepath.Base(path), err)
	}
	defer zr.Close()

	binName := pluginName + "_" + releaseVersion
	if goos == "windows" {
		binName += ".exe"
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	slices.Sort(names)
	if want := []string{"CHANGELOG.md", "LICENSE", "README.md", binName}; !slices.Equal(names, want) {
		t.Fatalf("%s holds %v, want %v", filepath.Base(path), names, want)
	}

	bin := filepath.Join(mkdir(t, dir), binName)
	for _, f := range zr.File {
		switch f.Name {
		case "LICENSE":
			repo, err := os.ReadFile(filepath.Join(examplesDir(t), "..", "LICENSE"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(readZipFile(t, f), repo) {
				t.Error("LICENSE in the zip differs from the repo's")
			}
		case binName:
			if goos != "windows" && f.Mode().Perm()&0o111 == 0 {
				t.Errorf("%s is not executable in the zip (mode %s)", binName, f.Mode())
			}
			if err := os.WriteFile(bin, readZipFile(t, f), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}

	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("%s: no Go build info: %v", binName, err)
	}
	settings := make(map[string]string)
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	want := map[string]string{"GOOS": goos, "GOARCH": goarch, "CGO_ENABLED": "0", "-trimpath": "true"}
	for k, v := range want {
		if settings[k] != v {
			t.Errorf("%s was built with %s=%q, want %q", binName, k, settings[k], v)
		}
	}
	// Go records no -ldflags in a -trimpath build, and a stripped binary has
	// no symbols to read Version from: the string -X set is all there is to
	// see without running it. checkReleasedBinaryInVault runs the one for
	// this machine.
	if data, err := os.ReadFile(bin); err != nil {
		t.Fatal(err)
	} else if !bytes.Contains(data, []byte(releaseVersion)) {
		t.Errorf("%s does not contain the version string %s", binName, releaseVersion)
	}
	if info.Path != module+"/cmd/"+pluginName {
		t.Errorf("%s is a build of %s, want %s/cmd/%s", binName, info.Path, module, pluginName)
	}
	return bin
}

func readZipFile(t *testing.T, f *zip.File) []byte {
	t.Helper()
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s from the zip: %v", f.Name, err)
	}
	return data
}

// cycloneDX is the part of a CycloneDX JSON document the test reads.
type cycloneDX struct {
	BOMFormat   string `json:"bomFormat"`
	SpecVersion string `json:"specVersion"`
	Metadata    struct {
		Component sbomComponent `json:"component"`
	} `json:"metadata"`
	Components []sbomComponent `json:"components"`
}

type sbomComponent struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	PURL    string `json:"purl"`
}

// checkSBOM checks that path is a CycloneDX document of binary bin: the
// plugin in releaseVersion for goos/goarch, listing every module linked
// into bin, github.com/hashicorp/vault/sdk among them.
func checkSBOM(t *testing.T, path, bin, goos, goarch string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var bom cycloneDX
	if err := json.Unmarshal(data, &bom); err != nil {
		t.Fatalf("%s: not JSON: %v", filepath.Base(path), err)
	}
	if bom.BOMFormat != "CycloneDX" || bom.SpecVersion == "" {
		t.Fatalf("%s: bomFormat %q, specVersion %q; want a CycloneDX document", filepath.Base(path), bom.BOMFormat, bom.SpecVersion)
	}
	main := bom.Metadata.Component
	if main.Name != module || main.Version != releaseVersion ||
		!strings.Contains(main.PURL, "goos="+goos) || !strings.Contains(main.PURL, "goarch="+goarch) {
		t.Errorf("%s describes %s %s (%s), want %s %s for %s/%s",
			filepath.Base(path), main.Name, main.Version, main.PURL, module, releaseVersion, goos, goarch)
	}

	listed := make(map[string]string)
	for _, c := range bom.Components {
		listed[c.Name] = c.Version
	}
	if listed["github.com/hashicorp/vault/sdk"] == "" {
		t.Errorf("%s does not list github.com/hashicorp/vault/sdk", filepath.Base(path))
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range info.Deps {
		if dep.Replace != nil {
			dep = dep.Replace
		}
		if listed[dep.Path] != dep.Version {
			t.Errorf("%s lists %s at %q; the binary links %s", filepath.Base(path), dep.Path, listed[dep.Path], dep.Version)
		}
	}
}

// checkReleasedBinaryInVault installs bin in the shared server's plugin
// directory. Registered without a version, Vault runs it and records the
// version it reports, which must be releaseVersion. Then line, the
// register command make release printed for this platform, must work as
// printed, and a mount of that version must serve creds.
func checkReleasedBinaryInVault(t *testing.T, env *devEnv, bin, line string) {
	t.Helper()
	v := env.vault
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v.pluginDir, filepath.Base(bin)), data, 0o755); err != nil {
		t.Fatal(err)
	}

	const probe = "piwik-release-probe"
	v.vault(t, "plugin", "register", "-sha256="+fileSHA256(t, bin), "-command="+filepath.Base(bin), "secret", probe)
	t.Cleanup(func() {
		v.run(t, v.token, "", "plugin", "deregister", "-version="+releaseVersion, "secret", probe)
	})
	if got := v.catalogVersion(t, probe); got != releaseVersion {
		t.Fatalf("the released binary reports version %q to Vault, want %q", got, releaseVersion)
	}

	args := strings.Fields(line)
	if len(args) < 3 || args[0] != "vault" {
		t.Fatalf("register line %q does not start with vault", line)
	}
	v.vault(t, args[1:]...)
	t.Cleanup(func() {
		v.run(t, v.token, "", "plugin", "deregister", "-version="+releaseVersion, "secret", pluginName)
	})
	const mount = "piwik-release"
	st := startStandin(t, testDir(t), mount+"-standin", t.Cleanup)
	v.mountPiwik(t, mount, releaseVersion, st)
	t.Cleanup(func() { v.run(t, v.token, "", "secrets", "disable", mount) })
	if got := v.mounts(t)[mount+"/"].RunningPluginVersion; got != releaseVersion {
		t.Errorf("%s/ runs plugin version %q, want %q", mount, got, releaseVersion)
	}
	c := v.readCreds(t, v.token, mount+"/creds/reporting")
	st.requireTokenWorks(t, "token from the released binary", c.accessToken)
}
