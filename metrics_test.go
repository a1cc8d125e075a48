package piwik

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// kindLabel finds the kind label of a Prometheus sample line.
var kindLabel = regexp.MustCompile(`kind="[^"]*"`)

// Prometheus labels are the mount and a bounded set of kinds: no role
// names, client ids or upstream text.
func TestMetrics_prometheusLabelsCarryNothingUpstream(t *testing.T) {
	e := hostileEnv(t, func(w http.ResponseWriter, r *http.Request) {
		secret, _ := requestSecret(r)
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, `{"error":"`+secret+`"}`)
	}, nil)
	_, _ = e.do(logical.ReadOperation, "creds/r", nil)
	resp, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "metrics",
		Data: map[string]any{"format": "prometheus"}, Storage: e.storage, MountPoint: "piwik/"})
	if err != nil {
		t.Fatal(err)
	}
	text := string(resp.Data[logical.HTTPRawBody].([]byte))
	e.assertNoSecret("prometheus metrics", text)
	known := map[string]bool{}
	for _, kind := range allKinds {
		known[`kind="`+string(kind)+`"`] = true
	}
	for _, line := range strings.Split(text, "\n") {
		if label := kindLabel.FindString(line); label != "" && !known[label] {
			t.Errorf("unexpected kind label: %s", line)
		}
		if strings.Contains(line, testClientID) || strings.Contains(line, `"r"`) {
			t.Errorf("label names a client id or role: %s", line)
		}
	}
}

// The Prometheus text keeps a hostile mount path inside its label value:
// the encoder escapes quotes and newlines, so no sample can be injected.
func TestMetrics_mountPathCannotInjectPrometheusSamples(t *testing.T) {
	m := newMetrics(new(atomic.Int64))
	mount := "a\"b\\\nc} 1\nevil_metric{x=\"y\"} 42\n# TYPE evil_metric counter"
	text, err := m.prometheus(mount)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("output does not parse: %v", err)
	}
	if _, ok := families["evil_metric"]; ok {
		t.Errorf("a mount path injected a metric")
	}
	if got := families["piwik_tokens_minted_total"].Metric[0].Label[0].GetValue(); got != mount {
		t.Errorf("mount label %q, want %q", got, mount)
	}
}
