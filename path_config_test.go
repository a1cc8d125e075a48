package piwik

import (
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

func TestConfig_readBeforeWriteReturnsNothing(t *testing.T) {
	e := newEnv(t)
	resp, err := e.do(logical.ReadOperation, "config", nil)
	if err != nil || resp != nil {
		t.Fatalf("read of unwritten config = %v, %v; want nil, nil", resp, err)
	}
}

func TestConfig_readNeverReturnsTheSecret(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"request_timeout": "30s", "max_retries": 1})

	resp := e.mustDo(logical.ReadOperation, "config", nil)
	want := map[string]any{
		"url":                e.server.URL,
		"client_id":          testClientID,
		"request_timeout":    int64(30),
		"ca_cert":            "",
		"verify_credentials": true,
		"max_retries":        1,
	}
	if !reflect.DeepEqual(resp.Data, want) {
		t.Errorf("config read = %#v, want %#v", resp.Data, want)
	}
	e.assertNoSecret("config read", responseText(t, resp, nil))
}

func TestConfig_normalizesURL(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"url": e.server.URL + "/tenant-a//"})
	resp := e.mustDo(logical.ReadOperation, "config", nil)
	if got, want := resp.Data["url"], e.server.URL+"/tenant-a"; got != want {
		t.Errorf("url = %q, want %q (trailing slashes dropped, prefix kept)", got, want)
	}
	// The prefix is used: the stand-in serves <prefix>/auth/token too.
	e.mustDo(logical.UpdateOperation, "roles/r", nil)
	e.mustDo(logical.ReadOperation, "creds/r", nil)
}

func TestConfig_createRequiresEveryField(t *testing.T) {
	e := newEnv(t)
	for name, data := range map[string]map[string]any{
		"no url":           {"client_id": testClientID, "client_secret": testClientSecret},
		"no client_secret": {"url": e.server.URL, "client_id": testClientID},
		"no client_id":     {"url": e.server.URL, "client_secret": testClientSecret},
	} {
		resp, err := e.do(logical.CreateOperation, "config", data)
		if err != nil || !resp.IsError() {
			t.Errorf("%s: create accepted", name)
		}
	}
	if len(e.snapshot()) != 0 {
		t.Errorf("refused creates stored something")
	}
}

func TestConfig_patchKeepsSecretAndRequiresConfig(t *testing.T) {
	e := newEnv(t)
	if _, err := e.do(logical.PatchOperation, "config", map[string]any{"max_retries": 1}); !isStatus(err, 404) {
		t.Fatalf("patch before any config accepted")
	}
	e.writeConfig(nil)
	e.mustDo(logical.PatchOperation, "config", map[string]any{"request_timeout": "20s"})

	cfg, err := getConfig(t.Context(), e.storage)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientSecret != testClientSecret || cfg.RequestTimeout.Seconds() != 20 {
		t.Errorf("after patch: secret kept=%v timeout=%s", cfg.ClientSecret == testClientSecret, cfg.RequestTimeout)
	}
}

func TestConfig_deleteRemovesEverything(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	e.mustDo(logical.DeleteOperation, "config", nil)
	if resp, _ := e.do(logical.ReadOperation, "config", nil); resp != nil {
		t.Errorf("config still readable after delete")
	}
	e.mustDo(logical.UpdateOperation, "roles/r", nil)
	resp, _ := e.do(logical.ReadOperation, "creds/r", nil)
	if !strings.Contains(errorText(resp), "write piwik/config first") {
		t.Errorf("creds without config: %q, want a hint to write piwik/config", errorText(resp))
	}
}

// TestConfig_verifyNamesEachUpstreamFailure pins the message an operator
// gets for each way the verification token request can fail.
func TestConfig_verifyNamesEachUpstreamFailure(t *testing.T) {
	closed := closedPortURL(t)
	tlsServer := httptest.NewTLSServer(standin.New(standin.Options{Credentials: []standin.Credential{{ClientID: testClientID, ClientSecret: testClientSecret}}}))
	t.Cleanup(tlsServer.Close)

	cases := []struct {
		name   string
		fault  standin.Fault
		data   map[string]any
		want   string
		status int // what Vault answers: 400 only for the caller's bad input
	}{
		{name: "unreachable", data: map[string]any{"url": closed}, want: "unreachable", status: http.StatusBadGateway},
		{name: "TLS failure", data: map[string]any{"url": tlsServer.URL}, want: "TLS", status: http.StatusBadGateway},
		{name: "timeout", fault: standin.Fault{Kind: standin.FaultHang}, data: map[string]any{"request_timeout": "1s"}, want: "timed out", status: http.StatusGatewayTimeout},
		{name: "credentials rejected", data: map[string]any{"client_secret": "wrong"}, want: "invalid_client", status: http.StatusBadRequest},
		{name: "no license", fault: standin.Fault{Kind: standin.FaultNoLicense}, want: "no active license", status: http.StatusBadGateway},
		{name: "rate limited", fault: standin.Fault{Kind: standin.FaultRateLimit, RetryAfter: 120}, want: "try again after 2m0s", status: http.StatusTooManyRequests},
		{name: "unexpected reply", fault: standin.Fault{Kind: standin.FaultServerError}, want: "HTTP 500", status: http.StatusBadGateway},
		{name: "HTML instead of JSON", fault: standin.Fault{Kind: standin.FaultHTML}, want: "HTML page", status: http.StatusBadGateway},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.piwik.SetFault(tc.fault)
			data := map[string]any{"url": e.server.URL, "client_id": testClientID, "client_secret": testClientSecret, "max_retries": 0}
			for k, v := range tc.data {
				data[k] = v
			}
			resp, err := e.do(logical.UpdateOperation, "config", data)
			status, msg := statusOf(resp, err)
			if status != tc.status {
				t.Errorf("status %d, want %d", status, tc.status)
			}
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, "verify_credentials") {
				t.Errorf("error = %q, want it to mention verify_credentials and %q", msg, tc.want)
			}
			if strings.Contains(msg, "<html") || strings.Contains(msg, "<body") {
				t.Errorf("error carries raw HTML: %q", msg)
			}
			e.assertNoSecret("error", msg)
			if len(e.snapshot()) != 0 {
				t.Errorf("a failed verification stored the config")
			}
		})
	}
}

func TestConfig_caCertTrustsPrivateCA(t *testing.T) {
	e := newEnv(t)
	tlsServer := httptest.NewTLSServer(e.piwik)
	t.Cleanup(tlsServer.Close)
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsServer.Certificate().Raw}))

	e.writeConfig(map[string]any{"url": tlsServer.URL, "ca_cert": caPEM})
	e.mustDo(logical.UpdateOperation, "roles/r", nil)
	e.mustDo(logical.ReadOperation, "creds/r", nil)
}

func TestConfig_verifyCanBeTurnedOff(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"url": closedPortURL(t), "verify_credentials": false})
	if e.piwik.TokenRequests() != 0 {
		t.Errorf("verify_credentials=false still requested a token")
	}
}

// closedPortURL returns a loopback URL nothing listens on.
func closedPortURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func TestConfig_secretFromAFileWithATrailingNewline(t *testing.T) {
	e := newEnv(t)
	for _, newline := range []string{"\n", "\r\n"} {
		e.mustDo(logical.UpdateOperation, "config", map[string]any{
			"url": e.server.URL, "client_id": testClientID + newline, "client_secret": testClientSecret + newline,
		})
		if got := e.mustDo(logical.ReadOperation, "config", nil).Data["client_id"]; got != testClientID {
			t.Errorf("%q: client_id stored as %q, want it without the newline", newline, got)
		}
		var stored piwikConfig
		entry, _ := e.storage.Get(t.Context(), configStoragePath)
		if err := entry.DecodeJSON(&stored); err != nil || stored.ClientSecret != testClientSecret {
			t.Errorf("%q: the stored secret kept the newline", newline)
		}
	}
}

func TestConfig_requestTimeoutIsStoredAsGiven(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	for _, tc := range []struct {
		given any
		want  int64
	}{{"2", 2}, {"2s", 2}, {2, 2}, {json.Number("30"), 30}, {"1m", 60}} {
		e.mustDo(logical.PatchOperation, "config", map[string]any{"request_timeout": tc.given})
		if got := e.mustDo(logical.ReadOperation, "config", nil).Data["request_timeout"]; got != tc.want {
			t.Errorf("request_timeout %#v stored as %v, want %d", tc.given, got, tc.want)
		}
	}
}

func TestConfig_concurrentWritesLoseNothing(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	paused := &pausingStorage{Storage: e.storage}
	e.storage = paused

	// Writer A (a patch of request_timeout) has read the config and is
	// about to verify; writer B rotates to another credential.
	paused.arm("config")
	aDone := make(chan error)
	go func() {
		resp, err := e.do(logical.PatchOperation, "config", map[string]any{"request_timeout": "20s"})
		if err == nil && resp.IsError() {
			err = resp.Error()
		}
		aDone <- err
	}()
	<-paused.reached
	bDone := make(chan error)
	go func() {
		resp, err := e.do(logical.UpdateOperation, "config", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
		if err == nil && resp.IsError() {
			err = resp.Error()
		}
		bDone <- err
	}()
	// Without a lock B reads the same old config now; with it, B waits.
	// Either way A goes on after a moment; what is stored decides.
	select {
	case err := <-bDone:
		t.Fatalf("writer B finished while writer A held the config (err=%v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(paused.release)
	if err := <-aDone; err != nil {
		t.Fatalf("writer A: %v", err)
	}
	if err := <-bDone; err != nil {
		t.Fatalf("writer B: %v", err)
	}
	cfg := e.mustDo(logical.ReadOperation, "config", nil).Data
	if cfg["request_timeout"] != int64(20) || cfg["client_id"] != roleClientID {
		t.Errorf("config after two concurrent writes = %v; want request_timeout 20 and client_id %s", cfg, roleClientID)
	}
}
