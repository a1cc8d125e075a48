package piwik

import (
	"context"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// benchmarkCredsRead measures what the plugin itself spends on a creds
// read, without Vault's HTTP layer, its gRPC hop to the plugin, or the lease
// bookkeeping (make bench measures those against the real server).
func benchmarkCredsRead(b *testing.B, roleData map[string]any) {
	e := newEnvWithRole(b, "r", roleData)
	req := func() *logical.Request {
		return &logical.Request{Operation: logical.ReadOperation, Path: "creds/r", Storage: e.storage}
	}
	ctx := context.Background()
	before := e.piwik.TokenRequests()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := e.b.HandleRequest(ctx, req())
			if err != nil || resp.IsError() {
				b.Fatalf("creds read failed: %v", err)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(e.piwik.TokenRequests()-before)/float64(b.N), "upstream/op")
}

// BenchmarkCredsRead_reuse is a read served from the token cache.
func BenchmarkCredsRead_reuse(b *testing.B) {
	benchmarkCredsRead(b, map[string]any{"token_reuse": true})
}

// BenchmarkCredsRead_mint is a read that mints a token against an
// in-process stand-in over loopback HTTP.
func BenchmarkCredsRead_mint(b *testing.B) {
	benchmarkCredsRead(b, nil)
}
