package piwik

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
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

	mu      sync.Mutex
	secrets []string // every secret and token seen, for the leak checks
}

type envOption func(*logical.StaticSystemView)

// withMountMaxTTL sets the mount's max lease TTL.
func withMountMaxTTL(d time.Duration) envOption {
	return func(sys *logical.StaticSystemView) { sys.MaxLeaseTTLVal = d }
}

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	piwik := standin.New(standin.Options{Credentials: []standin.Credential{
		{ClientID: testClientID, ClientSecret: testClientSecret, UserID: "0f9b8e1c-admin"},
		{ClientID: roleClientID, ClientSecret: roleClientSecret, UserID: "7d3a2b10-reporting"},
	}})
	e := &env{t: t, piwik: piwik, logs: &syncBuffer{}, secrets: []string{testClientSecret, roleClientSecret}}
	server := httptest.NewServer(recordTokens(piwik, e.rememberSecret))
	t.Cleanup(server.Close)

	sys := &logical.StaticSystemView{
		DefaultLeaseTTLVal: time.Hour,
		MaxLeaseTTLVal:     24 * time.Hour,
	}
	for _, opt := range opts {
		opt(sys)
	}
	conf := &logical.BackendConfig{
		StorageView: &logical.InmemStorage{},
		System:      sys,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:   "piwik",
			Level:  hclog.Trace,
			Output: e.logs,
		}),
	}
	raw, err := Factory(context.Background(), conf)
	if err != nil {
		t.Fatalf("Factory: %v", err)
	}
	e.b, e.storage, e.server = raw.(*backend), conf.StorageView, server
	t.Cleanup(e.assertNoSecretsLogged)
	return e
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

func TestFactory_sealWrapsConfigAndRoles(t *testing.T) {
	e := newEnv(t)
	got := e.b.SpecialPaths().SealWrapStorage
	want := map[string]bool{"config": true, "roles/": true}
	if len(got) != len(want) {
		t.Fatalf("SealWrapStorage = %v, want config and roles/", got)
	}
	for _, p := range got {
		if !want[p] {
			t.Errorf("unexpected seal-wrapped path %q", p)
		}
	}
}
