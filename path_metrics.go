package piwik

import (
	"context"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathMetrics(b *backend) []*framework.Path {
	return []*framework.Path{{
		Pattern: "metrics",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "metrics",
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
							"since":               {Type: framework.TypeString, Description: "When counting started (RFC 3339)."},
							"tokens_minted":       {Type: framework.TypeInt64, Description: "Tokens Piwik PRO issued."},
							"reuse_hits":          {Type: framework.TypeInt64, Description: "Reads served from the token cache of a token_reuse role."},
							"upstream_requests":   {Type: framework.TypeInt64, Description: "Requests sent to Piwik PRO, retries included."},
							"upstream_failures":   {Type: framework.TypeInt64, Description: "Requests that failed."},
							"failures_by_kind":    {Type: framework.TypeMap, Description: "Failed requests by kind: unreachable, tls, timeout, credentials, no_license, rate_limited, server_error, unexpected, invalid_reply, canceled."},
							"upstream_latency_ms": {Type: framework.TypeMap, Description: "Percentiles (p50, p90, p99, max) of the last 1024 request latencies, in milliseconds."},
						},
					}},
				},
			},
		},
		HelpSynopsis:    pathMetricsHelpSyn,
		HelpDescription: pathMetricsHelpDesc,
	}}
}

func (b *backend) pathMetricsRead(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
	return &logical.Response{Data: b.metrics.snapshot()}, nil
}

const pathMetricsHelpSyn = `Counters of token requests on this node.`

const pathMetricsHelpDesc = `
Counts, since the plugin process started on this Vault node, the tokens
minted, the reads served from a token_reuse cache, the requests sent to Piwik
PRO and their failures by kind, and the latency percentiles of recent
requests. The counters are per node and in memory: they restart from zero
when the plugin restarts.
`
