package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestSubSecondDurationsAreRefused pins that a duration that is not a
// whole number of seconds is refused naming the field, and that nothing
// stored changes: the framework would store "500ms" as 0, which every
// duration field reads as "no cap" or "the default".
func TestSubSecondDurationsAreRefused(t *testing.T) {
	env := sharedDev(t)
	v := env.vault
	v.vault(t, "write", "piwik/roles/durations", "ttl=10m", "reuse_min_remaining=5m", "token_reuse=true")
	before := v.vault(t, "read", "-format=json", "piwik/roles/durations")
	for _, field := range []string{"ttl=500ms", "ttl=-500ms", "ttl=999ms", "reuse_min_remaining=500ms", "reuse_min_remaining=1.5s"} {
		r := v.run(t, v.token, "", "write", "piwik/roles/durations", field)
		name := strings.SplitN(field, "=", 2)[0]
		if r.exitCode == 0 || !strings.Contains(r.stderr, name+":") {
			t.Errorf("vault write piwik/roles/durations %s: exit %d, want a refusal naming %s:\n%s", field, r.exitCode, name, r.stderr)
		}
	}
	if after := v.vault(t, "read", "-format=json", "piwik/roles/durations"); stripRequestID(after) != stripRequestID(before) {
		t.Errorf("a refused write changed the role:\nbefore %s\nafter  %s", before, after)
	}
	configBefore := stripRequestID(v.vault(t, "read", "-format=json", "piwik/config"))
	if r := v.run(t, v.token, "", "patch", "piwik/config", "request_timeout=1.9s"); r.exitCode == 0 || !strings.Contains(r.stderr, "request_timeout:") {
		t.Errorf("vault patch piwik/config request_timeout=1.9s: exit %d, want a refusal naming request_timeout:\n%s", r.exitCode, r.stderr)
	}
	if after := stripRequestID(v.vault(t, "read", "-format=json", "piwik/config")); after != configBefore {
		t.Errorf("a refused write changed the config")
	}
}

// TestSecretFromAFileWithATrailingNewline pins that client_id=@file and
// client_secret=@file work with the newline every editor ends a file with.
func TestSecretFromAFileWithATrailingNewline(t *testing.T) {
	const mount = "piwik-atfile"
	v, st := mountPrivately(t, mount)
	dir := testDir(t)
	idFile, secretFile := filepath.Join(dir, "client_id.txt"), filepath.Join(dir, "secret.txt")
	writeFile(t, idFile, st.clientID+"\n")
	writeFile(t, secretFile, st.clientSecret+"\n")
	// @file paths are read by the CLI, relative to its working directory.
	v.vault(t, "write", mount+"/config", "url="+st.url, "client_id=@"+idFile, "client_secret=@"+secretFile)
	st.requireTokenWorks(t, "token read after a config written from files", v.readCreds(t, v.token, mount+"/creds/reporting").accessToken)

	role := addStandinCredential(t, st, "atfile-role")
	writeFile(t, idFile, role.clientID+"\r\n")
	writeFile(t, secretFile, role.clientSecret+"\r\n")
	v.vault(t, "write", mount+"/roles/own", "client_id=@"+idFile, "client_secret=@"+secretFile)
	c := v.readCreds(t, v.token, mount+"/creds/own")
	if c.data["aud"] != "Client-Name-"+role.clientID {
		t.Errorf("token of %v, want the role's own credential", c.data["aud"])
	}
	writeFile(t, secretFile, role.clientSecret+"\n\n")
	if r := v.run(t, v.token, "", "write", mount+"/roles/own", "client_secret=@"+secretFile); r.exitCode == 0 || !strings.Contains(r.stderr, "client_secret:") {
		t.Errorf("a secret with two trailing newlines: exit %d, want a refusal naming client_secret:\n%s", r.exitCode, redact(r.stderr))
	}
}

// stripRequestID drops the request_id line of a JSON CLI output, which
// differs between two reads of the same thing.
func stripRequestID(out string) string {
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, `"request_id"`) {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}
