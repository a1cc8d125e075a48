package piwik

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

const (
	testClientID     = "test-client"
	testClientSecret = "test-secret-5f0c1e9a"
	roleClientID     = "reporting-client"
	roleClientSecret = "reporting-secret-8b2d77c4"
)

// env is one backend with in-memory storage, talking to a stand-in of
// Piwik PRO served by httptest.
type env struct {
	t       testing.TB
	b       *backend
	storage logical.Storage
	piwik   *standin.Server
	server  *httptest.Server
	logs    *syncBuffer
	conf    *logical.BackendConfig
	clock   *fakeClock // nil: the real clock

	mu      sync.Mutex
	secrets []string // every secret and token seen, for the leak checks
}

// envSetup is what an envOption can change before the backend starts.
type envSetup struct {
	sys *logical.StaticSystemView
	// wrap, when set, wraps the stand-in's handler.
	wrap func(http.Handler) http.Handler
	// storage, when set, is the mount's storage instead of a new one.
	storage logical.Storage
	// clock, when set, is the clock of the stand-in and of the backend's
	// tokens.
	clock *fakeClock
}

// withClock makes clock the time of the stand-in (the tokens' iat and
// exp) and of the backend's token reuse rules, so that a test can move
// both through a token's life.
func withClock(clock *fakeClock) envOption {
	return func(setup *envSetup) { setup.clock = clock }
}

// newTestClock returns a clock that starts now.
func newTestClock() *fakeClock {
	return &fakeClock{now: time.Now()}
}

// withStorage gives the backend s as its storage.
func withStorage(s logical.Storage) envOption {
	return func(setup *envSetup) { setup.storage = s }
}

type envOption func(*envSetup)

// withMountMaxTTL sets the mount's max lease TTL.
func withMountMaxTTL(d time.Duration) envOption {
	return func(s *envSetup) { s.sys.MaxLeaseTTLVal = d }
}

// withHold puts h in front of the stand-in: a token request of a client id
// h holds waits until h releases it.
func withHold(h *hold) envOption {
	return func(s *envSetup) { s.wrap = h.wrap }
}

// hold holds the token requests of chosen client ids until released, and
// tells when one is being held.
type hold struct {
	mu      sync.Mutex
	held    map[string]*holding // by client id
	waiting map[string]int
}

// holding is one client id's hold: the next count requests (all of them
// when count < 0) wait until release is closed.
type holding struct {
	release chan struct{}
	count   int
}

func newHold() *hold {
	return &hold{held: make(map[string]*holding), waiting: make(map[string]int)}
}

// hold makes every token request of clientID wait from now on.
func (h *hold) hold(clientID string) { h.holdNext(clientID, -1) }

// holdNext makes the next n token requests of clientID wait.
func (h *hold) holdNext(clientID string, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held[clientID] = &holding{release: make(chan struct{}), count: n}
}

// release lets the held requests of clientID, and later ones, through.
func (h *hold) release(clientID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hd, ok := h.held[clientID]; ok {
		close(hd.release)
		delete(h.held, clientID)
	}
}

// waitingFor returns how many requests of clientID are being held.
func (h *hold) waitingFor(clientID string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.waiting[clientID]
}

// take returns the channel a request of clientID waits on, nil for none.
func (h *hold) take(clientID string) chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	hd := h.held[clientID]
	if hd == nil || hd.count == 0 {
		return nil
	}
	if hd.count > 0 {
		hd.count--
	}
	h.waiting[clientID]++
	return hd.release
}

func (h *hold) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var req struct {
			ClientID string `json:"client_id"`
		}
		_ = json.Unmarshal(body, &req)
		if release := h.take(req.ClientID); release != nil {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			h.mu.Lock()
			h.waiting[req.ClientID]--
			h.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	sys := &logical.StaticSystemView{
		DefaultLeaseTTLVal: time.Hour,
		MaxLeaseTTLVal:     24 * time.Hour,
	}
	setup := &envSetup{sys: sys}
	for _, opt := range opts {
		opt(setup)
	}
	standinOpts := standin.Options{Credentials: []standin.Credential{
		{ClientID: testClientID, ClientSecret: testClientSecret, UserID: "0f9b8e1c-admin"},
		{ClientID: roleClientID, ClientSecret: roleClientSecret, UserID: "7d3a2b10-reporting"},
	}}
	if setup.clock != nil {
		standinOpts.Now = setup.clock.Now
	}
	piwik := standin.New(standinOpts)
	e := &env{t: t, piwik: piwik, logs: &syncBuffer{}, secrets: []string{testClientSecret, roleClientSecret}, clock: setup.clock}
	var handler http.Handler = piwik
	if setup.wrap != nil {
		handler = setup.wrap(handler)
	}
	server := httptest.NewServer(recordTokens(handler, e.rememberSecret))
	t.Cleanup(server.Close)

	storage := setup.storage
	if storage == nil {
		storage = &logical.InmemStorage{}
	}
	e.conf = &logical.BackendConfig{
		StorageView: storage,
		System:      sys,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:   "piwik",
			Level:  hclog.Trace,
			Output: e.logs,
		}),
	}
	e.storage, e.server = storage, server
	e.start()
	t.Cleanup(e.assertNoSecretsLogged)
	return e
}

// start starts the backend the way Vault does when it mounts the plugin:
// Factory, then Initialize. Clean stops it when the test ends.
func (e *env) start() {
	e.t.Helper()
	raw, err := Factory(context.Background(), e.conf)
	if err != nil {
		e.t.Fatalf("Factory: %v", err)
	}
	e.b = raw.(*backend)
	if e.clock != nil {
		e.b.now = e.clock.Now
	}
	if err := e.b.Initialize(context.Background(), &logical.InitializationRequest{Storage: e.storage}); err != nil {
		e.t.Fatalf("Initialize: %v", err)
	}
	b := e.b
	e.t.Cleanup(func() { b.Cleanup(context.Background()) })
}

// restart stops the backend and starts a new one on the same storage, as
// a plugin reload, a Vault restart or a leader change does.
func (e *env) restart() {
	e.t.Helper()
	e.b.Cleanup(context.Background())
	e.start()
}

// newEnvWithRole is newEnv with a working config and one role.
func newEnvWithRole(t testing.TB, role string, roleData map[string]any, opts ...envOption) *env {
	t.Helper()
	e := newEnv(t, opts...)
	e.writeConfig(nil)
	e.mustDo(logical.CreateOperation, "roles/"+role, roleData)
	return e
}

// do sends one request to the backend, as Vault's router would.
func (e *env) do(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	e.t.Helper()
	resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: op,
		Path:      path,
		Data:      data,
		Storage:   e.storage,
	})
	e.noteTokens(resp)
	return resp, err
}

// mustDo is do for requests that must succeed.
func (e *env) mustDo(op logical.Operation, path string, data map[string]any) *logical.Response {
	e.t.Helper()
	resp, err := e.do(op, path, data)
	if err != nil || resp.IsError() {
		e.t.Fatalf("%s %s: err=%v resp=%v", op, path, err, errorText(resp))
	}
	return resp
}

// writeConfig stores a working config pointing at the stand-in.
func (e *env) writeConfig(extra map[string]any) {
	e.t.Helper()
	data := map[string]any{
		"url":           e.server.URL,
		"client_id":     testClientID,
		"client_secret": testClientSecret,
	}
	for k, v := range extra {
		data[k] = v
	}
	e.mustDo(logical.UpdateOperation, "config", data)
}

// noteTokens remembers access tokens handed out, so that the leak checks
// can look for them.
func (e *env) noteTokens(resp *logical.Response) {
	if resp == nil || resp.Data == nil {
		return
	}
	if tok, ok := resp.Data["access_token"].(string); ok && tok != "" {
		e.rememberSecret(tok)
	}
}

func (e *env) rememberSecret(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.secrets = append(e.secrets, s)
}

// recordTokens passes every access token the stand-in issues to remember,
// including those the engine mints only to verify credentials, so that the
// leak checks know every token that exists.
func recordTokens(next http.Handler, remember func(string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &teeWriter{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		var reply struct {
			AccessToken string `json:"access_token"`
		}
		if json.Unmarshal(rec.body.Bytes(), &reply) == nil && reply.AccessToken != "" {
			remember(reply.AccessToken)
		}
	})
}

// teeWriter keeps a copy of the first 64 KiB of a response body.
type teeWriter struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (w *teeWriter) Write(p []byte) (int, error) {
	if room := 64<<10 - w.body.Len(); room > 0 {
		w.body.Write(p[:min(len(p), room)])
	}
	return w.ResponseWriter.Write(p)
}

func (w *teeWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *teeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// snapshot returns every storage entry's bytes, to prove a refused write
// changed nothing.
func (e *env) snapshot() map[string]string {
	e.t.Helper()
	ctx := context.Background()
	keys, err := logical.CollectKeys(ctx, e.storage)
	if err != nil {
		e.t.Fatalf("list storage: %v", err)
	}
	snap := make(map[string]string, len(keys))
	for _, k := range keys {
		entry, err := e.storage.Get(ctx, k)
		if err != nil {
			e.t.Fatalf("get %s: %v", k, err)
		}
		snap[k] = string(entry.Value)
	}
	return snap
}

// assertNoSecret fails when any secret or token seen so far appears in s.
func (e *env) assertNoSecret(what, s string) {
	e.t.Helper()
	e.mu.Lock()
	secrets := slices.Clone(e.secrets)
	e.mu.Unlock()
	for _, secret := range secrets {
		if strings.Contains(s, secret) {
			e.t.Errorf("%s contains a secret or token", what)
		}
	}
}

func (e *env) assertNoSecretsLogged() {
	e.assertNoSecret("backend log", e.logs.String())
}

// statusOf is the HTTP status Vault would answer a request with, and the
// error text: a coded error's code, 400 for an error response, else 200.
func statusOf(resp *logical.Response, err error) (int, string) {
	var coded logical.HTTPCodedError
	switch {
	case errors.As(err, &coded):
		return coded.Code(), err.Error()
	case err != nil:
		return http.StatusInternalServerError, err.Error()
	case resp.IsError():
		return http.StatusBadRequest, errorText(resp)
	}
	return http.StatusOK, ""
}

// errorText is the error a response carries, or "".
func errorText(resp *logical.Response) string {
	if resp == nil || !resp.IsError() {
		return ""
	}
	return resp.Error().Error()
}

// responseText renders everything a caller would see of a reply.
func responseText(t testing.TB, resp *logical.Response, err error) string {
	t.Helper()
	var buf bytes.Buffer
	if resp != nil {
		if err := json.NewEncoder(&buf).Encode(resp); err != nil {
			t.Fatalf("encode response: %v", err)
		}
	}
	if err != nil {
		buf.WriteString(err.Error())
	}
	return buf.String()
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

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
	read := make(chan struct{})
	go func() {
		defer close(read)
		resp, _ := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "creds/r", Storage: e.storage})
		e.noteTokens(resp)
	}()
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
