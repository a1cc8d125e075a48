package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestProxyServesClientsWithoutVaultToken runs the example Vault Proxy
// config (examples/proxy) with AppRole auto-auth and use_auto_auth_token in
// front of the shared dev server. Two HTTP clients that hold no Vault token
// read piwik/creds/reporting through it concurrently; each read must be a
// lease of its own with a token Piwik PRO accepts. A role with leased=false
// is read through it too.
func TestProxyServesClientsWithoutVaultToken(t *testing.T) {
	env := sharedDev(t)
	v, st := env.vault, env.standin
	dir := testDir(t)

	const unleased = "proxy-unleased"
	v.vault(t, "write", "piwik/roles/"+unleased, "leased=false")
	t.Cleanup(func() { v.vault(t, "delete", "piwik/roles/"+unleased) })
	policyFile := filepath.Join(dir, "proxy-unleased.hcl")
	writeFile(t, policyFile, fmt.Sprintf("path %q {\n  capabilities = [\"read\"]\n}\n", "piwik/creds/"+unleased))
	v.vault(t, "policy", "write", "proxy-unleased", policyFile)
	v.vault(t, "policy", "write", "reporting-reader", filepath.Join(examplesDir(t), "policies", "reporting-reader.hcl"))
	roleID, secretID := v.approle(t, "reporting-reader", "proxy-unleased")
	t.Cleanup(func() { v.vault(t, "auth", "disable", "approle") })

	confDir := mkdir(t, filepath.Join(dir, "etc"))
	writeFile(t, filepath.Join(confDir, "role-id"), roleID)
	writeFile(t, filepath.Join(confDir, "secret-id"), secretID)
	port := freePortPair(t)
	configPath := installExample(t, "proxy", "proxy.hcl", confDir, map[string]string{
		"/etc/vault-proxy/piwik/": confDir + "/",
		"127.0.0.1:8100":          fmt.Sprintf("127.0.0.1:%d", port),
	})
	proxy, err := startProcess("vault proxy", filepath.Join(dir, "proxy.log"), dir,
		[]string{"VAULT_ADDR=" + v.addr, "HOME=" + mkdir(t, filepath.Join(dir, "home"))},
		suite.vaultBin, "proxy", "-log-level=debug", "-config="+configPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.stop)
	proxyURL := fmt.Sprintf("http://127.0.0.1:%d", port)

	// Ready once the proxy answers a token lookup with its auto-auth token.
	err = waitFor(60*time.Second, 100*time.Millisecond, proxy, func() (bool, error) {
		resp, err := http.Get(proxyURL + "/v1/auth/token/lookup-self")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatal(proxy.failure("did not serve requests with its auto-auth token: " + err.Error()))
	}

	// Without the proxy, the same request without a token is refused: the
	// token the reads below carry is the proxy's.
	if code, _ := getJSON(t, http.DefaultClient, v.addr+"/v1/piwik/creds/reporting", nil); code != http.StatusForbidden {
		t.Fatalf("a creds read without a token straight to Vault answered %d, want 403", code)
	}

	const readsPerClient = 3
	type result struct {
		client int
		code   int
		secret proxiedSecret
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		results []result
	)
	for c := range 2 {
		// Separate clients, separate connections: two applications.
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range readsPerClient {
				var s proxiedSecret
				code, err := getJSON(t, client, proxyURL+"/v1/piwik/creds/reporting", &s)
				if err != nil {
					code = -1
				}
				mu.Lock()
				results = append(results, result{client: c, code: code, secret: s})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	tokens := map[string]bool{}
	leases := map[string]bool{}
	for _, r := range results {
		if r.secret.Data.AccessToken != "" {
			rememberSecret(t, "access token read through Vault Proxy", r.secret.Data.AccessToken)
		}
	}
	for _, r := range results {
		s := r.secret
		switch {
		case r.code != http.StatusOK:
			t.Errorf("client %d: GET piwik/creds/reporting through the proxy answered %d, want 200", r.client+1, r.code)
			continue
		case !strings.HasPrefix(s.LeaseID, "piwik/creds/reporting/") || s.LeaseDuration <= 0:
			t.Errorf("client %d: lease %q for %ds, want a piwik/creds/reporting/ lease", r.client+1, s.LeaseID, s.LeaseDuration)
		}
		st.requireTokenWorks(t, fmt.Sprintf("token client %d read through the proxy", r.client+1), s.Data.AccessToken)
		tokens[s.Data.AccessToken] = true
		leases[s.LeaseID] = true
	}
	if want := 2 * readsPerClient; len(tokens) != want || len(leases) != want {
		t.Errorf("%d reads through the proxy gave %d distinct tokens and %d distinct leases, want %d of each",
			want, len(tokens), len(leases), want)
	}

	var s proxiedSecret
	code, err := getJSON(t, http.DefaultClient, proxyURL+"/v1/piwik/creds/"+unleased, &s)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET piwik/creds/%s through the proxy: %d, %v", unleased, code, err)
	}
	rememberSecret(t, "unleased access token read through Vault Proxy", s.Data.AccessToken)
	if s.LeaseID != "" || s.LeaseDuration != 0 {
		t.Errorf("unleased role through the proxy: lease %q for %ds, want none", s.LeaseID, s.LeaseDuration)
	}
	if s.Data.TTL <= 1700 || s.Data.TTL > 1800 {
		t.Errorf("unleased role through the proxy: data.ttl = %d, want just under 1800", s.Data.TTL)
	}
	st.requireTokenWorks(t, "unleased token read through the proxy", s.Data.AccessToken)
}

// proxiedSecret is the part of a creds response the proxy test reads.
type proxiedSecret struct {
	LeaseID       string `json:"lease_id"`
	LeaseDuration int    `json:"lease_duration"`
	Data          struct {
		AccessToken string `json:"access_token"`
		TTL         int    `json:"ttl"`
	} `json:"data"`
}

// getJSON sends a GET without a Vault token and decodes a 200 answer into
// out (when not nil). It returns the status code.
func getJSON(t *testing.T, client *http.Client, url string, out any) (int, error) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s: %w", url, err)
		}
	}
	return resp.StatusCode, nil
}

// installExample copies examples/<example>/<name> into dir with each key of
// rewrite replaced by its value, and returns the copy's path. It fails when
// the example no longer contains a string it rewrites, so that the test
// cannot drift away from the example.
func installExample(t *testing.T, example, name, dir string, rewrite map[string]string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(examplesDir(t), example, name))
	if err != nil {
		t.Fatal(err)
	}
	config := string(data)
	for from, to := range rewrite {
		if !strings.Contains(config, from) {
			t.Fatalf("examples/%s/%s no longer mentions %s; update this test", example, name, from)
		}
		config = strings.ReplaceAll(config, from, to)
	}
	path := filepath.Join(dir, name)
	writeFile(t, path, config)
	return path
}
