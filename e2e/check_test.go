package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// checkReport is what <mount>/check returns.
type checkReport struct {
	Data struct {
		OK     bool                   `json:"ok"`
		Config checkResult            `json:"config"`
		Roles  map[string]checkResult `json:"roles"`
	} `json:"data"`
}

type checkResult struct {
	OK          bool   `json:"ok"`
	CheckedAt   string `json:"checked_at"`
	Credentials string `json:"credentials"` // roles only: "role" or "config"
	Error       string `json:"error"`
	Status      int    `json:"status"` // failures only: the status they map to
}

// TestCheckReportsDroppedRoleCredential pins piwik/check and
// piwik/metrics: the check mints a token with the config's and with each
// role's own credential and reports ok without showing a token; when Piwik
// PRO drops a role's credential, that role (and only it) is reported with
// Piwik PRO's invalid_client error; the metrics count the tokens minted.
func TestCheckReportsDroppedRoleCredential(t *testing.T) {
	// A stand-in and mount of its own: its credentials change below, and
	// its counters must match the mount's.
	const mount = "piwik-check"
	v, st := mountPrivately(t, mount)

	analyst := map[string]string{"client_id": "check-analyst", "client_secret": randomString(t, 32)}
	rememberSecret(t, "client secret of the check-analyst credential", analyst["client_secret"])
	st.control(t, "credentials", analyst)
	body, _ := json.Marshal(analyst)
	v.vaultAs(t, v.token, string(body), "write", mount+"/roles/analyst", "-")

	hidden := []string{st.clientSecret, analyst["client_secret"]}
	before := st.stats(t)
	report := readCheck(t, v, mount, hidden, http.StatusOK)
	if issued := st.stats(t).TokensIssued - before.TokensIssued; issued != 2 {
		t.Errorf("the check made Piwik PRO issue %d tokens, want 2 (config and analyst)", issued)
	}
	if !report.Data.OK || !report.Data.Config.OK {
		t.Errorf("check: ok = %v, config = %+v; want both ok", report.Data.OK, report.Data.Config)
	}
	requireRoleResult(t, report, "reporting", true, "config")
	requireRoleResult(t, report, "analyst", true, "role")

	// The credential is deleted in Piwik PRO and made again: same client
	// id, new secret. Vault still holds the old secret.
	replaced := map[string]string{"client_id": analyst["client_id"], "client_secret": randomString(t, 32)}
	rememberSecret(t, "new client secret of the check-analyst credential", replaced["client_secret"])
	st.control(t, "credentials", replaced)
	hidden = append(hidden, replaced["client_secret"])

	// Within the minute the check answers its last result; a read that
	// meets the rejection makes the next check live.
	readCheck(t, v, mount, hidden, http.StatusOK)
	if r := v.run(t, v.token, "", "read", mount+"/creds/analyst"); r.exitCode == 0 {
		t.Fatalf("read of the dropped analyst credential succeeded")
	}

	// A probe that only looks at the status sees the failure: 502.
	report = readCheck(t, v, mount, hidden, http.StatusBadGateway)
	if report.Data.OK {
		t.Error("check: ok = true after the analyst credential was dropped")
	}
	if !report.Data.Config.OK {
		t.Errorf("check: config = %+v, want ok: only the role's credential was dropped", report.Data.Config)
	}
	// The CLI shows what failed: the body's errors list.
	if r := v.run(t, v.token, "", "read", mount+"/check"); r.exitCode != 2 || !strings.Contains(r.stderr, "Code: 502") ||
		!strings.Contains(r.stderr, `role "analyst": Piwik PRO `+msgCredentialsRejected) {
		t.Errorf("vault read %s/check: exit %d, want 2 with the status and the failed role:\n%s", mount, r.exitCode, redact(r.stderr))
	}
	requireRoleResult(t, report, "reporting", true, "config")
	analystResult := requireRoleResult(t, report, "analyst", false, "role")
	if !strings.Contains(analystResult.Error, "invalid_client") {
		t.Errorf("check: analyst error = %q, want Piwik PRO's invalid_client", analystResult.Error)
	}

	var metrics struct {
		Data struct {
			TokensMinted     int64            `json:"tokens_minted"`
			UpstreamRequests int64            `json:"upstream_requests"`
			UpstreamFailures int64            `json:"upstream_failures"`
			FailuresByKind   map[string]int64 `json:"failures_by_kind"`
		} `json:"data"`
	}
	decode(t, "vault read "+mount+"/metrics", v.vault(t, "read", "-format=json", mount+"/metrics"), &metrics)
	m, stats := metrics.Data, st.stats(t)
	if m.TokensMinted == 0 || m.TokensMinted != stats.TokensIssued {
		t.Errorf("metrics: tokens_minted = %d, want the %d tokens the mount's stand-in issued", m.TokensMinted, stats.TokensIssued)
	}
	if m.UpstreamRequests != stats.TokenRequests {
		t.Errorf("metrics: upstream_requests = %d, want the %d requests the stand-in received", m.UpstreamRequests, stats.TokenRequests)
	}
	if m.UpstreamFailures < 1 || m.FailuresByKind["credentials"] < 1 {
		t.Errorf("metrics: upstream_failures = %d, failures_by_kind = %v; want the invalid_client failure counted as credentials",
			m.UpstreamFailures, m.FailuresByKind)
	}
	if table := v.vault(t, "read", mount+"/metrics"); !strings.Contains(table, "tokens_minted") {
		t.Errorf("vault read %s/metrics does not show tokens_minted:\n%s", mount, table)
	}
}

// readCheck reads <mount>/check over the HTTP API, as a monitoring probe
// would, and fails t unless it answers status, or if its body holds a
// token, "access_token" or one of hidden.
func readCheck(t *testing.T, v *vaultServer, mount string, hidden []string, status int) checkReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A non-2xx answer comes with an error; the body is what matters.
	resp, err := v.client(t, v.token).Logical().ReadRawWithContext(ctx, mount+"/check")
	if resp == nil {
		t.Fatalf("GET %s/check: %v", mount, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s/check: %v", mount, err)
	}
	out := string(raw)
	if resp.StatusCode != status {
		t.Errorf("GET %s/check: HTTP %d, want %d:\n%s", mount, resp.StatusCode, status, redact(out))
	}
	if jwtShape.MatchString(out) || strings.Contains(out, "access_token") {
		t.Fatalf("vault read %s/check shows a token:\n%s", mount, redact(out))
	}
	for _, s := range hidden {
		if strings.Contains(out, s) {
			t.Fatalf("vault read %s/check shows a client secret:\n%s", mount, redact(out))
		}
	}
	var report checkReport
	decode(t, "vault read "+mount+"/check", out, &report)
	return report
}

// requireRoleResult fails t unless the check reports role with ok and the
// credentials source, and returns the role's result.
func requireRoleResult(t *testing.T, report checkReport, role string, ok bool, source string) checkResult {
	t.Helper()
	r, found := report.Data.Roles[role]
	switch {
	case !found:
		t.Errorf("check: no result for role %q (roles: %v)", role, report.Data.Roles)
	case r.OK != ok || r.Credentials != source:
		t.Errorf("check: role %q = %+v, want ok %v with %s credentials", role, r, ok, source)
	case ok && r.Error != "":
		t.Errorf("check: role %q is ok but has error %q", role, r.Error)
	case !ok && r.Error == "":
		t.Errorf("check: role %q is not ok but has no error", role)
	}
	return r
}

// TestCheckCostsOneRequestPerCredentialPerMinute pins that monitoring may
// poll piwik/check as often as it likes: after the first check, four more
// within the minute make no token request and answer the first result
// with its checked_at; a config write makes the next check live.
func TestCheckCostsOneRequestPerCredentialPerMinute(t *testing.T) {
	const mount = "piwik-check-memory"
	v, st := mountPrivately(t, mount)
	hidden := []string{st.clientSecret}

	before := st.stats(t).TokenRequests
	first := readCheck(t, v, mount, hidden, http.StatusOK)
	if got := st.stats(t).TokenRequests - before; got != 1 {
		t.Fatalf("the first check made %d token requests, want 1", got)
	}
	if _, err := time.Parse(time.RFC3339, first.Data.Config.CheckedAt); err != nil {
		t.Fatalf("checked_at %q: %v", first.Data.Config.CheckedAt, err)
	}
	before = st.stats(t).TokenRequests
	for range 4 {
		report := readCheck(t, v, mount, hidden, http.StatusOK)
		if report.Data.Config.CheckedAt != first.Data.Config.CheckedAt {
			t.Errorf("checked_at %s within the minute, want the first check's %s", report.Data.Config.CheckedAt, first.Data.Config.CheckedAt)
		}
	}
	if got := st.stats(t).TokenRequests - before; got != 0 {
		t.Errorf("four checks within a minute made %d token requests, want 0", got)
	}
	v.vault(t, "write", mount+"/config", "max_retries=2")
	before = st.stats(t).TokenRequests
	readCheck(t, v, mount, hidden, http.StatusOK)
	if got := st.stats(t).TokenRequests - before; got != 1 {
		t.Errorf("a check after a config write made %d token requests, want 1", got)
	}
}
