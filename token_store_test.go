package piwik

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

// watchedStorage is storage that counts the calls on tokens/ and can
// refuse writes as a performance standby's storage does.
type watchedStorage struct {
	logical.Storage
	mu        sync.Mutex
	readOnly  bool
	tokenGets int
	tokenPuts int
}

func newWatchedStorage() *watchedStorage {
	return &watchedStorage{Storage: &logical.InmemStorage{}}
}

func (s *watchedStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	s.mu.Lock()
	if strings.HasPrefix(key, tokenStoragePrefix) {
		s.tokenGets++
	}
	s.mu.Unlock()
	return s.Storage.Get(ctx, key)
}

func (s *watchedStorage) Put(ctx context.Context, entry *logical.StorageEntry) error {
	s.mu.Lock()
	readOnly := s.readOnly
	if strings.HasPrefix(entry.Key, tokenStoragePrefix) {
		s.tokenPuts++
	}
	s.mu.Unlock()
	if readOnly {
		return logical.ErrReadOnly
	}
	return s.Storage.Put(ctx, entry)
}

func (s *watchedStorage) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	readOnly := s.readOnly
	s.mu.Unlock()
	if readOnly {
		return logical.ErrReadOnly
	}
	return s.Storage.Delete(ctx, key)
}

func (s *watchedStorage) counts() (gets, puts int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenGets, s.tokenPuts
}

func (s *watchedStorage) setReadOnly(readOnly bool) {
	s.mu.Lock()
	s.readOnly = readOnly
	s.mu.Unlock()
}

// asPerformanceStandby makes the backend's node a performance standby.
func asPerformanceStandby() envOption {
	return func(s *envSetup) { s.sys.ReplicationStateVal = consts.ReplicationPerformanceStandby }
}

func TestTokenStore_aRestartLoadsTheStoredTokenOnTheFirstRead(t *testing.T) {
	storage := newWatchedStorage()
	e := newEnvWithRole(t, "shared", map[string]any{"token_reuse": true}, withStorage(storage))
	first := e.mustDo(logical.ReadOperation, "creds/shared", nil).Data["access_token"]

	getsBefore, _ := storage.counts()
	e.restart()
	if gets, _ := storage.counts(); gets != getsBefore {
		t.Errorf("the start read tokens/ %d times, want 0: a token is loaded on its role's first read", gets-getsBefore)
	}
	before := e.piwik.TokenRequests()
	for range 3 {
		if got := e.mustDo(logical.ReadOperation, "creds/shared", nil).Data["access_token"]; got != first {
			t.Fatal("a read after the restart got another token")
		}
	}
	if got := e.piwik.TokenRequests() - before; got != 0 {
		t.Errorf("%d token requests after the restart, want 0", got)
	}
	if gets, _ := storage.counts(); gets != getsBefore+1 {
		t.Errorf("three reads after the restart read tokens/ %d times, want once", gets-getsBefore)
	}
	if snap := e.b.metrics.snapshot(); snap["tokens_loaded"] != uint64(1) || snap["reuse_hits"] != uint64(3) {
		t.Errorf("metrics = %v, want 1 token loaded and 3 reuse hits", snap)
	}
}

func TestTokenStore_aRestartDuringAnOutageServesTheStoredToken(t *testing.T) {
	e := newEnv(t)
	e.piwik.SetLifetime(10 * time.Minute)
	e.writeConfig(map[string]any{"max_retries": 0})
	// Every read asks Piwik PRO (a 10-minute token never has 600s left).
	e.mustDo(logical.CreateOperation, "roles/shared", map[string]any{"token_reuse": true, "reuse_min_remaining": 600})
	first := e.mustDo(logical.ReadOperation, "creds/shared", nil).Data["access_token"]

	e.restart()
	e.piwik.SetFault(standin.Fault{Kind: standin.FaultServerError})
	resp := e.mustDo(logical.ReadOperation, "creds/shared", nil)
	if resp.Data["access_token"] != first || !containsWarning(resp, "serving the cached token") {
		t.Errorf("a read after a restart, during an outage: warnings %v; want the stored token served stale", resp.Warnings)
	}
}

func TestTokenStore_theStoredValueHoldsTheFingerprintNeverTheSecret(t *testing.T) {
	e := newEnvWithRole(t, "own", map[string]any{"token_reuse": true, "client_id": roleClientID, "client_secret": roleClientSecret})
	tok := e.mustDo(logical.ReadOperation, "creds/own", nil).Data["access_token"].(string)
	keys, _ := e.storage.List(context.Background(), tokenStoragePrefix)
	if len(keys) != 1 || keys[0] != "own" {
		t.Fatalf("tokens/ holds %v, want the role name only", keys)
	}
	entry, _ := e.storage.Get(context.Background(), tokenStoragePrefix+"own")
	var stored storedToken
	if err := entry.DecodeJSON(&stored); err != nil {
		t.Fatal(err)
	}
	if stored.Version != tokenSchemaVersion || stored.AccessToken != tok || len(stored.Fingerprint) != 64 {
		t.Errorf("stored = version %d, token %v, fingerprint %q", stored.Version, stored.AccessToken == tok, stored.Fingerprint)
	}
	for _, secret := range []string{roleClientSecret, testClientSecret} {
		if strings.Contains(string(entry.Value), secret) {
			t.Errorf("the stored token holds a credential in the clear")
		}
	}
}

func TestTokenStore_unusableEntriesAreIgnoredAndReplaced(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value any
	}{
		{"not JSON", "{"},
		{"another schema version", map[string]any{"version": 99, "fingerprint": "x", "access_token": "a.b.c"}},
		{"no token", map[string]any{"version": tokenSchemaVersion, "fingerprint": "x"}},
		{"not a JWT", map[string]any{"version": tokenSchemaVersion, "fingerprint": "x", "access_token": "a b",
			"sent": time.Now(), "expires_at": time.Now().Add(time.Hour)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWithRole(t, "shared", map[string]any{"token_reuse": true})
			if raw, ok := tc.value.(string); ok {
				e.storage.Put(context.Background(), &logical.StorageEntry{Key: tokenStoragePrefix + "shared", Value: []byte(raw)})
			} else {
				putStoredToken(t, e.storage, "shared", tc.value)
			}
			e.restart()
			before := e.piwik.TokenRequests()
			e.mustDo(logical.ReadOperation, "creds/shared", nil)
			if got := e.piwik.TokenRequests() - before; got != 1 {
				t.Errorf("%d token requests, want 1: the entry is ignored", got)
			}
			if stored, err := e.b.readStoredToken(context.Background(), "shared"); err != nil || stored == nil {
				t.Errorf("the mint did not replace the entry: %v %v", stored, err)
			}
		})
	}
}

func TestTokenStore_aTokenOfOtherCredentialsIsNeverLoaded(t *testing.T) {
	e := newEnvWithRole(t, "shared", map[string]any{"token_reuse": true})
	e.mustDo(logical.ReadOperation, "creds/shared", nil)
	// Storage holds the token of another credential under the role's name
	// (the config changed on another cluster's view, a restore, a bug).
	stored, _ := e.b.readStoredToken(context.Background(), "shared")
	forged := newStoredToken(*stored)
	forged.Fingerprint = strings.Repeat("0", 64)
	putStoredToken(t, e.storage, "shared", forged)
	e.restart()
	before := e.piwik.TokenRequests()
	e.mustDo(logical.ReadOperation, "creds/shared", nil)
	if got := e.piwik.TokenRequests() - before; got != 1 {
		t.Errorf("%d token requests, want 1: a token of other credentials is never handed out", got)
	}
}

func TestTokenStore_aFailedStoreIsNeverAReadError(t *testing.T) {
	storage := newWatchedStorage()
	e := newEnvWithRole(t, "shared", map[string]any{"token_reuse": true}, withStorage(storage))
	storage.setReadOnly(true) // every Put fails
	resp, err := e.do(logical.ReadOperation, "creds/shared", nil)
	if status, msg := statusOf(resp, err); status != http.StatusOK {
		t.Fatalf("read with failing storage: %d %s, want the token", status, msg)
	}
	if !strings.Contains(e.logs.String(), "could not store a minted token") {
		t.Error("the failed store is not logged")
	}
	before := e.piwik.TokenRequests()
	e.mustDo(logical.ReadOperation, "creds/shared", nil)
	if got := e.piwik.TokenRequests() - before; got != 0 {
		t.Errorf("%d token requests, want 0: the token stays cached on the node", got)
	}
}

func TestTokenStore_aPerformanceStandbyReadsStoredTokensAndNeverWrites(t *testing.T) {
	storage := newWatchedStorage()
	active := newEnvWithRole(t, "shared", map[string]any{"token_reuse": true}, withStorage(storage))
	first := active.mustDo(logical.ReadOperation, "creds/shared", nil).Data["access_token"]

	storage.setReadOnly(true)
	standby := newEnv(t, withStorage(storage), asPerformanceStandby())
	standby.piwik = active.piwik
	_, putsBefore := storage.counts()
	before := active.piwik.TokenRequests()
	if got := standby.mustDo(logical.ReadOperation, "creds/shared", nil).Data["access_token"]; got != first {
		t.Error("the standby did not serve the stored token")
	}
	if got := active.piwik.TokenRequests() - before; got != 0 {
		t.Errorf("%d token requests from the standby, want 0", got)
	}

	// The active node mints the next token; the standby follows the
	// invalidation.
	storage.setReadOnly(false)
	active.mustDo(logical.DeleteOperation, "tokens/shared", nil)
	second := active.mustDo(logical.ReadOperation, "creds/shared", nil).Data["access_token"]
	storage.setReadOnly(true)
	standby.b.invalidate(context.Background(), tokenStoragePrefix+"shared")
	if got := standby.mustDo(logical.ReadOperation, "creds/shared", nil).Data["access_token"]; got != second {
		t.Error("after the invalidation the standby did not load the active node's new token")
	}

	// A standby mints for itself when storage has nothing usable, and
	// does not try to store it.
	putStoredToken(t, storage.Storage, "shared", map[string]any{"version": 99})
	standby.b.invalidate(context.Background(), tokenStoragePrefix+"shared")
	standby.mustDo(logical.ReadOperation, "creds/shared", nil)
	if _, puts := storage.counts(); puts != putsBefore+1 {
		t.Errorf("%d token stores, want only the active node's one", puts-putsBefore)
	}
	if standby.b.periodic(context.Background(), &logical.Request{Storage: storage}) != nil {
		t.Error("periodic failed on a standby")
	}
}

func TestTokenStore_aStandbyRemembersARejectionStorageStillHolds(t *testing.T) {
	storage := newWatchedStorage()
	active := newEnv(t, withStorage(storage))
	active.writeConfig(map[string]any{"max_retries": 0})
	own := map[string]any{"token_reuse": true, "reuse_min_remaining": 600, "client_id": roleClientID, "client_secret": roleClientSecret}
	active.piwik.SetLifetime(10 * time.Minute)
	active.mustDo(logical.CreateOperation, "roles/own", own)
	active.mustDo(logical.ReadOperation, "creds/own", nil)

	storage.setReadOnly(true)
	standby := newEnv(t, withStorage(storage), asPerformanceStandby())
	standby.piwik = active.piwik
	// The credential is deleted in Piwik PRO; the standby meets the 401.
	active.piwik.AddCredential(standin.Credential{ClientID: roleClientID, ClientSecret: "replaced-in-the-ui"})
	if status, _ := statusOf(standby.do(logical.ReadOperation, "creds/own", nil)); status != http.StatusBadGateway {
		t.Fatalf("standby read after the deletion: %d, want 502", status)
	}
	if stored, _ := standby.b.readStoredToken(context.Background(), "own"); stored == nil {
		t.Fatal("storage no longer holds the token: the test proves nothing")
	}
	// Storage still holds the token; the standby neither loads it nor
	// serves it stale during an outage.
	standby.b.invalidate(context.Background(), tokenStoragePrefix+"own")
	active.piwik.SetFault(standin.Fault{Kind: standin.FaultUnavailable})
	if status, _ := statusOf(standby.do(logical.ReadOperation, "creds/own", nil)); status == http.StatusOK {
		t.Error("the standby served the stored token of a credential it saw rejected")
	}
}

func TestTokenStore_aRejectionDeletesTheStoredTokensOfTheCredential(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	own := map[string]any{"token_reuse": true, "client_id": roleClientID, "client_secret": roleClientSecret}
	e.mustDo(logical.CreateOperation, "roles/a", own)
	e.mustDo(logical.CreateOperation, "roles/b", own)
	e.mustDo(logical.CreateOperation, "roles/plain", map[string]any{"token_reuse": true})
	for _, role := range []string{"a", "b", "plain"} {
		e.mustDo(logical.ReadOperation, "creds/"+role, nil)
	}
	e.piwik.AddCredential(standin.Credential{ClientID: roleClientID, ClientSecret: "replaced-in-the-ui"})
	e.mustDo(logical.DeleteOperation, "tokens/a", nil) // a's next read asks Piwik PRO
	if status, _ := statusOf(e.do(logical.ReadOperation, "creds/a", nil)); status != http.StatusBadGateway {
		t.Fatalf("read after the deletion: %d, want 502", status)
	}
	waitUntil(t, "the stored tokens of the credential are deleted", func() bool {
		keys, _ := e.storage.List(context.Background(), tokenStoragePrefix)
		return len(keys) == 1 && keys[0] == "plain"
	})
}

// fingerprintNow is the fingerprint role resolves to now ("" for none).
func (e *env) fingerprintNow(role string) string {
	e.t.Helper()
	acct, err := e.b.account(context.Background(), e.storage)
	if err != nil || acct == nil {
		return ""
	}
	r, ok := e.b.reuseRequestFor(context.Background(), e.storage, acct, role)
	if !ok {
		return ""
	}
	return r.fingerprint
}

// assertStoresOnlyCurrentCredential fails when storage holds a token for
// role that was minted with another credential than the role resolves to.
func (e *env) assertStoresOnlyCurrentCredential(role string) {
	e.t.Helper()
	stored, err := e.b.readStoredToken(context.Background(), role)
	if err != nil {
		e.t.Fatal(err)
	}
	if stored != nil && stored.fingerprint != e.fingerprintNow(role) {
		e.t.Errorf("after the write returned, storage holds a token of %s minted with credentials the role no longer resolves to", role)
	}
	if held := e.b.tokens.heldToken(role); held != nil && held.fingerprint != e.fingerprintNow(role) {
		e.t.Errorf("after the write returned, the cache holds a token of %s minted with credentials the role no longer resolves to", role)
	}
}

func TestTokenStore_aMintOfTheOldCredentialInFlightDuringARotationIsNeverStored(t *testing.T) {
	// The role's first token is being minted, slowly, when the config's
	// credential is replaced (verified with the new client id, which
	// Piwik PRO answers at once).
	e, h, done := newEnvWithHeldMint(t)
	e.mustDo(logical.UpdateOperation, "config", map[string]any{"url": e.server.URL, "client_id": roleClientID, "client_secret": roleClientSecret})
	h.release(testClientID)
	<-done
	e.assertStoresOnlyCurrentCredential("r")
}

func TestTokenStore_aReaderThatResolvedTheOldCredentialNeverStoresItsTokenAfterTheWrite(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(e *env)
	}{
		{"config credential replaced", func(e *env) {
			e.mustDo(logical.UpdateOperation, "config", map[string]any{"url": e.server.URL, "client_id": roleClientID, "client_secret": roleClientSecret})
		}},
		{"role given its own credential", func(e *env) {
			e.mustDo(logical.PatchOperation, "roles/r", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
		}},
		{"role deleted", func(e *env) { e.mustDo(logical.DeleteOperation, "roles/r", nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storage := newStallingStorage()
			e := newEnvWithRole(t, "r", map[string]any{"token_reuse": true}, withStorage(storage))
			e.mustDo(logical.ReadOperation, "creds/r", nil)
			e.restart()
			// A reader resolves the role to the old credential and is
			// loading its stored token when the write comes and goes.
			paused := storage.pauseNext("get", tokenStoragePrefix+"r")
			done := e.readInBackground("r")
			<-paused.reached
			tc.write(e)
			close(paused.release)
			<-done
			e.assertStoresOnlyCurrentCredential("r")
		})
	}
}

func TestTokenStore_aStandbyNeverKeepsATokenPurgedWhileItWasLoadingIt(t *testing.T) {
	storage := newStallingStorage()
	active := newEnvWithRole(t, "shared", map[string]any{"token_reuse": true}, withStorage(storage))
	leaked := active.mustDo(logical.ReadOperation, "creds/shared", nil).Data["access_token"]

	standby := newEnv(t, withStorage(storage), asPerformanceStandby())
	standby.piwik = active.piwik
	// The standby's first reader has read the stored token and not yet
	// cached it when the operator purges it on the active node, whose
	// delete reaches the standby as an invalidation.
	paused := storage.pauseNext("get", tokenStoragePrefix+"shared")
	done := standby.readInBackground("shared")
	<-paused.reached
	active.mustDo(logical.DeleteOperation, "tokens/shared", nil)
	standby.b.invalidate(context.Background(), tokenStoragePrefix+"shared")
	close(paused.release)
	<-done // it raced the purge: either token is fine for it

	for i := range 3 {
		if got := standby.mustDo(logical.ReadOperation, "creds/shared", nil).Data["access_token"]; got == leaked {
			t.Fatalf("read %d on the standby after the purge was handed the purged token", i)
		}
	}
}

func TestTokenStore_concurrentReadsWritesPurgesAndRefreshesLeaveOnlyTokensOfCurrentCredentials(t *testing.T) {
	e := newEnvWithRole(t, "r", map[string]any{"token_reuse": true})
	e.mustDo(logical.CreateOperation, "roles/o", map[string]any{"token_reuse": true, "client_id": roleClientID, "client_secret": roleClientSecret})
	do := func(op logical.Operation, path string, data map[string]any) {
		resp, _ := e.b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data, Storage: e.storage})
		e.noteTokens(resp)
	}
	const rounds = 60
	var writers, readers sync.WaitGroup
	// The config moves between two credentials, role o between its own
	// and the config's, tokens are purged and the periodic call runs,
	// while readers read both roles throughout.
	writers.Go(func() {
		for i := range rounds {
			creds := [][2]string{{testClientID, testClientSecret}, {roleClientID, roleClientSecret}}[i%2]
			do(logical.UpdateOperation, "config", map[string]any{"url": e.server.URL, "client_id": creds[0], "client_secret": creds[1]})
		}
	})
	writers.Go(func() {
		for i := range rounds {
			data := map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret}
			if i%2 == 0 {
				data = map[string]any{"client_id": ""}
			}
			do(logical.PatchOperation, "roles/o", data)
		}
	})
	writers.Go(func() {
		for i := range rounds {
			do(logical.DeleteOperation, []string{"tokens/r", "tokens/o", "tokens"}[i%3], nil)
		}
	})
	writers.Go(func() {
		for range rounds {
			_ = e.b.periodic(context.Background(), &logical.Request{Operation: logical.RollbackOperation, Storage: e.storage})
		}
	})
	stop := make(chan struct{})
	for range 6 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				do(logical.ReadOperation, "creds/r", nil)
				do(logical.ReadOperation, "creds/o", nil)
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	e.settle("r", "o")
	e.b.Cleanup(context.Background())
	for _, role := range []string{"r", "o"} {
		e.assertStoresOnlyCurrentCredential(role)
	}
}

func TestTokenStore_aTokenBeingStoredWhenItsCredentialIsRejectedDoesNotStayStored(t *testing.T) {
	storage := newStallingStorage()
	e := newEnvWithRole(t, "a", map[string]any{"token_reuse": true, "client_id": roleClientID, "client_secret": roleClientSecret}, withStorage(storage))
	e.mustDo(logical.CreateOperation, "roles/b", map[string]any{"token_reuse": true, "client_id": roleClientID, "client_secret": roleClientSecret})
	// b's token is minted and being stored when the credential is deleted
	// in Piwik PRO and a read of a meets the rejection; the scan that drops
	// the credential's stored tokens lists storage before b's store ends.
	stored := storage.pauseNext("put", tokenStoragePrefix+"b")
	read := e.readInBackground("b")
	<-stored.reached
	e.piwik.AddCredential(standin.Credential{ClientID: roleClientID, ClientSecret: "replaced-in-the-ui"})
	listed := storage.pauseNext("list", tokenStoragePrefix)
	if status, _ := statusOf(e.do(logical.ReadOperation, "creds/a", nil)); status != http.StatusBadGateway {
		t.Fatalf("read of a after the deletion: %d, want 502", status)
	}
	<-listed.reached
	close(listed.release)
	close(stored.release)
	<-read
	e.b.backgroundWork.Wait()
	// A restart forgets the rejection; storage must not hold the token.
	if ct, _ := e.b.readStoredToken(context.Background(), "b"); ct != nil {
		t.Error("storage keeps a token minted before its credential was rejected: the next start serves it")
	}
}
