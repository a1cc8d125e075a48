package piwik

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
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
