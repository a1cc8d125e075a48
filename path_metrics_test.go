package piwik

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

func TestMetrics_prometheusFormatParsesAndCounts(t *testing.T) {
	e := newEnvWithRole(t, "r", map[string]any{"token_reuse": true})
	e.mustDo(logical.ReadOperation, "creds/r", nil)
	e.mustDo(logical.ReadOperation, "creds/r", nil)
	e.piwik.FailNext(1, standin.Fault{Kind: standin.FaultNoLicense})
	e.mustDo(logical.CreateOperation, "roles/m", nil)
	_, _ = e.do(logical.ReadOperation, "creds/m", nil)

	resp, err := e.b.HandleRequest(t.Context(), &logical.Request{
		Operation: logical.ReadOperation, Path: "metrics", Storage: e.storage, MountPoint: "piwik/",
		Data: map[string]any{"format": "prometheus"},
	})
	if err != nil || resp == nil {
		t.Fatalf("metrics: %v", err)
	}
	if resp.Data[logical.HTTPStatusCode] != http.StatusOK || resp.Data[logical.HTTPContentType] != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("status %v, content type %v", resp.Data[logical.HTTPStatusCode], resp.Data[logical.HTTPContentType])
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(resp.Data[logical.HTTPRawBody].([]byte)))
	if err != nil {
		t.Fatalf("the Prometheus parser refuses the output: %v", err)
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		f, ok := families[name]
		if !ok {
			t.Fatalf("no %s", name)
		}
	metrics:
		for _, m := range f.Metric {
			got := map[string]string{}
			for _, l := range m.Label {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return float64(m.Summary.GetSampleCount())
		}
		t.Fatalf("no %s with %v", name, labels)
		return 0
	}
	mount := map[string]string{"mount": "piwik"}
	// The config's verification, the first reuse read; the second read was
	// a hit; the 402 failed.
	if v := value("piwik_tokens_minted_total", mount); v != 2 {
		t.Errorf("tokens minted %v, want 2", v)
	}
	if v := value("piwik_reuse_hits_total", mount); v != 1 {
		t.Errorf("reuse hits %v, want 1", v)
	}
	if v := value("piwik_upstream_failures_total", map[string]string{"mount": "piwik", "kind": "no_license"}); v != 1 {
		t.Errorf("no_license failures %v, want 1", v)
	}
	if v := value("piwik_upstream_request_duration_seconds", mount); v != 3 {
		t.Errorf("request duration samples %v, want the 3 requests", v)
	}
	if status, _ := statusOf(e.do(logical.ReadOperation, "metrics", map[string]any{"format": "xml"})); status != http.StatusBadRequest {
		t.Errorf("format=xml: %d, want 400", status)
	}
}

func TestMetrics_countRequestsAndFailures(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(map[string]any{"max_retries": 1})
	e.mustDo(logical.CreateOperation, "roles/r", nil)
	e.piwik.FailNext(1, standin.Fault{Kind: standin.FaultUnavailable})
	e.mustDo(logical.ReadOperation, "creds/r", nil)

	snap := e.mustDo(logical.ReadOperation, "metrics", nil).Data
	// The config write's verification, then a 503 and its retry.
	if snap["upstream_requests"] != uint64(3) || snap["tokens_minted"] != uint64(2) || snap["upstream_failures"] != uint64(1) {
		t.Errorf("metrics = %v", snap)
	}
	if got := snap["failures_by_kind"].(map[string]any)["server_error"]; got != uint64(1) {
		t.Errorf("failures_by_kind = %v, want one server_error", snap["failures_by_kind"])
	}
	if !strings.Contains(e.logs.String(), `Piwik PRO token request: role=r status=503`) {
		t.Errorf("no debug line for the failed upstream call in:\n%s", e.logs.String())
	}
}
