package piwik

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

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

func TestReusePolicy_windowsOfAToken(t *testing.T) {
	minted := testNow
	tok := &token{Lifetime: 30 * time.Minute, ExpiresAt: minted.Add(30 * time.Minute)}
	for _, tc := range []struct {
		name                     string
		policy                   reusePolicy
		reusePoint, refreshFrom  time.Duration // after the mint
		usableAt, notUsableAt    time.Duration
		dueAt, notDueAt, freshAt time.Duration
	}{
		{"default: half its life, a tenth before", reusePolicy{requestTimeout: 10 * time.Second}, 15 * time.Minute, 12 * time.Minute,
			15 * time.Minute, 15*time.Minute + time.Second, 12 * time.Minute, 12*time.Minute - time.Second, 11 * time.Minute},
		{"reuse_min_remaining 5m", reusePolicy{minRemaining: 5 * time.Minute, requestTimeout: 10 * time.Second}, 25 * time.Minute, 22 * time.Minute,
			25 * time.Minute, 26 * time.Minute, 22 * time.Minute, 21 * time.Minute, 21 * time.Minute},
		{"request_timeout longer than a tenth", reusePolicy{requestTimeout: 5 * time.Minute}, 15 * time.Minute, 10 * time.Minute,
			14 * time.Minute, 16 * time.Minute, 10 * time.Minute, 9 * time.Minute, 9 * time.Minute},
		{"the window never starts before half the way to the reuse point", reusePolicy{minRemaining: 28 * time.Minute, requestTimeout: 5 * time.Minute}, 2 * time.Minute, time.Minute,
			2 * time.Minute, 3 * time.Minute, time.Minute, 59 * time.Second, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.policy
			if got := p.reusePoint(tok).Sub(minted); got != tc.reusePoint {
				t.Errorf("reuse point %s after the mint, want %s", got, tc.reusePoint)
			}
			if got := p.reusePoint(tok).Add(-p.window(tok)).Sub(minted); got != tc.refreshFrom {
				t.Errorf("refresh window from %s after the mint, want %s", got, tc.refreshFrom)
			}
			at := func(d time.Duration) time.Time { return minted.Add(d) }
			if !p.usable(tok, at(tc.usableAt)) || p.usable(tok, at(tc.notUsableAt)) {
				t.Errorf("usable at %s and not at %s: got %v and %v", tc.usableAt, tc.notUsableAt, p.usable(tok, at(tc.usableAt)), p.usable(tok, at(tc.notUsableAt)))
			}
			if !p.refreshDue(tok, at(tc.dueAt)) || p.refreshDue(tok, at(tc.notDueAt)) {
				t.Errorf("refresh due at %s and not at %s", tc.dueAt, tc.notDueAt)
			}
			if !p.fresh(tok, at(tc.freshAt)) {
				t.Errorf("not fresh at %s", tc.freshAt)
			}
		})
	}
}

func TestReuse_neverBelowTheFloor(t *testing.T) {
	for _, tc := range []struct {
		floor  string
		later  time.Duration // when the second read comes
		reused bool
	}{
		{"10m", 10 * time.Minute, true},               // 20m left >= 10m: cached
		{"0", 14*time.Minute + 58*time.Second, true},  // default floor: half of 30m left
		{"0", 15*time.Minute + 2*time.Second, false},  // under half left: minted
		{"25m", 5*time.Minute + 2*time.Second, false}, // under 25m left: minted
	} {
		t.Run(tc.floor+" after "+tc.later.String(), func(t *testing.T) {
			clock := newTestClock()
			e := newEnvWithRole(t, "r", map[string]any{"token_reuse": true, "reuse_min_remaining": tc.floor}, withClock(clock))
			first := e.mustDo(logical.ReadOperation, "creds/r", nil)
			clock.advance(tc.later)
			second := e.mustDo(logical.ReadOperation, "creds/r", nil)
			if reused := first.Data["access_token"] == second.Data["access_token"]; reused != tc.reused {
				t.Errorf("second read got the first token: %v, want %v", reused, tc.reused)
			}
		})
	}
}

func TestReuse_failedMintIsNotCached(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"max_retries": 0})
	e.mustDo(logical.CreateOperation, "roles/r", map[string]any{"token_reuse": true})
	e.piwik.FailNext(1, standin.Fault{Kind: standin.FaultServerError})
	if status, _ := statusOf(e.do(logical.ReadOperation, "creds/r", nil)); status != http.StatusBadGateway {
		t.Fatalf("first read: %d, want the 500 as a 502", status)
	}
	before := e.piwik.TokenRequests()
	e.mustDo(logical.ReadOperation, "creds/r", nil)
	if got := e.piwik.TokenRequests() - before; got != 1 {
		t.Errorf("%d token requests after a failure, want 1: failures are not cached", got)
	}
}

func TestReuse_aReaderInTheRefreshWindowGetsTheTokenAtOnceAndOneBackgroundMint(t *testing.T) {
	h, clock := newHold(), newTestClock()
	e := newEnvWithRole(t, "r", map[string]any{"token_reuse": true}, withHold(h), withClock(clock))
	first := e.mustDo(logical.ReadOperation, "creds/r", nil).Data["access_token"]

	// 13 minutes on, a 30-minute token is in its refresh window (from 12m
	// to its reuse point at 15m). The refresh is held at Piwik PRO: readers
	// never wait for it.
	clock.advance(13 * time.Minute)
	h.hold(testClientID)
	before := e.piwik.TokenRequests()
	for i := range 20 {
		if got := e.mustDo(logical.ReadOperation, "creds/r", nil).Data["access_token"]; got != first {
			t.Fatalf("read %d in the refresh window got another token", i)
		}
	}
	waitUntil(t, "the background mint reaches Piwik PRO", func() bool { return h.waitingFor(testClientID) == 1 })
	h.release(testClientID)
	waitUntil(t, "the background mint ends", func() bool { return !e.b.refreshing.has("r") })
	if got := e.piwik.TokenRequests() - before; got != 1 {
		t.Errorf("%d token requests for 20 reads in the refresh window, want 1 background mint", got)
	}
	next := e.mustDo(logical.ReadOperation, "creds/r", nil).Data["access_token"]
	if next == first {
		t.Error("after the background mint readers still get the old token")
	}
	if snap := e.b.metrics.snapshot(); snap["background_refreshes"] != uint64(1) {
		t.Errorf("background_refreshes = %v, want 1", snap["background_refreshes"])
	}
}

func TestReuse_writesKeepTheTokenUnlessWhatIdentifiesTheCredentialChanges(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(e *env)
		drops bool
	}{
		{"role ttl", func(e *env) { e.mustDo(logical.PatchOperation, "roles/shared", map[string]any{"ttl": "20m"}) }, false},
		{"role reuse_min_remaining", func(e *env) {
			e.mustDo(logical.PatchOperation, "roles/shared", map[string]any{"reuse_min_remaining": "5m"})
		}, false},
		{"role leased", func(e *env) { e.mustDo(logical.PatchOperation, "roles/shared", map[string]any{"leased": false}) }, false},
		{"config max_retries", func(e *env) { e.mustDo(logical.PatchOperation, "config", map[string]any{"max_retries": 2}) }, false},
		{"config request_timeout", func(e *env) { e.mustDo(logical.PatchOperation, "config", map[string]any{"request_timeout": 20}) }, false},
		{"config verify_credentials", func(e *env) {
			e.mustDo(logical.PatchOperation, "config", map[string]any{"verify_credentials": false})
		}, false},
		{"config rewritten with the same credential", func(e *env) { e.writeConfig(nil) }, false},
		{"invalidated by another node (role)", func(e *env) { e.b.invalidate(context.Background(), "roles/shared") }, false},
		{"invalidated by another node (config)", func(e *env) { e.b.invalidate(context.Background(), "config") }, false},
		{"role gets its own credential", func(e *env) {
			e.mustDo(logical.PatchOperation, "roles/shared", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
		}, true},
		{"config secret rotated", func(e *env) {
			e.piwik.AddCredential(standin.Credential{ClientID: testClientID, ClientSecret: "rotated-secret-3c1f"})
			e.rememberSecret("rotated-secret-3c1f")
			e.mustDo(logical.PatchOperation, "config", map[string]any{"client_secret": "rotated-secret-3c1f"})
		}, true},
		{"token_reuse turned off", func(e *env) { e.mustDo(logical.PatchOperation, "roles/shared", map[string]any{"token_reuse": false}) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWithRole(t, "shared", map[string]any{"token_reuse": true})
			first := e.mustDo(logical.ReadOperation, "creds/shared", nil).Data["access_token"]
			tc.write(e)
			_, storedErr := e.b.readStoredToken(context.Background(), "shared")
			stored, _ := e.b.readStoredToken(context.Background(), "shared")
			if storedErr != nil {
				t.Fatal(storedErr)
			}
			if tc.drops != (stored == nil) {
				t.Errorf("after the write storage holds a token: %v, want %v", stored != nil, !tc.drops)
			}
			before := e.piwik.TokenRequests()
			after := e.mustDo(logical.ReadOperation, "creds/shared", nil).Data["access_token"]
			if kept := after == first; kept == tc.drops {
				t.Errorf("the token survived the write: %v, want %v", kept, !tc.drops)
			}
			if got := e.piwik.TokenRequests() - before; !tc.drops && got != 0 {
				t.Errorf("%d token requests after a write that changed nothing of the credential, want 0", got)
			}
		})
	}
}

func TestReuse_neverServesATokenOfReplacedCredentials(t *testing.T) {
	e := newEnvWithRole(t, "shared", map[string]any{"token_reuse": true, "client_id": testClientID, "client_secret": testClientSecret})
	paused := &pausingStorage{Storage: e.storage}
	e.storage = paused

	// A reader reads the role (admin credentials) from storage and stalls
	// there.
	e.b.resetRole("shared")
	paused.arm("roles/shared")
	done := make(chan *logical.Response)
	go func() {
		resp, _ := e.do(logical.ReadOperation, "creds/shared", nil)
		done <- resp
	}()
	<-paused.reached
	// Meanwhile the role moves to the read-only user.
	e.mustDo(logical.UpdateOperation, "roles/shared", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
	close(paused.release)
	<-done // it raced the write: either identity is fine for it

	for i := range 3 {
		if sub := e.mustDo(logical.ReadOperation, "creds/shared", nil).Data["sub"]; sub != "7d3a2b10-reporting" {
			t.Fatalf("read %d after the write acts for %v, want the new credentials' user", i, sub)
		}
	}
}

func TestReuse_underLoadFollowsEveryCredentialSwitch(t *testing.T) {
	e := newEnvWithRole(t, "shared", map[string]any{"token_reuse": true, "client_id": testClientID, "client_secret": testClientSecret})
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				_, _ = e.do(logical.ReadOperation, "creds/shared", nil)
			}
		}()
	}
	identities := []struct{ id, secret, sub string }{
		{roleClientID, roleClientSecret, "7d3a2b10-reporting"},
		{testClientID, testClientSecret, "0f9b8e1c-admin"},
	}
	for i := range 20 {
		want := identities[i%2]
		e.mustDo(logical.UpdateOperation, "roles/shared", map[string]any{"client_id": want.id, "client_secret": want.secret})
		if sub := e.mustDo(logical.ReadOperation, "creds/shared", nil).Data["sub"]; sub != want.sub {
			t.Errorf("switch %d: the next read acts for %v, want %s", i, sub, want.sub)
		}
	}
	stop()
	wg.Wait()
}

// A token_reuse reader whose own deadline ends while it waits for the shared
// mint gets the 504 a mint-per-read reader gets.
func TestReuse_readerOutOfTimeGetsA504(t *testing.T) {
	release := make(chan struct{})
	e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}, nil)
	t.Cleanup(func() { close(release) })
	e.mustDo(logical.CreateOperation, "roles/reuse", map[string]any{"token_reuse": true})
	for _, role := range []string{"r", "reuse"} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		resp, err := e.b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "creds/" + role, Storage: e.storage})
		cancel()
		code, msg := statusOf(resp, err)
		t.Logf("creds/%s with the reader's deadline passing: %d %s", role, code, msg)
		if code != http.StatusGatewayTimeout {
			t.Errorf("creds/%s: %d, want 504 like any other timeout", role, code)
		}
	}
}

func TestStale_reuseRoleServesItsTokenThroughAnOutage(t *testing.T) {
	for _, fault := range []standin.FaultKind{standin.FaultUnavailable, standin.FaultServerError, standin.FaultCloseConnection, standin.FaultRateLimit} {
		t.Run(string(fault), func(t *testing.T) {
			e := newEnv(t)
			e.piwik.SetLifetime(10 * time.Minute)
			e.writeConfig(map[string]any{"max_retries": 0})
			// Every read wants a fresh token (under 600s left, always): each one
			// tries a refresh.
			e.mustDo(logical.CreateOperation, "roles/shared", map[string]any{"token_reuse": true, "reuse_min_remaining": "600"})
			first := e.mustDo(logical.ReadOperation, "creds/shared", nil)
			e.piwik.SetFault(standin.Fault{Kind: fault, RetryAfter: 60})

			for i := range 5 {
				resp := e.mustDo(logical.ReadOperation, "creds/shared", nil)
				if resp.Data["access_token"] != first.Data["access_token"] {
					t.Fatalf("read %d during the outage got another token", i)
				}
				if !containsWarning(resp, "serving the cached token") {
					t.Errorf("read %d: no warning that names the failure and the expiry: %v", i, resp.Warnings)
				}
				if resp.Secret.TTL <= 0 || resp.Secret.TTL > 10*time.Minute {
					t.Errorf("read %d: lease %s, want the token's remaining life", i, resp.Secret.TTL)
				}
			}
			if snap := e.mustDo(logical.ReadOperation, "metrics", nil).Data; snap["stale_serves"] != uint64(5) {
				t.Errorf("stale_serves = %v, want 5", snap["stale_serves"])
			}
		})
	}
}

func TestStale_notBelowTheFloor(t *testing.T) {
	tok := &token{AccessToken: "a.b.c", Lifetime: 30 * time.Minute, ExpiresAt: testNow.Add(31 * time.Second)}
	if !servableStale(tok, testNow) {
		t.Errorf("31s left of a 30m token: not served, want served (floor 30s)")
	}
	if servableStale(tok, testNow.Add(2*time.Second)) {
		t.Errorf("29s left of a 30m token: served, want refused (floor 30s)")
	}
	short := &token{AccessToken: "a.b.c", Lifetime: 20 * time.Second, ExpiresAt: testNow.Add(9 * time.Second)}
	if !servableStale(short, testNow) {
		t.Errorf("9s left of a 20s token: not served, want served (floor a quarter: 5s)")
	}
}

func TestStale_neverForRejectedCredentialsOrMintRoles(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"max_retries": 0})
	e.mustDo(logical.CreateOperation, "roles/shared", map[string]any{"token_reuse": true, "reuse_min_remaining": "1800",
		"client_id": roleClientID, "client_secret": roleClientSecret})
	e.mustDo(logical.CreateOperation, "roles/mint", nil)
	e.mustDo(logical.ReadOperation, "creds/shared", nil)

	// The credential is deleted in Piwik PRO: no more tokens, cached or not.
	e.piwik.AddCredential(standin.Credential{ClientID: roleClientID, ClientSecret: "replaced-in-the-ui"})
	for i := range 2 {
		if status, msg := statusOf(e.do(logical.ReadOperation, "creds/shared", nil)); status != http.StatusBadGateway || !strings.Contains(msg, "invalid_client") {
			t.Errorf("read %d after the credential was deleted: %d %q, want the rejection", i, status, msg)
		}
	}
	// A mint-per-read role has no token to fall back on.
	e.piwik.SetFault(standin.Fault{Kind: standin.FaultUnavailable})
	if status, _ := statusOf(e.do(logical.ReadOperation, "creds/mint", nil)); status != http.StatusBadGateway {
		t.Errorf("mint role during an outage: %d, want 502", status)
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

// A write of the role or the config that changes nothing a cached token
// depends on (the role's ttl, the config's max_retries) keeps the token, so
// that its readers are still served through an outage.
func TestStale_unrelatedWritesKeepTheCachedTokenThroughAnOutage(t *testing.T) {
	for _, write := range []struct {
		name string
		path string
		data map[string]any
	}{
		{"role ttl", "roles/shared", map[string]any{"ttl": 300}},
		{"config max_retries", "config", map[string]any{"max_retries": 1, "verify_credentials": false}},
	} {
		t.Run(write.name, func(t *testing.T) {
			e := newEnv(t)
			e.piwik.SetLifetime(10 * time.Minute)
			e.writeConfig(map[string]any{"max_retries": 0})
			e.mustDo(logical.CreateOperation, "roles/shared", map[string]any{"token_reuse": true, "reuse_min_remaining": "600"})
			first := e.mustDo(logical.ReadOperation, "creds/shared", nil)
			e.piwik.SetFault(standin.Fault{Kind: standin.FaultUnavailable})
			if resp := e.mustDo(logical.ReadOperation, "creds/shared", nil); resp.Data["access_token"] != first.Data["access_token"] {
				t.Fatalf("no stale serve before the write")
			}

			e.mustDo(logical.UpdateOperation, write.path, write.data)
			resp, err := e.do(logical.ReadOperation, "creds/shared", nil)
			status, msg := statusOf(resp, err)
			t.Logf("read after the %s write, Piwik PRO still down: %d %s", write.name, status, msg)
			if status != http.StatusOK || resp.Data["access_token"] != first.Data["access_token"] {
				t.Errorf("the %s write dropped a cached token of unchanged credentials: readers now get %d instead of the still-valid token", write.name, status)
			}
		})
	}
}
