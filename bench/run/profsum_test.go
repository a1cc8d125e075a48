package main

import (
	"testing"
	"time"
)

func TestParseTraces(t *testing.T) {
	out := []byte(`File: vault
Type: cpu
Duration: 7s, Total samples = 4.02s (57.42%)
-----------+-------------------------------------------------------
      40ms   runtime.(*mspan).moveInlineMarks
             runtime.bgsweep
-----------+-------------------------------------------------------
      10ms   github.com/hashicorp/vault/vault.(*Core).switchedLockHandleRequest
             github.com/hashicorp/vault/vault.(*Core).HandleRequest (inline)
             net/http.(*conn).serve
-----------+-------------------------------------------------------
`)
	samples, err := parseTraces(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 2 {
		t.Fatalf("got %d samples, want 2: %+v", len(samples), samples)
	}
	if samples[0].weight != 40*time.Millisecond || len(samples[0].stack) != 2 || samples[0].stack[1] != "runtime.bgsweep" {
		t.Errorf("first sample %+v", samples[0])
	}
	if samples[1].weight != 10*time.Millisecond || len(samples[1].stack) != 3 {
		t.Errorf("second sample %+v", samples[1])
	}
	if got := categories[categorize(samples[0])].name; got != "GC: other marking, assists, sweeping" {
		t.Errorf("first sample in %q", got)
	}
	if got := categories[categorize(samples[1])].name; got != "Vault: rest of the request" {
		t.Errorf("second sample in %q", got)
	}
}

func TestParsePerfScript(t *testing.T) {
	out := []byte(" 1846 \n" +
		"\tffffffff81635d44 free_unref_folios\n" +
		"\t           922b7 runtime.madvise.abi0\n" +
		"\t           3b3e8 runtime.bgscavenge\n" +
		"\n" +
		" 1664 \n" +
		"\t          2d22f3 standin.(*Server).sign\n" +
		"\t          346a12 github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin.(*Server).tokenReply\n" +
		"\n" +
		" 1846 \n" +
		"\t          51f790 github.com/piwik-vault/vault-plugin-secrets-piwik.parseTokenReply\n" +
		"\t          522706 github.com/piwik-vault/vault-plugin-secrets-piwik.(*Client).tokenOnce\n")
	byPID, err := parsePerfScript(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(byPID[1846]) != 2 || len(byPID[1664]) != 1 {
		t.Fatalf("samples by pid: %+v", byPID)
	}
	for _, s := range append(byPID[1846], byPID[1664]...) {
		if s.weight != time.Second/perfHz {
			t.Errorf("weight %s, want %s", s.weight, time.Second/perfHz)
		}
	}
	want := map[int][]string{
		1846: {"GC: other marking, assists, sweeping", "plugin: token reply parsing (parseTokenReply)"},
		1664: {"stand-in: minting (claims, JWT, HMAC signature)"},
	}
	for pid, names := range want {
		for i, name := range names {
			if got := categories[categorize(byPID[pid][i])].name; got != name {
				t.Errorf("pid %d sample %d in %q, want %q", pid, i, got, name)
			}
		}
	}
}
