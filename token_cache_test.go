package piwik

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/standin"
)

// readCreds reads creds/<role> from many goroutines at once and returns
// the tokens handed out.
func (e *env) readCreds(role string, readers int) []*logical.Response {
	e.t.Helper()
	resps := make([]*logical.Response, readers)
	var failed atomic.Int64
	var wg sync.WaitGroup
	for i := range readers {
		wg.Go(func() {
			resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
				Operation: logical.ReadOperation, Path: "creds/" + role, Storage: e.storage,
			})
			if err != nil || resp.IsError() {
				failed.Add(1)
				return
			}
			resps[i] = resp
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		e.t.Fatalf("%d of %d reads failed", n, readers)
	}
	for _, resp := range resps {
		e.noteTokens(resp)
	}
	return resps
}

func TestReuse_coldCacheMintsOnceForAThousandReaders(t *testing.T) {
	e := newEnvWithRole(t, "shared", map[string]any{"token_reuse": true})
	// Hold the first mint until every reader has missed the cache, so the
	// test proves coalescing rather than a fast first request.
	e.piwik.FailNext(1, standin.Fault{Kind: standin.FaultSlow, Delay: 300 * time.Millisecond})
	before := e.piwik.TokenRequests()
	mintedBefore := e.b.metrics.snapshot()["tokens_minted"].(uint64)

	resps := e.readCreds("shared", 1000)
	if got := e.piwik.TokenRequests() - before; got != 1 {
		t.Errorf("%d token requests for 1000 concurrent reads on a cold cache, want 1", got)
	}
	first := resps[0].Data["access_token"]
	for _, resp := range resps {
		if resp.Data["access_token"] != first {
			t.Fatal("readers of a token_reuse role got different tokens")
		}
		if resp.Secret.TTL <= 0 || resp.Secret.TTL > 30*time.Minute {
			t.Fatalf("lease TTL %s outside the token's life", resp.Secret.TTL)
		}
	}
	snap := e.b.metrics.snapshot()
	if minted := snap["tokens_minted"].(uint64) - mintedBefore; snap["reuse_hits"] != uint64(999) || minted != 1 {
		t.Errorf("metrics: reuse_hits=%v tokens minted by the reads=%v, want 999 and 1", snap["reuse_hits"], minted)
	}
}

func TestReuse_offMintsPerRead(t *testing.T) {
	e := newEnvWithRole(t, "own", nil)
	before := e.piwik.TokenRequests()
	e.readCreds("own", 50)
	if got := e.piwik.TokenRequests() - before; got != 50 {
		t.Errorf("%d token requests for 50 reads without reuse, want 50", got)
	}
}

func TestReuse_neverBelowTheFloor(t *testing.T) {
	var minted atomic.Int64
	now := time.Now()
	cache := newTokenCache()
	mint := func(context.Context) (*token, error) {
		minted.Add(1)
		// A token with 20 of its 30 minutes left.
		return &token{AccessToken: "t", Lifetime: 30 * time.Minute, ExpiresAt: now.Add(20 * time.Minute)}, nil
	}
	ctx := context.Background()
	for _, tc := range []struct {
		floor     time.Duration
		wantMints int64
	}{
		{floor: 10 * time.Minute, wantMints: 1}, // 20m left >= 10m: cached
		{floor: 0, wantMints: 1},                // default floor: half of 30m = 15m <= 20m
		{floor: 25 * time.Minute, wantMints: 3}, // 20m left < 25m: every read mints
	} {
		if _, _, err := cache.fetch(ctx, "r", "fp", tc.floor, mint); err != nil {
			t.Fatal(err)
		}
		if _, _, err := cache.fetch(ctx, "r", "fp", tc.floor, mint); err != nil {
			t.Fatal(err)
		}
		if got := minted.Load(); got != tc.wantMints {
			t.Errorf("floor %s: %d mints so far, want %d", tc.floor, got, tc.wantMints)
		}
	}
	if cache.get("r", "fp", 21*time.Minute, now) != nil {
		t.Errorf("get handed out a token with less life left than the floor")
	}
}

func TestReuse_failedMintIsNotCached(t *testing.T) {
	cache := newTokenCache()
	var calls int
	fail := func(context.Context) (*token, error) { calls++; return nil, errors.New("boom") }
	for range 2 {
		if _, _, err := cache.fetch(context.Background(), "r", "fp", 0, fail); err == nil {
			t.Fatal("fetch succeeded")
		}
	}
	if calls != 2 {
		t.Errorf("%d mints after two failures, want 2: failures must not be cached", calls)
	}
}

func TestReuse_writesDropTheCachedToken(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(e *env)
	}{
		{"role rewritten", func(e *env) { e.mustDo(logical.UpdateOperation, "roles/shared", map[string]any{"ttl": "20m"}) }},
		{"config rewritten", func(e *env) { e.writeConfig(map[string]any{"max_retries": 2}) }},
		{"invalidated by another node (role)", func(e *env) { e.b.invalidate(context.Background(), "roles/shared") }},
		{"invalidated by another node (config)", func(e *env) { e.b.invalidate(context.Background(), "config") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWithRole(t, "shared", map[string]any{"token_reuse": true})
			first := e.mustDo(logical.ReadOperation, "creds/shared", nil).Data["access_token"]
			if again := e.mustDo(logical.ReadOperation, "creds/shared", nil).Data["access_token"]; again != first {
				t.Fatal("second read did not reuse the token")
			}
			tc.write(e)
			if after := e.mustDo(logical.ReadOperation, "creds/shared", nil).Data["access_token"]; after == first {
				t.Errorf("the cached token survived: %s", tc.name)
			}
		})
	}
}

func TestReuse_deletedRoleStopsServing(t *testing.T) {
	e := newEnvWithRole(t, "shared", map[string]any{"token_reuse": true})
	e.mustDo(logical.ReadOperation, "creds/shared", nil)
	e.mustDo(logical.DeleteOperation, "roles/shared", nil)
	if resp, _ := e.do(logical.ReadOperation, "creds/shared", nil); !resp.IsError() {
		t.Errorf("a deleted role still serves its cached token")
	}
}

func TestReuse_leaseIsTheRemainingValidity(t *testing.T) {
	now := time.Now()
	tok := &token{ExpiresIn: 30 * time.Minute, Lifetime: 30 * time.Minute, ExpiresAt: now.Add(17 * time.Minute)}
	if ttl, _ := leaseTTL(tok, now, 0, 0); ttl != 17*time.Minute {
		t.Errorf("lease for a cached token = %s, want its remaining 17m", ttl)
	}
}

// mintOnSignal returns a mint that waits for release, then returns a fresh
// 30-minute token, and reports each call on started.
func mintOnSignal(started chan<- struct{}, release <-chan struct{}, count *atomic.Int64) func(context.Context) (*token, error) {
	return func(context.Context) (*token, error) {
		count.Add(1)
		started <- struct{}{}
		<-release
		now := time.Now()
		return &token{AccessToken: "a.b.c", Lifetime: 30 * time.Minute, ExpiresAt: now.Add(30 * time.Minute)}, nil
	}
}

func TestTokenCache_droppingOneRoleKeepsAnotherRolesMint(t *testing.T) {
	for _, drop := range []struct {
		name string
		do   func(c *tokenCache)
	}{
		{"forget", func(c *tokenCache) { c.forget("broken") }},
		{"demote", func(c *tokenCache) { c.demote("broken") }},
		{"reject its credential", func(c *tokenCache) { c.reject("fp-broken", time.Now()) }},
	} {
		t.Run(drop.name, func(t *testing.T) {
			cache := newTokenCache()
			started, release := make(chan struct{}, 1), make(chan struct{})
			var mints atomic.Int64
			mint := mintOnSignal(started, release, &mints)
			done := make(chan error, 1)
			go func() {
				_, _, err := cache.fetch(context.Background(), "g", "fp-g", 0, mint)
				done <- err
			}()
			<-started // g's mint is in flight
			drop.do(cache)
			close(release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if _, minted, err := cache.fetch(context.Background(), "g", "fp-g", 0, mint); err != nil || minted {
				t.Errorf("after %s of another role during g's mint: the next read of g minted=%v err=%v, want the cached token", drop.name, minted, err)
			}
			if n := mints.Load(); n != 1 {
				t.Errorf("%d mints for g, want 1", n)
			}
		})
	}
}

func TestTokenCache_droppingARoleVoidsItsOwnMintInFlight(t *testing.T) {
	cache := newTokenCache()
	started, release := make(chan struct{}, 1), make(chan struct{})
	var mints atomic.Int64
	done := make(chan error, 1)
	go func() {
		_, _, err := cache.fetch(context.Background(), "r", "fp", 0, mintOnSignal(started, release, &mints))
		done <- err
	}()
	<-started
	cache.forget("r") // the role is deleted while its token is minted
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if cache.get("r", "fp", 0, time.Now()) != nil {
		t.Errorf("a mint started before the role was forgotten filled the cache")
	}
}

func TestTokenCache_rejectionVoidsMintsSentBeforeItAndEndsWithALaterSuccess(t *testing.T) {
	cache := newTokenCache()
	fresh := func(context.Context) (*token, error) {
		return &token{AccessToken: "a.b.c", Lifetime: 30 * time.Minute, ExpiresAt: time.Now().Add(30 * time.Minute)}, nil
	}
	rejected := time.Now()
	cache.reject("fp", rejected)
	sent := rejected.Add(-time.Millisecond) // a mint sent before the rejection
	cache.store("r", cachedToken{fingerprint: "fp", tok: &token{AccessToken: "x.y.z", Lifetime: time.Hour, ExpiresAt: sent.Add(time.Hour)}}, 0, sent)
	if cache.get("r", "fp", 0, rejected) != nil {
		t.Fatal("a token sent before the rejection was cached after it")
	}
	if _, _, err := cache.fetch(context.Background(), "r", "fp", 0, fresh); err != nil {
		t.Fatal(err)
	}
	if cache.get("r", "fp", 0, time.Now()) == nil {
		t.Fatal("a token minted after the rejection was not cached")
	}
	cache.accept("fp", time.Now())
	if cache.stale("r", "fp", time.Now()) == nil {
		t.Errorf("a success after the rejection did not end it: no stale serving")
	}
}

func TestReuse_rejectedRoleDuringAnotherRolesMintCostsThatRoleNothing(t *testing.T) {
	h := newHold()
	e := newEnvWithRole(t, "g", map[string]any{"token_reuse": true}, withHold(h))
	e.mustDo(logical.CreateOperation, "roles/broken", map[string]any{"token_reuse": true, "client_id": roleClientID, "client_secret": roleClientSecret})
	// broken's credential is deleted in Piwik PRO.
	e.piwik.AddCredential(standin.Credential{ClientID: roleClientID, ClientSecret: "replaced-in-the-ui"})

	// g's first token is held at Piwik PRO while broken is read and
	// rejected.
	h.hold(testClientID)
	done := make(chan *logical.Response, 1)
	go func() {
		resp, _ := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "creds/g", Storage: e.storage})
		done <- resp
	}()
	waitUntil(t, "g's token request is held at Piwik PRO", func() bool { return h.waitingFor(testClientID) == 1 })
	if status, _ := statusOf(e.do(logical.ReadOperation, "creds/broken", nil)); status != http.StatusBadGateway {
		t.Fatalf("read of the rejected role: %d, want 502", status)
	}
	h.release(testClientID)
	if resp := <-done; resp == nil || resp.IsError() {
		t.Fatalf("read of g failed: %v", errorText(resp))
	} else {
		e.noteTokens(resp)
	}
	before := e.piwik.TokenRequests()
	e.mustDo(logical.ReadOperation, "creds/g", nil)
	if got := e.piwik.TokenRequests() - before; got != 0 {
		t.Errorf("the next read of g made %d token requests, want 0: another role's rejection voided g's mint", got)
	}
}

func TestStale_neverForACredentialRejectedOnAnotherRole(t *testing.T) {
	e := newEnv(t)
	// Every read asks Piwik PRO (a 10-minute token never has 600s left),
	// and falls back on the cached token when it cannot have a new one.
	e.piwik.SetLifetime(10 * time.Minute)
	e.writeConfig(map[string]any{"max_retries": 0})
	own := map[string]any{"token_reuse": true, "reuse_min_remaining": 600, "client_id": roleClientID, "client_secret": roleClientSecret}
	e.mustDo(logical.CreateOperation, "roles/a", own)
	e.mustDo(logical.CreateOperation, "roles/b", own)
	e.mustDo(logical.ReadOperation, "creds/a", nil)
	e.mustDo(logical.ReadOperation, "creds/b", nil)
	e.piwik.SetFault(standin.Fault{Kind: standin.FaultUnavailable})
	if resp := e.mustDo(logical.ReadOperation, "creds/b", nil); len(resp.Warnings) == 0 {
		t.Fatal("no stale serve during an outage before the rejection: the test proves nothing")
	}

	// The credential is deleted in Piwik PRO; a read of a meets it. b no
	// longer serves its cached token during the next outage.
	e.piwik.SetFault(standin.Fault{})
	e.piwik.AddCredential(standin.Credential{ClientID: roleClientID, ClientSecret: "replaced-in-the-ui"})
	if status, _ := statusOf(e.do(logical.ReadOperation, "creds/a", nil)); status != http.StatusBadGateway {
		t.Fatalf("read of a after the deletion: %d, want 502", status)
	}
	e.piwik.SetFault(standin.Fault{Kind: standin.FaultUnavailable})
	resp, err := e.do(logical.ReadOperation, "creds/b", nil)
	if status, msg := statusOf(resp, err); status == http.StatusOK {
		t.Errorf("b was served its cached token of the rejected credential during an outage (warnings %v)", resp.Warnings)
	} else if !strings.Contains(msg, "503") {
		t.Errorf("b during the outage: %d %s, want the outage's 502", status, msg)
	}
}

// waitUntil polls cond until it holds, failing the test after 10 seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
