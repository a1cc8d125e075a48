package piwik

import (
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func TestConfig_urlOrCAChangeNeedsTheSecret(t *testing.T) {
	collector, hits := countingServer(t)
	for _, tc := range []struct {
		name string
		data map[string]any
	}{
		{"url by patch", map[string]any{"url": collector.URL}},
		{"url by update", map[string]any{"url": collector.URL, "client_id": testClientID}},
		{"ca_cert by patch", map[string]any{"ca_cert": testCACert(t)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.writeConfig(nil)
			before := e.snapshot()
			var op logical.Operation = logical.PatchOperation
			if strings.Contains(tc.name, "update") {
				op = logical.UpdateOperation
			}
			status, msg := statusOf(e.do(op, "config", tc.data))
			if status != http.StatusBadRequest || !strings.Contains(msg, "client_secret: required when url or ca_cert changes") {
				t.Errorf("write = %d %q, want 400 asking for client_secret", status, msg)
			}
			if after := e.snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("storage changed")
			}
		})
	}
	if hits.Load() != 0 {
		t.Errorf("the new url received %d requests", hits.Load())
	}
}

// testCACert returns a PEM certificate (httptest's) that validates.
func testCACert(t *testing.T) string {
	t.Helper()
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
}

// FuzzConfigUpdate: any combination of config fields is either refused or
// yields a config that satisfies every rule the engine relies on.
func FuzzConfigUpdate(f *testing.F) {
	f.Add("https://acme.piwik.pro/", "id", "secret", "10s", 3, "")
	f.Add("http://127.0.0.1:8210", "id", "s", "-1s", -1, "-----BEGIN CERTIFICATE-----\n")
	f.Add("http://evil.example", "", "", "0", 11, "x")
	f.Add("https://[::1]:1/a//", "i\x00d", "s", "5m", 0, "")
	schema := configFields()
	f.Fuzz(func(t *testing.T, url, id, secret, timeout string, retries int, caCert string) {
		d := &framework.FieldData{Schema: schema, Raw: map[string]any{
			"url": url, "client_id": id, "client_secret": secret,
			"request_timeout": timeout, "max_retries": retries, "ca_cert": caCert,
		}}
		if d.Validate() != nil {
			return
		}
		checkBinding(t, schema, d.Raw)
		cfg := defaultConfig()
		if err := cfg.update(d, nil); err != nil {
			return
		}
		if _, err := normalizeURL(cfg.URL); err != nil {
			t.Fatalf("stored url %q does not validate again: %v", cfg.URL, err)
		}
		if strings.ContainsFunc(cfg.URL, func(r rune) bool { return r > 0x7e }) {
			t.Fatalf("stored url %q is not ASCII", cfg.URL)
		}
		if strings.HasSuffix(cfg.URL, "/") {
			t.Fatalf("stored url %q keeps a trailing slash", cfg.URL)
		}
		if cfg.ClientID == "" || cfg.ClientSecret == "" {
			t.Fatal("stored a config without credentials")
		}
		if cfg.RequestTimeout <= 0 || cfg.RequestTimeout > maxRequestTimeout {
			t.Fatalf("stored request_timeout %s", cfg.RequestTimeout)
		}
		if cfg.MaxRetries < 0 || cfg.MaxRetries > maxMaxRetries {
			t.Fatalf("stored max_retries %d", cfg.MaxRetries)
		}
		if _, err := newClient(cfg.clientOptions()); err != nil {
			t.Fatalf("stored a config no client can be built from: %v", err)
		}
	})
}

// checkBinding: a write over a stored config that keeps the stored secret
// (no client_secret given) never changes where the secret goes.
func checkBinding(t *testing.T, schema map[string]*framework.FieldSchema, raw map[string]any) {
	t.Helper()
	stored := defaultConfig()
	stored.URL, stored.ClientID, stored.ClientSecret = "https://acme.piwik.pro", "id", "stored-secret"
	withoutSecret := maps.Clone(raw)
	delete(withoutSecret, "client_secret")
	cfg := *stored
	if err := cfg.update(&framework.FieldData{Schema: schema, Raw: withoutSecret}, stored); err != nil {
		return
	}
	if cfg.URL != stored.URL || cfg.CACert != stored.CACert || cfg.ClientID != stored.ClientID {
		t.Fatalf("without a new secret, the stored one would go to %q (ca changed: %v, client_id %q)", cfg.URL, cfg.CACert != "", cfg.ClientID)
	}
}
