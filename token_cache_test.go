package piwik

import (
	"testing"
	"time"
)

// cachedAt is a 30-minute token of fingerprint, minted with a request sent
// at sent.
func cachedAt(fingerprint string, sent time.Time) cachedToken {
	return cachedToken{
		fingerprint: fingerprint,
		sent:        sent,
		tok:         &token{AccessToken: "a.b.c", TokenType: "Bearer", Lifetime: 30 * time.Minute, ExpiresAt: sent.Add(30 * time.Minute)},
	}
}

func TestTokenCache_forgettingOneRoleKeepsAnotherRolesMint(t *testing.T) {
	c := newTokenCache()
	gen := c.generation("g") // g's mint starts
	c.forget("broken")
	c.reject("fp-broken", testNow)
	if !c.store("g", cachedAt("fp-g", testNow), gen) {
		t.Fatal("dropping another role's token voided g's mint")
	}
	if c.current("g", "fp-g") == nil {
		t.Error("g's token is not cached")
	}
}

func TestTokenCache_forgettingARoleVoidsItsOwnMintAndLoadInFlight(t *testing.T) {
	c := newTokenCache()
	gen := c.generation("r")
	c.forget("r") // the role is deleted or purged while its token is minted
	if c.store("r", cachedAt("fp", testNow), gen) {
		t.Error("a mint started before the role was forgotten filled the cache")
	}
	ct := cachedAt("fp", testNow)
	if c.load("r", &ct, gen) {
		t.Error("a load started before the role was forgotten filled the cache")
	}
}

func TestTokenCache_anOlderMintNeverReplacesANewerOne(t *testing.T) {
	c := newTokenCache()
	newer, older := cachedAt("fp-new", testNow.Add(time.Second)), cachedAt("fp-old", testNow)
	if !c.store("r", newer, c.generation("r")) {
		t.Fatal("store refused")
	}
	if c.store("r", older, c.generation("r")) {
		t.Error("a mint sent earlier replaced a later one")
	}
	if c.load("r", &older, c.generation("r")) {
		t.Error("an older stored token replaced a later mint")
	}
	if c.current("r", "fp-new") == nil {
		t.Error("the newer token is gone")
	}
}

func TestTokenCache_rejectionDropsTheCredentialOnEveryRoleUntilALaterSuccess(t *testing.T) {
	c := newTokenCache()
	for _, role := range []string{"a", "b"} {
		c.store(role, cachedAt("shared", testNow), c.generation(role))
	}
	c.store("other", cachedAt("other", testNow), c.generation("other"))

	rejected := testNow.Add(time.Minute)
	dropped := c.reject("shared", rejected)
	if len(dropped) != 2 || c.current("a", "shared") != nil || c.current("b", "shared") != nil {
		t.Errorf("reject dropped %v, want the tokens of a and b", dropped)
	}
	if c.current("other", "other") == nil {
		t.Error("reject dropped a token of another credential")
	}
	if !c.isRejected("shared") {
		t.Error("the rejection is not recorded")
	}

	// A mint sent before the rejection, answered after it, is not cached,
	// stored or loaded.
	before := cachedAt("shared", rejected.Add(-time.Second))
	if c.store("a", before, c.generation("a")) || c.load("b", &before, c.generation("b")) {
		t.Error("a token sent before the rejection was cached after it")
	}
	// One sent after it is, and ends the rejection.
	after := cachedAt("shared", rejected.Add(time.Second))
	if !c.store("a", after, c.generation("a")) {
		t.Error("a token minted after the rejection was not cached")
	}
	c.accept("shared", after.sent)
	if c.isRejected("shared") {
		t.Error("a success after the rejection did not end it")
	}
}

func TestTokenCache_readRecordsTheReadAndWhetherStorageWasAsked(t *testing.T) {
	c := newTokenCache()
	if tok, loaded := c.read("r", "fp", testNow); tok != nil || loaded {
		t.Fatalf("a fresh cache: token %v loaded %v", tok, loaded)
	}
	c.load("r", nil, c.generation("r")) // storage holds nothing
	if _, loaded := c.read("r", "fp", testNow.Add(time.Minute)); !loaded {
		t.Error("after a load that found nothing the next read asks storage again")
	}
	c.store("r", cachedAt("fp", testNow), c.generation("r"))
	if held := c.holding(); len(held) != 1 || !held[0].lastRead.Equal(testNow.Add(time.Minute)) {
		t.Errorf("held = %+v, want r read at +1m", held)
	}
	c.unload("r") // another node wrote the role's token
	if _, loaded := c.read("r", "fp", testNow); loaded {
		t.Error("after an invalidation the next read does not ask storage")
	}
}

func TestTokenCache_oldRejectionsArePruned(t *testing.T) {
	c := newTokenCache()
	c.reject("fp", testNow)
	c.pruneRejections(testNow.Add(maxTokenLifetime))
	if !c.isRejected("fp") {
		t.Fatal("a rejection younger than any token's life was pruned")
	}
	c.pruneRejections(testNow.Add(maxTokenLifetime + time.Second))
	if c.isRejected("fp") {
		t.Error("a rejection older than any token's life was kept")
	}
}
