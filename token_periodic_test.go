package piwik

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// tick runs Vault's periodic call.
func (e *env) tick() {
	e.t.Helper()
	if err := e.b.periodic(context.Background(), &logical.Request{Operation: logical.RollbackOperation, Storage: e.storage}); err != nil {
		e.t.Fatalf("periodic: %v", err)
	}
}

func TestPeriodic_refreshesOnlyRolesReadWithinTheirTokenLife(t *testing.T) {
	clock := newTestClock()
	e := newEnv(t, withClock(clock))
	e.writeConfig(nil)
	e.mustDo(logical.CreateOperation, "roles/read", map[string]any{"token_reuse": true})
	e.mustDo(logical.CreateOperation, "roles/idle", map[string]any{"token_reuse": true, "client_id": roleClientID, "client_secret": roleClientSecret})
	requests := func() (read, idle int64) {
		by := e.piwik.TokenRequestsBy()
		return by[testClientID], by[roleClientID]
	}
	e.mustDo(logical.ReadOperation, "creds/idle", nil) // its only read
	readBefore, idleBefore := requests()

	// An hour of periodic calls, one a minute; "read" is read every 5
	// minutes for the first half hour.
	idleAt := map[int]int64{}
	for minute := 1; minute <= 60; minute++ {
		clock.advance(time.Minute)
		if minute <= 30 && minute%5 == 0 {
			e.mustDo(logical.ReadOperation, "creds/read", nil)
		}
		e.tick()
		e.settle("read", "idle")
		_, idle := requests()
		idleAt[minute] = idle - idleBefore
	}
	if idleAt[30] == 0 {
		t.Error("idle's token was not refreshed within the token life after its read")
	}
	if idleAt[60] != idleAt[31] {
		t.Errorf("idle's token was refreshed %d times after a token life without a read, want 0", idleAt[60]-idleAt[31])
	}
	read, _ := requests()
	if read-readBefore < 3 {
		t.Errorf("%d mints for read, read every 5 minutes for 30 minutes, want its first and at least 2 refreshes", read-readBefore)
	}
	// Nobody reads either any more: no request in the next hour.
	before := e.piwik.TokenRequests()
	for range 60 {
		clock.advance(time.Minute)
		e.tick()
		e.settle("read", "idle")
	}
	if got := e.piwik.TokenRequests() - before; got != 0 {
		t.Errorf("%d token requests in an hour in which nobody read any role, want 0", got)
	}
}

func TestPeriodic_aSparseReaderNeverWaitsForAMint(t *testing.T) {
	h, clock := newHold(), newTestClock()
	e := newEnvWithRole(t, "agent", map[string]any{"token_reuse": true}, withHold(h), withClock(clock))
	lease := e.mustDo(logical.ReadOperation, "creds/agent", nil).Secret.TTL
	// As Vault Agent does: re-read at about 90% of each lease, with the
	// periodic call every minute in between. Piwik PRO holds every token
	// request while a read is made: a read that waited for a mint would
	// never return.
	for i := range 6 {
		for elapsed := time.Duration(0); elapsed < lease*9/10; elapsed += time.Minute {
			clock.advance(time.Minute)
			e.tick()
			e.settle("agent")
		}
		h.hold(testClientID)
		before := e.piwik.TokenRequests()
		resp := e.mustDo(logical.ReadOperation, "creds/agent", nil)
		held := h.waitingFor(testClientID)
		h.release(testClientID)
		// A read that waited for a held mint would have ended in the stale
		// warning after request_timeout.
		if len(resp.Warnings) > 0 || held != 0 || e.piwik.TokenRequests() != before {
			t.Fatalf("read %d asked Piwik PRO (warnings %v, %d requests held)", i+1, resp.Warnings, held)
		}
		lease = resp.Secret.TTL
		if lease < 14*time.Minute {
			t.Errorf("read %d got a lease of %s, want at least the 15m reuse floor", i+1, lease)
		}
	}
}

func TestPeriodic_tidyDeletesExpiredAndOrphanedTokens(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	for _, role := range []string{"kept", "expired", "deleted", "orphan"} {
		e.mustDo(logical.CreateOperation, "roles/"+role, map[string]any{"token_reuse": true})
		e.mustDo(logical.ReadOperation, "creds/"+role, nil)
	}
	stored, _ := e.b.readStoredToken(context.Background(), "expired")
	old := newStoredToken(*stored)
	old.Sent, old.ExpiresAt = time.Now().Add(-time.Hour), time.Now().Add(-time.Minute)
	putStoredToken(t, e.storage, "expired", old)
	// A role deleted where its token's delete did not reach storage.
	if err := e.storage.Delete(context.Background(), roleStoragePrefix+"orphan"); err != nil {
		t.Fatal(err)
	}
	putStoredToken(t, e.storage, "corrupt", map[string]any{"version": 99})

	e.tick()
	keys, _ := e.storage.List(context.Background(), tokenStoragePrefix)
	if len(keys) != 3 || keys[0] != "deleted" || keys[1] != "kept" {
		t.Fatalf("after the tidy tokens/ holds %v, want deleted (its role still exists), kept, and nothing else", keys)
	}
}

func TestPeriodic_tidyRunsAtMostEveryTidyInterval(t *testing.T) {
	clock := newTestClock()
	e := newEnvWithRole(t, "r", map[string]any{"token_reuse": true}, withClock(clock))
	e.tick()
	putStoredToken(t, e.storage, "ghost", map[string]any{"version": 99})
	clock.advance(tidyInterval - time.Second)
	e.tick()
	if stored, _ := e.storage.Get(context.Background(), tokenStoragePrefix+"ghost"); stored == nil {
		t.Fatal("tidied before tidyInterval passed")
	}
	clock.advance(time.Second)
	e.tick()
	if stored, _ := e.storage.Get(context.Background(), tokenStoragePrefix+"ghost"); stored != nil {
		t.Error("not tidied after tidyInterval")
	}
}
