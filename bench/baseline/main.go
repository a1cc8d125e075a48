// Command baseline is a minimal Vault secrets plugin built only for the load
// benchmark (make bench). Reading creds/<name> returns the same leased
// secret every time: no storage read, no upstream request, a Revoke that does
// nothing. It measures the floor that any plugin handing out leased tokens
// can reach on a given Vault: Vault's HTTP layer, its gRPC hop to the plugin
// process and its lease bookkeeping, and nothing else. Reading
// unleased/<name> returns the same data and a ttl without a lease, as the
// piwik plugin's roles with leased=false do: the floor without the lease.
package main

import (
	"context"
	"encoding/base64"
	"os"
	"strings"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin"
)

// leaseTTL matches the lifetime of the stand-in's tokens, so that the
// baseline's leases weigh on Vault as the piwik plugin's do.
const leaseTTL = 1800 * time.Second

// secretType is the lease type of the constant secret.
const secretType = "baseline_token"

// The constant secret mirrors the shape and size of what piwik/creds/<role>
// returns for a stand-in token (a 660-byte JWT and the same fields), so that
// the two differ only in the work behind them, not in what Vault encodes,
// stores with the lease and sends.
var (
	constantToken = base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"JWT","alg":"RS256"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"oauth","aud":"Client-Name-baseline","iat":1795812559,"exp":1795814359,"sub":"00000000-0000-0000-0000-000000000000","org":"default","eml":"baseline@example.com","jti":"00000000000000000000000000000000"}`)) + "." +
		strings.Repeat("s", 342)
	constantExpiry = time.Now().Add(leaseTTL).UTC().Format(time.RFC3339)
)

// main serves the plugin. The benchmark runs it only in the pinned Vault,
// which gives plugins their mTLS itself: unlike the piwik plugin's binary,
// it needs no TLS provider for older releases.
func main() {
	if err := plugin.ServeMultiplex(&plugin.ServeOpts{BackendFactoryFunc: factory}); err != nil {
		hclog.New(&hclog.LoggerOptions{}).Error("plugin shutting down", "error", err)
		os.Exit(1)
	}
}

// factory returns the backend; Vault calls it once per mount.
func factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend()
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

func newBackend() *framework.Backend {
	b := &framework.Backend{
		Help:           "A benchmark floor: creds/<name> returns a constant lease.",
		BackendType:    logical.TypeLogical,
		RunningVersion: "v0.1.0",
	}
	b.Secrets = []*framework.Secret{{
		Type: secretType,
		Fields: map[string]*framework.FieldSchema{
			"access_token": {
				Type:        framework.TypeString,
				Description: "A constant token.",
			},
		},
		Revoke: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
			return nil, nil
		},
	}}
	b.Paths = []*framework.Path{
		constantPath("creds", "credentials", "Return the constant leased secret.",
			"Returns the same secret as a 30-minute, non-renewable lease on every read, without touching storage or the network.",
			func(name string) *logical.Response {
				resp := b.Secret(secretType).Response(constantData(), map[string]any{"role": name, "expires_at": constantExpiry})
				resp.Secret.TTL = leaseTTL
				resp.Secret.MaxTTL = leaseTTL
				resp.Secret.Renewable = false
				return resp
			}),
		constantPath("unleased", "unleased-credentials", "Return the constant secret without a lease.",
			"Returns the same secret and its ttl in the data on every read, without a lease, storage or the network.",
			func(string) *logical.Response {
				data := constantData()
				data["ttl"] = int64(leaseTTL.Seconds())
				return &logical.Response{Data: data}
			}),
	}
	return b
}

// constantData is the secret's data, as piwik/creds/<role> shapes it.
func constantData() map[string]any {
	return map[string]any{
		"access_token": constantToken,
		"token_type":   "Bearer",
		"expires_at":   constantExpiry,
		"sub":          "00000000-0000-0000-0000-000000000000",
		"org":          "default",
		"aud":          "Client-Name-baseline",
	}
}

// constantPath is <prefix>/<name>, whose reads return respond(name).
func constantPath(prefix, suffix, summary, desc string, respond func(name string) *logical.Response) *framework.Path {
	return &framework.Path{
		Pattern: prefix + "/" + framework.GenericNameRegex("name"),
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: "baseline",
			OperationSuffix: suffix,
		},
		Fields: map[string]*framework.FieldSchema{
			"name": {
				Type:        framework.TypeString,
				Description: "Any name; every name returns the same secret.",
				Required:    true,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: func(_ context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
					return respond(d.Get("name").(string)), nil
				},
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				Summary:      summary,
			},
		},
		HelpSynopsis:    summary,
		HelpDescription: desc,
	}
}
