package piwik

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func TestFactory_reportsRunningVersion(t *testing.T) {
	e := newEnv(t)
	if got := e.b.PluginVersion().Version; got != "v0.0.0-dev" {
		t.Errorf("running version = %q, want v0.0.0-dev when not stamped", got)
	}
}

func TestFactory_sealWrapsConfigRolesAndTokensAndKeepsTokensLocal(t *testing.T) {
	e := newEnv(t)
	paths := e.b.SpecialPaths()
	if got, want := paths.SealWrapStorage, []string{"config", "roles/", "tokens/"}; !slices.Equal(got, want) {
		t.Errorf("SealWrapStorage = %v, want %v", got, want)
	}
	if got, want := paths.LocalStorage, []string{"tokens/"}; !slices.Equal(got, want) {
		t.Errorf("LocalStorage = %v, want %v: tokens are this cluster's cache", got, want)
	}
}

func TestVersion_buildStampsTheChangelogsTopEntry(t *testing.T) {
	changelog, err := os.ReadFile("CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	top := regexp.MustCompile(`(?m)^## (v\d+\.\d+\.\d+\S*)`).FindSubmatch(changelog)
	if top == nil {
		t.Fatal("CHANGELOG.md has no version entry")
	}
	cmd := exec.Command("make", "-s", "version")
	for _, kv := range os.Environ() { // the default, not an override
		if !strings.HasPrefix(kv, "VERSION=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make version: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != string(top[1]) {
		t.Errorf("make stamps %q, CHANGELOG.md's top entry is %q", got, top[1])
	}
}

func TestClean_returnsOnlyAfterTheMintsItStartedStoppedStoring(t *testing.T) {
	storage := newStallingStorage()
	e := newEnvWithRole(t, "r", map[string]any{"token_reuse": true}, withStorage(storage))
	// A reader's mint has its token and is storing it (a storage write
	// the storage already accepted, so it no longer heeds the context)
	// when the mount is cleaned up.
	stalled := storage.pauseNext("put", tokenStoragePrefix+"r")
	read := e.readInBackground("r")
	<-stalled.reached
	var order []string
	var mu sync.Mutex
	note := func(what string) { mu.Lock(); order = append(order, what); mu.Unlock() }
	cleaned := make(chan struct{})
	go func() {
		defer close(cleaned)
		e.b.Cleanup(context.Background())
		note("clean returned")
	}()
	// Clean must wait for the store; a Clean that returns while it is
	// stalled returns at once, so a short look is enough to see it.
	select {
	case <-cleaned:
	case <-time.After(200 * time.Millisecond):
	}
	note("store released")
	close(stalled.release)
	<-read
	<-cleaned
	mu.Lock()
	defer mu.Unlock()
	if order[0] != "store released" {
		t.Errorf("events: %v; want Clean to return only after the mint it started stopped storing", order)
	}
}

func TestClean_noBackgroundWorkStartsAfterIt(t *testing.T) {
	e := newEnv(t)
	e.b.Cleanup(context.Background())
	var ran atomic.Bool
	e.b.goBackground(func(context.Context) { ran.Store(true) })
	e.b.backgroundWork.Wait()
	if ran.Load() {
		t.Error("background work started after Clean")
	}
}

func TestClean_stopsACheckRequestStillInFlight(t *testing.T) {
	h := newHold()
	e := newEnvWithRole(t, "plain", nil, withHold(h))
	t.Cleanup(func() { h.release(testClientID) })
	// A check's token request is held at Piwik PRO; its caller gives up,
	// the request goes on for later checks. Then the mount goes away.
	h.hold(testClientID)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = e.b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "check", Storage: e.storage})
	}()
	waitUntil(t, "the check's request is held", func() bool { return h.waitingFor(testClientID) == 1 })
	cancel()
	<-done
	before := e.b.metrics.snapshot()["upstream_requests"].(uint64)
	e.b.Cleanup(context.Background())
	if after := e.b.metrics.snapshot()["upstream_requests"].(uint64); after == before {
		t.Error("Clean returned while a check's token request was still in flight")
	}
}

// Writers, readers, checks and invalidations at once: no deadlock, no race
// (run with -race), and every token a reader gets belongs to a credential
// that was configured at some point.
func TestBackend_everythingAtOnce(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	e.mustDo(logical.CreateOperation, "roles/reuse", map[string]any{"token_reuse": true})
	e.mustDo(logical.CreateOperation, "roles/mint", nil)
	e.mustDo(logical.CreateOperation, "roles/own", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret, "token_reuse": true})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var reads atomic.Int64
	loop := func(f func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				f(i)
			}
		}()
	}
	creds := [][2]string{{testClientID, testClientSecret}, {roleClientID, roleClientSecret}}
	loop(func(i int) {
		c := creds[i%2]
		_, _ = e.do(logical.UpdateOperation, "config", map[string]any{"client_id": c[0], "client_secret": c[1]})
	})
	loop(func(i int) {
		_, _ = e.do(logical.PatchOperation, "roles/own", map[string]any{"ttl": i % 100, "token_reuse": i%2 == 0})
	})
	loop(func(i int) {
		if i%2 == 0 {
			_, _ = e.do(logical.DeleteOperation, "roles/mint", nil)
		} else {
			_, _ = e.do(logical.CreateOperation, "roles/mint", map[string]any{"token_reuse": true})
		}
	})
	loop(func(int) { e.b.invalidate(context.Background(), configStoragePath) })
	loop(func(int) { e.b.invalidate(context.Background(), roleStoragePrefix+"reuse") })
	loop(func(int) { _, _ = e.do(logical.ReadOperation, "check", nil) })
	for _, role := range []string{"reuse", "mint", "own", "reuse", "own"} {
		loop(func(int) {
			resp, err := e.do(logical.ReadOperation, "creds/"+role, nil)
			if err == nil && resp != nil && !resp.IsError() {
				reads.Add(1)
				if tok, _ := resp.Data["access_token"].(string); !e.piwik.TokenValid(tok) {
					t.Errorf("creds/%s handed out a token the stand-in did not issue", role)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("deadlock: the workers did not stop within 30s of the deadline")
	}
	t.Logf("%d successful creds reads", reads.Load())
	if reads.Load() == 0 {
		t.Errorf("no read succeeded")
	}
}

func TestWrites_thatCallPiwikPROForwardToTheActiveNodeBeforeTheyRun(t *testing.T) {
	e := newEnv(t)
	for _, path := range e.b.Paths {
		for op, handler := range path.Operations {
			props := handler.Properties()
			verifies := (path.Pattern == "config" || path.Pattern == "roles/"+framework.GenericNameRegex("name")) &&
				(op == logical.CreateOperation || op == logical.UpdateOperation || op == logical.PatchOperation)
			if verifies && !(props.ForwardPerformanceStandby && props.ForwardPerformanceSecondary) {
				t.Errorf("%s %s verifies with Piwik PRO but is not forwarded from standbys and secondaries", op, path.Pattern)
			}
			if !verifies && (props.ForwardPerformanceStandby || props.ForwardPerformanceSecondary) {
				t.Errorf("%s %s is forwarded though it calls Piwik PRO only to read", op, path.Pattern)
			}
		}
	}
}
