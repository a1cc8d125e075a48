package piwik

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/prometheus/common/expfmt"
)

func pathMetrics(b *backend) []*framework.Path {
	return []*framework.Path{{
		Pattern: "metrics",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "metrics",
		},
		Fields: map[string]*framework.FieldSchema{
			"format": {
				Type:          framework.TypeString,
				Description:   `"json" (the default) or "prometheus" for the Prometheus text exposition format (read it with vault read -format=raw, or GET ?format=prometheus).`,
				Default:       "json",
				AllowedValues: []any{"json", "prometheus"},
				Query:         true,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathMetricsRead,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb: "read",
				},
				Summary: "Counters of token requests on this node since the plugin started.",
				Responses: map[int][]framework.Response{
					http.StatusOK: {{
						Description: "OK",
						Fields: map[string]*framework.FieldSchema{
							"since":                   {Type: framework.TypeString, Description: "When counting started (RFC 3339)."},
							"tokens_minted":           {Type: framework.TypeInt64, Description: "Tokens Piwik PRO issued."},
							"reuse_hits":              {Type: framework.TypeInt64, Description: "Reads served from the token cache of a token_reuse role."},
							"stale_serves":            {Type: framework.TypeInt64, Description: "Reads served a still-valid cached token because a new one could not be had."},
							"tokens_loaded":           {Type: framework.TypeInt64, Description: "Tokens of token_reuse roles loaded from storage instead of asked of Piwik PRO."},
							"background_refreshes":    {Type: framework.TypeInt64, Description: "Background mints of a token_reuse role's next token (refresh-ahead and periodic)."},
							"upstream_requests":       {Type: framework.TypeInt64, Description: "Requests sent to Piwik PRO, retries included."},
							"requests_not_sent":       {Type: framework.TypeInt64, Description: "Token requests refused without a request, inside a rate-limit or backoff window."},
							"not_sent_by_kind":        {Type: framework.TypeMap, Description: "requests_not_sent by the kind of failure that opened the window."},
							"upstream_in_flight_peak": {Type: framework.TypeInt64, Description: inFlightPeakHelp},
							"upstream_failures":       {Type: framework.TypeInt64, Description: "Requests that failed."},
							"requests_abandoned":      {Type: framework.TypeInt64, Description: "Requests whose caller stopped waiting (its deadline or cancellation); not counted as failures."},
							"failures_by_kind":        {Type: framework.TypeMap, Description: "Failed requests by kind: unreachable, tls, timeout, redirect, credentials, no_license, rate_limited, server_error, unexpected, invalid_reply, other."},
							"upstream_latency_ms":     {Type: framework.TypeMap, Description: fmt.Sprintf("Percentiles (p50, p90, p99, max) of the last %d request latencies, in milliseconds.", latencyWindow)},
						},
					}},
				},
			},
		},
		HelpSynopsis:    pathMetricsHelpSyn,
		HelpDescription: pathMetricsHelpDesc,
	}}
}

func (b *backend) pathMetricsRead(_ context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	switch format := d.Get("format").(string); format {
	case "json":
		return &logical.Response{Data: b.metrics.snapshot()}, nil
	case "prometheus":
		text, err := b.metrics.prometheus(strings.TrimSuffix(req.MountPoint, "/"))
		if err != nil {
			return nil, err
		}
		return &logical.Response{Data: map[string]any{
			logical.HTTPContentType: string(expfmt.NewFormat(expfmt.TypeTextPlain)),
			logical.HTTPRawBody:     text,
			logical.HTTPStatusCode:  http.StatusOK,
		}}, nil
	default:
		return logical.ErrorResponse(fmt.Sprintf(`format: %q is neither "json" nor "prometheus"`, format)), nil
	}
}

const pathMetricsHelpSyn = `Counters of token requests on this node.`

const pathMetricsHelpDesc = `
Counts, since the plugin process started on this Vault node, the tokens
minted, the reads served from a token_reuse cache (and those served a cached
token during an outage), the requests sent to Piwik PRO and their failures
by kind, the requests not sent inside a rate-limit or backoff window, and
the latency percentiles of recent requests. The counters are per node, per
mount and in memory: they restart from zero when the plugin restarts.

With format=prometheus the answer is the Prometheus text exposition format,
labelled with the mount, as sys/metrics gives it for Vault itself:

  $ vault read -format=raw piwik/metrics format=prometheus
  $ curl -H "X-Vault-Token: ..." "$VAULT_ADDR/v1/piwik/metrics?format=prometheus"
`
