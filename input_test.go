package piwik

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestInput_typedSecretIsRefusedWithoutEcho(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(nil)
	e.rememberSecret("typed-secret-" + secretCore)
	for _, value := range []any{
		map[string]any{"v": "typed-secret-" + secretCore},
		[]any{"typed-secret-" + secretCore},
		12345678,
		true,
	} {
		for _, path := range []string{"config", "roles/r"} {
			for _, field := range []string{"client_secret", "client_id"} {
				before := e.snapshot()
				data := map[string]any{field: value}
				req := &logical.Request{Operation: logical.UpdateOperation, Path: path, Data: data, Storage: e.storage}
				_, _, existErr := e.b.HandleExistenceCheck(context.Background(), req)
				resp, err := e.do(logical.UpdateOperation, path, data)
				status, msg := statusOf(resp, err)
				if status != http.StatusBadRequest || !strings.Contains(msg, field+": must be a string, got") {
					t.Errorf("%s %s=%T: %d %q, want 400 naming the field and type", path, field, value, status, msg)
				}
				if existErr == nil || !strings.Contains(existErr.Error(), field+": must be a string") {
					t.Errorf("existence check of %s %s=%T: %v, want the same refusal", path, field, value, existErr)
				}
				e.assertNoSecret("refusal", msg)
				if existErr != nil {
					e.assertNoSecret("existence check", existErr.Error())
				}
				if fmt.Sprint(e.snapshot()) != fmt.Sprint(before) {
					t.Errorf("%s: storage changed", path)
				}
			}
		}
	}
}

func TestInput_nullResetsEveryFieldToItsDefault(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"request_timeout": "30s", "max_retries": 7, "verify_credentials": false})
	e.mustDo(logical.PatchOperation, "config", map[string]any{"request_timeout": nil, "max_retries": nil, "verify_credentials": nil})
	cfg := e.mustDo(logical.ReadOperation, "config", nil).Data
	if cfg["request_timeout"] != int64(10) || cfg["max_retries"] != 3 || cfg["verify_credentials"] != true {
		t.Errorf("config after nulls = %v, want the defaults 10, 3, true", cfg)
	}
	for _, field := range []string{"url", "client_id", "client_secret"} {
		before := e.snapshot()
		status, msg := statusOf(e.do(logical.PatchOperation, "config", map[string]any{field: nil}))
		if status != http.StatusBadRequest || !strings.Contains(msg, field) {
			t.Errorf("null %s: %d %q, want 400 naming it (it has no default)", field, status, msg)
		}
		if fmt.Sprint(e.snapshot()) != fmt.Sprint(before) {
			t.Errorf("null %s changed storage", field)
		}
	}

	e.mustDo(logical.CreateOperation, "roles/r", map[string]any{"ttl": "5m", "token_reuse": true, "reuse_min_remaining": "60s", "leased": false,
		"client_id": roleClientID, "client_secret": roleClientSecret})
	e.mustDo(logical.PatchOperation, "roles/r", map[string]any{"ttl": nil, "token_reuse": nil, "reuse_min_remaining": nil, "leased": nil})
	role := e.mustDo(logical.ReadOperation, "roles/r", nil).Data
	if role["ttl"] != int64(0) || role["token_reuse"] != false || role["reuse_min_remaining"] != int64(0) || role["leased"] != true {
		t.Errorf("role after nulls = %v, want the defaults", role)
	}
	if role["client_id"] != roleClientID {
		t.Errorf("nulls of other fields dropped the role's credentials")
	}
	if status, _ := statusOf(e.do(logical.PatchOperation, "roles/r", map[string]any{"client_secret": nil})); status != http.StatusBadRequest {
		t.Errorf("null client_secret alone: %d, want 400", status)
	}
	e.mustDo(logical.PatchOperation, "roles/r", map[string]any{"client_id": nil})
	if role := e.mustDo(logical.ReadOperation, "roles/r", nil).Data; role["own_credentials"] != false {
		t.Errorf("null client_id: the role kept its credentials: %v", role)
	}
}

// TestInput_refusedWithFieldAndNothingChanges pins, for each bad input
// across config, roles and creds, the 4xx status Vault would answer with,
// that the error names the field, and that storage is byte-for-byte what it
// was before.
func TestInput_refusedWithFieldAndNothingChanges(t *testing.T) {
	e := newEnvWithRole(t, "r", map[string]any{"ttl": "10m"})
	e.mustDo(logical.CreateOperation, "roles/own", map[string]any{"client_id": roleClientID, "client_secret": roleClientSecret})
	before := e.snapshot()

	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}))
	cases := []struct {
		name      string
		op        logical.Operation
		path      string
		data      map[string]any
		wantField string // "" for router-level refusals that name no field
		status    int
	}{
		// piwik/config
		{"config: ftp scheme", logical.UpdateOperation, "config", map[string]any{"url": "ftp://acme.piwik.pro"}, "url", 400},
		{"config: javascript scheme", logical.UpdateOperation, "config", map[string]any{"url": "javascript:alert(1)"}, "url", 400},
		{"config: plain http to a remote host", logical.UpdateOperation, "config", map[string]any{"url": "http://acme.piwik.pro"}, "url", 400},
		{"config: plain http to a private address", logical.UpdateOperation, "config", map[string]any{"url": "http://10.0.0.8"}, "url", 400},
		{"config: no host", logical.UpdateOperation, "config", map[string]any{"url": "https://"}, "url", 400},
		{"config: relative url", logical.UpdateOperation, "config", map[string]any{"url": "acme.piwik.pro"}, "url", 400},
		{"config: user info in url", logical.UpdateOperation, "config", map[string]any{"url": "https://user:pw@acme.piwik.pro"}, "url", 400},
		{"config: query in url", logical.UpdateOperation, "config", map[string]any{"url": "https://acme.piwik.pro/?a=b"}, "url", 400},
		{"config: fragment in url", logical.UpdateOperation, "config", map[string]any{"url": "https://acme.piwik.pro/#x"}, "url", 400},
		{"config: control character in url", logical.UpdateOperation, "config", map[string]any{"url": "https://acme.piwik.pro/\n"}, "url", 400},
		{"config: empty url", logical.UpdateOperation, "config", map[string]any{"url": ""}, "url", 400},
		{"config: oversized url", logical.UpdateOperation, "config", map[string]any{"url": "https://acme.piwik.pro/" + strings.Repeat("a", 3000)}, "url", 400},
		{"config: url of the wrong type", logical.UpdateOperation, "config", map[string]any{"url": []any{"https://a"}}, "url", 400},
		{"config: empty client_id", logical.UpdateOperation, "config", map[string]any{"client_id": "", "client_secret": "x"}, "client_id", 400},
		{"config: client_id changed without secret", logical.UpdateOperation, "config", map[string]any{"client_id": "someone-else"}, "client_secret", 400},
		{"config: empty client_secret", logical.UpdateOperation, "config", map[string]any{"client_secret": ""}, "client_secret", 400},
		{"config: control character in client_secret", logical.UpdateOperation, "config", map[string]any{"client_secret": "a\x00b"}, "client_secret", 400},
		{"config: oversized client_secret", logical.UpdateOperation, "config", map[string]any{"client_secret": strings.Repeat("s", 2000)}, "client_secret", 400},
		{"config: zero request_timeout", logical.UpdateOperation, "config", map[string]any{"request_timeout": 0}, "request_timeout", 400},
		{"config: negative request_timeout", logical.UpdateOperation, "config", map[string]any{"request_timeout": "-5s"}, "request_timeout", 400},
		{"config: overflowing request_timeout", logical.UpdateOperation, "config", map[string]any{"request_timeout": "99999999999999h"}, "request_timeout", 400},
		{"config: request_timeout too long", logical.UpdateOperation, "config", map[string]any{"request_timeout": "100h"}, "request_timeout", 400},
		{"config: request_timeout not a duration", logical.UpdateOperation, "config", map[string]any{"request_timeout": "soon"}, "request_timeout", 400},
		{"config: request_timeout not whole seconds", logical.UpdateOperation, "config", map[string]any{"request_timeout": "1.9s"}, "request_timeout", 400},
		{"config: sub-second request_timeout", logical.UpdateOperation, "config", map[string]any{"request_timeout": "500ms"}, "request_timeout", 400},
		{"config: fractional request_timeout number", logical.UpdateOperation, "config", map[string]any{"request_timeout": json.Number("1.5")}, "request_timeout", 400},
		{"config: client_secret with a leading space", logical.UpdateOperation, "config", map[string]any{"client_secret": " s3cret"}, "client_secret", 400},
		{"config: client_secret with a trailing space", logical.UpdateOperation, "config", map[string]any{"client_secret": "s3cret "}, "client_secret", 400},
		{"config: client_secret with two trailing newlines", logical.UpdateOperation, "config", map[string]any{"client_secret": "s3cret\n\n"}, "client_secret", 400},
		{"config: client_secret with a trailing CR alone", logical.UpdateOperation, "config", map[string]any{"client_secret": "s3cret\r"}, "client_secret", 400},
		{"config: client_secret that is only a newline", logical.UpdateOperation, "config", map[string]any{"client_secret": "\n"}, "client_secret", 400},
		{"config: client_id with a trailing tab", logical.UpdateOperation, "config", map[string]any{"client_id": "id\t", "client_secret": "s"}, "client_id", 400},
		{"config: invalid PEM", logical.UpdateOperation, "config", map[string]any{"ca_cert": "not a certificate"}, "ca_cert", 400},
		{"config: PEM holding a key", logical.UpdateOperation, "config", map[string]any{"ca_cert": keyPEM}, "ca_cert", 400},
		{"config: negative max_retries", logical.UpdateOperation, "config", map[string]any{"max_retries": -1}, "max_retries", 400},
		{"config: too many max_retries", logical.UpdateOperation, "config", map[string]any{"max_retries": 99}, "max_retries", 400},
		{"config: max_retries not a number", logical.UpdateOperation, "config", map[string]any{"max_retries": "three"}, "max_retries", 400},
		{"config: verify_credentials not a bool", logical.UpdateOperation, "config", map[string]any{"verify_credentials": "maybe"}, "verify_credentials", 400},
		{"config: unknown field", logical.UpdateOperation, "config", map[string]any{"client_secert": "typo"}, "client_secert", 400},
		{"config: credentials Piwik PRO rejects", logical.UpdateOperation, "config", map[string]any{"client_secret": "wrong-secret"}, "verify_credentials", 400},

		// piwik/roles/<name>
		{"role: negative ttl", logical.UpdateOperation, "roles/r", map[string]any{"ttl": "-1s"}, "ttl", 400},
		{"role: ttl not a duration", logical.UpdateOperation, "roles/r", map[string]any{"ttl": "forever"}, "ttl", 400},
		{"role: overflowing ttl", logical.UpdateOperation, "roles/r", map[string]any{"ttl": "9999999999h"}, "ttl", 400},
		{"role: ttl longer than any token", logical.UpdateOperation, "roles/r", map[string]any{"ttl": "800h"}, "ttl", 400},
		{"role: client_id without client_secret", logical.UpdateOperation, "roles/r", map[string]any{"client_id": roleClientID}, "client_secret", 400},
		{"role: client_secret without client_id", logical.UpdateOperation, "roles/r", map[string]any{"client_secret": roleClientSecret}, "client_id", 400},
		{"role: credentials Piwik PRO rejects", logical.UpdateOperation, "roles/own", map[string]any{"client_id": roleClientID, "client_secret": "wrong"}, "client_secret", 400},
		{"role: control character in client_id", logical.UpdateOperation, "roles/r", map[string]any{"client_id": "a\tb", "client_secret": "x"}, "client_id", 400},
		{"role: negative reuse_min_remaining", logical.UpdateOperation, "roles/r", map[string]any{"reuse_min_remaining": "-1m"}, "reuse_min_remaining", 400},
		{"role: sub-second ttl", logical.UpdateOperation, "roles/r", map[string]any{"ttl": "500ms"}, "ttl", 400},
		{"role: negative sub-second ttl", logical.UpdateOperation, "roles/r", map[string]any{"ttl": "-500ms"}, "ttl", 400},
		{"role: ttl just under a second", logical.UpdateOperation, "roles/r", map[string]any{"ttl": "999ms"}, "ttl", 400},
		{"role: fractional ttl number", logical.UpdateOperation, "roles/r", map[string]any{"ttl": 0.5}, "ttl", 400},
		{"role: ttl not whole seconds", logical.UpdateOperation, "roles/r", map[string]any{"ttl": "90.5s"}, "ttl", 400},
		{"role: sub-second reuse_min_remaining", logical.UpdateOperation, "roles/r", map[string]any{"reuse_min_remaining": "500ms"}, "reuse_min_remaining", 400},
		{"role: negative sub-second reuse_min_remaining", logical.UpdateOperation, "roles/r", map[string]any{"reuse_min_remaining": "-500ms"}, "reuse_min_remaining", 400},
		{"role: client_secret with surrounding spaces", logical.UpdateOperation, "roles/own", map[string]any{"client_secret": " " + roleClientSecret + " "}, "client_secret", 400},
		{"role: token_reuse not a bool", logical.UpdateOperation, "roles/r", map[string]any{"token_reuse": "often"}, "token_reuse", 400},
		{"role: unknown field", logical.UpdateOperation, "roles/r", map[string]any{"max_ttl": "1h"}, "max_ttl", 400},
		{"role: oversized name", logical.UpdateOperation, "roles/" + strings.Repeat("n", 200), nil, "name", 400},
		{"role: patch of a missing role", logical.PatchOperation, "roles/missing", map[string]any{"ttl": "1m"}, "missing", 404},
		{"role: name with a space", logical.UpdateOperation, "roles/bad name", nil, "", 404},
		{"role: name with a slash", logical.UpdateOperation, "roles/a/b", nil, "", 404},
		{"role: name starting with a dash", logical.UpdateOperation, "roles/-r", nil, "", 404},

		// piwik/creds/<name>
		{"creds: unknown role", logical.ReadOperation, "creds/ghost", nil, "ghost", 400},
		{"creds: name with a dot dot segment", logical.ReadOperation, "creds/../config", nil, "", 404},
		{"creds: empty name", logical.ReadOperation, "creds/", nil, "", 404},
		{"creds: write instead of read", logical.UpdateOperation, "creds/r", nil, "", 405},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := &logical.Request{Operation: tc.op, Path: tc.path, Data: tc.data, Storage: e.storage}
			resp, err := e.b.HandleRequest(t.Context(), req)
			status, httpErr := httpStatus(req, resp, err)
			if status != tc.status || httpErr == nil {
				t.Fatalf("status %d (%v), want %d", status, httpErr, tc.status)
			}
			if !strings.Contains(httpErr.Error(), tc.wantField) {
				t.Errorf("error %q does not name %q", httpErr, tc.wantField)
			}
			e.assertNoSecret("error", httpErr.Error())
			if after := e.snapshot(); !reflect.DeepEqual(before, after) {
				t.Errorf("storage changed by a refused request")
			}
		})
	}
	if len(cases) < 30 {
		t.Errorf("only %d bad inputs", len(cases))
	}
}

// httpStatus is the status and error Vault's HTTP layer would answer with:
// a coded error's own code, else what RespondErrorCommon derives.
func httpStatus(req *logical.Request, resp *logical.Response, err error) (int, error) {
	var coded logical.HTTPCodedError
	if errors.As(err, &coded) {
		return coded.Code(), err
	}
	return logical.RespondErrorCommon(req, resp, err)
}
