package piwik

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

// The credentials every env's stand-in knows: the config's, and a role's
// own (another Piwik PRO user).
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

type envOption func(*envSetup)

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

// newHold returns a hold that holds nothing yet.
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

// wrap holds the token requests of next as h says.
func (h *hold) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clientID := peekClientID(r)
		if release := h.take(clientID); release != nil {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			h.mu.Lock()
			h.waiting[clientID]--
			h.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

// newEnv starts a backend as Vault mounts it, with in-memory storage (or
// the one withStorage gives) and a stand-in of Piwik PRO that knows the
// test credentials. When the test ends the backend is cleaned up and its
// log is checked for secrets.
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

// request is one request a test sends through env.do.
type request struct {
	op   logical.Operation
	path string
	data map[string]any
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

// rememberSecret adds s to what the leak checks look for.
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

// assertNoSecretsLogged fails when the backend's log holds a secret or a
// token.
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

// isStatus reports whether err is a coded error with that HTTP status.
func isStatus(err error, status int) bool {
	var coded logical.HTTPCodedError
	return errors.As(err, &coded) && coded.Code() == status
}

// The stand-in is an http.Handler: env serves it, wrapped or not.
var _ http.Handler = (*standin.Server)(nil)

// check reads piwik/check and returns its HTTP status and report, from a
// plain response (200) or the raw one Vault sends for another status.
func (e *env) check() (int, map[string]any) {
	e.t.Helper()
	resp, err := e.do(logical.ReadOperation, "check", nil)
	if err != nil || resp == nil {
		e.t.Fatalf("check: err=%v resp=%v", err, resp)
	}
	raw, isRaw := resp.Data[logical.HTTPRawBody].(string)
	if !isRaw {
		if resp.IsError() {
			e.t.Fatalf("check: %v", resp.Error())
		}
		return http.StatusOK, resp.Data
	}
	var body struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal([]byte(raw), &body); err != nil {
		e.t.Fatalf("check: raw body is not a Vault response: %v", err)
	}
	return resp.Data[logical.HTTPStatusCode].(int), body.Data
}

// readInBackground starts a read of creds/<role> in a goroutine of its own
// and returns a channel that is closed when the read has returned.
func (e *env) readInBackground(role string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, _ := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "creds/" + role, Storage: e.storage})
		e.noteTokens(resp)
	}()
	return done
}

// newEnvWithHeldMint is newEnvWithRole with a token_reuse role "r" whose
// first read is under way: Piwik PRO holds its token request until h
// releases testClientID, and done is closed when the read has returned.
func newEnvWithHeldMint(t *testing.T) (e *env, h *hold, done <-chan struct{}) {
	t.Helper()
	h = newHold()
	e = newEnvWithRole(t, "r", map[string]any{"token_reuse": true}, withHold(h))
	h.hold(testClientID)
	done = e.readInBackground("r")
	waitUntil(t, "the mint is held", func() bool { return h.waitingFor(testClientID) == 1 })
	return e, h, done
}

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

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testNow is the fixed instant of the tests that need no running clock.
var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// testJWT builds an RS256-shaped JWT with the given claims.
func testJWT(claims map[string]any) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"typ": "JWT", "alg": "RS256"}) + "." + enc(claims) + "." + strings.Repeat("A", 342)
}

// reply is the JSON body of a token reply.
func reply(tokenType string, expiresIn any, token string) string {
	b, _ := json.Marshal(map[string]any{"token_type": tokenType, "expires_in": expiresIn, "access_token": token})
	return string(b)
}

// jwtWith builds a JWT-shaped token from a raw header and payload (JSON),
// encoded with enc.
func jwtWith(enc *base64.Encoding, header, payload string) string {
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload)) + "." + strings.Repeat("A", 342)
}

// hostileEnv is an env whose config points at handler instead of the
// stand-in, with the test's config secret, no verification, no retries, and
// a role "r" that mints with the config's credentials.
func hostileEnv(t *testing.T, handler http.HandlerFunc, roleData map[string]any) *env {
	t.Helper()
	e := newEnv(t)
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	e.mustDo(logical.UpdateOperation, "config", map[string]any{
		"url": srv.URL, "client_id": testClientID, "client_secret": testClientSecret,
		"verify_credentials": false, "max_retries": 0,
	})
	e.mustDo(logical.CreateOperation, "roles/r", roleData)
	return e
}

// peekClientID returns the client_id of a token request and leaves its body
// to be read again.
func peekClientID(r *http.Request) string {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var req struct {
		ClientID string `json:"client_id"`
	}
	_ = json.Unmarshal(body, &req)
	return req.ClientID
}

// requestSecret returns the client_secret of a token request.
func requestSecret(r *http.Request) (secret string, body []byte) {
	body, _ = io.ReadAll(r.Body)
	var req struct {
		ClientSecret string `json:"client_secret"`
	}
	_ = json.Unmarshal(body, &req)
	return req.ClientSecret, body
}

// newTestClient returns a Client for a stand-in served by httptest.
func newTestClient(t *testing.T, timeout time.Duration, retries int) (*client, *standin.Server) {
	t.Helper()
	piwik := standin.New(standin.Options{Credentials: []standin.Credential{{ClientID: testClientID, ClientSecret: testClientSecret}}})
	server := httptest.NewServer(piwik)
	t.Cleanup(server.Close)
	client, err := newClient(clientOptions{BaseURL: server.URL, Timeout: timeout, MaxRetries: retries, UserAgent: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.close)
	return client, piwik
}

var testCreds = credentials{ClientID: testClientID, ClientSecret: testClientSecret}

// countingServer is a second listener that must receive nothing.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte(`{"token_type":"Bearer","expires_in":1800,"access_token":"a.b.c"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// specialSecret holds JSON-, HTML-, URL- and Go-special characters around an
// alphanumeric core that every encoding keeps verbatim: if the core shows up
// anywhere, some encoding of the secret got through.
const (
	secretCore    = "Zq7xK9mW2vB4nR8t"
	specialSecret = `p"q<r>&s\t/u'v%w+x y` + secretCore + "é\u2028end"
)

// pausingStorage pauses the first Get of one key after it has read the
// entry, until released, so that a test can interleave a write.
type pausingStorage struct {
	logical.Storage
	mu      sync.Mutex
	key     string
	reached chan struct{}
	release chan struct{}
}

func (p *pausingStorage) arm(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.key, p.reached, p.release = key, make(chan struct{}), make(chan struct{})
}

func (p *pausingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	entry, err := p.Storage.Get(ctx, key)
	p.mu.Lock()
	armed := p.key != "" && p.key == key
	if armed {
		p.key = ""
	}
	reached, release := p.reached, p.release
	p.mu.Unlock()
	if armed {
		close(reached)
		<-release
	}
	return entry, err
}

// stallingStorage stalls the next Get, Put or List of a chosen key until
// the test releases it, and tells the test when it is paused. A paused Get
// or List has already read storage, as a read that raced a write would
// have.
type stallingStorage struct {
	logical.Storage
	mu     sync.Mutex
	pauses map[string]*storagePause // by "get "+key or "put "+key
}

// storagePause is one paused call: reached closes when the call is paused,
// release lets it go on.
type storagePause struct {
	reached, release chan struct{}
}

func newStallingStorage() *stallingStorage {
	return &stallingStorage{Storage: &logical.InmemStorage{}, pauses: make(map[string]*storagePause)}
}

// pauseNext pauses the next call op ("get", "put" or "list") of key.
func (s *stallingStorage) pauseNext(op, key string) *storagePause {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := &storagePause{reached: make(chan struct{}), release: make(chan struct{})}
	s.pauses[op+" "+key] = p
	return p
}

func (s *stallingStorage) wait(op, key string) {
	s.mu.Lock()
	p := s.pauses[op+" "+key]
	delete(s.pauses, op+" "+key)
	s.mu.Unlock()
	if p != nil {
		close(p.reached)
		<-p.release
	}
}

func (s *stallingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	entry, err := s.Storage.Get(ctx, key)
	s.wait("get", key)
	return entry, err
}

func (s *stallingStorage) Put(ctx context.Context, entry *logical.StorageEntry) error {
	s.wait("put", entry.Key)
	return s.Storage.Put(ctx, entry)
}

func (s *stallingStorage) List(ctx context.Context, prefix string) ([]string, error) {
	keys, err := s.Storage.List(ctx, prefix)
	s.wait("list", prefix)
	return keys, err
}

// putStoredToken writes tokens/<role> as raw JSON.
func putStoredToken(t *testing.T, s logical.Storage, role string, value any) {
	t.Helper()
	raw, err := json.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), &logical.StorageEntry{Key: tokenStoragePrefix + role, Value: raw}); err != nil {
		t.Fatal(err)
	}
}

// settle waits until no background refresh is under way.
func (e *env) settle(roles ...string) {
	e.t.Helper()
	for _, role := range roles {
		waitUntil(e.t.(*testing.T), "the background refresh of "+role+" ends", func() bool { return !e.b.refreshing.has(role) })
	}
}

// containsWarning reports whether one of resp's warnings holds part.
func containsWarning(resp *logical.Response, part string) bool {
	for _, w := range resp.Warnings {
		if strings.Contains(w, part) {
			return true
		}
	}
	return false
}
