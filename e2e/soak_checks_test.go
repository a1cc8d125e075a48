package e2e

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// soakCheck is one assertion of the run, for the report.
type soakCheck struct {
	what, result string
	ok           bool
}

// check makes the run's assertions and records them for the report.
func (sk *soak) check(t *testing.T) {
	t.Helper()
	record := func(ok bool, what, format string, args ...any) {
		result := fmt.Sprintf(format, args...)
		sk.checks = append(sk.checks, soakCheck{what: what, result: result, ok: ok})
		if !ok {
			t.Errorf("%s: %s", what, result)
		}
	}
	sk.checkLeases(record)
	sk.checkCoverage(record)
	sk.checkDeletion(record)

	var windows, inGrace, violations int64
	var maxInGrace int
	var graceDelay float64
	var details []string
	for _, c := range sk.clients.Clients {
		windows += c.RateLimitWindows
		inGrace += c.RequestsInGrace
		maxInGrace = max(maxInGrace, c.MaxInGrace)
		graceDelay = max(graceDelay, c.MaxGraceDelayMS)
		violations += c.Violations
		for i, v := range c.ViolationList {
			if i == 5 {
				details = append(details, fmt.Sprintf("%s: %d more", c.ClientID, len(c.ViolationList)-5))
				break
			}
			details = append(details, fmt.Sprintf("%s at %s, %s into a window of %s opened at %s",
				c.ClientID, sk.offset(v.At), v.At.Sub(v.WindowStart).Round(time.Millisecond),
				v.WindowEnd.Sub(v.WindowStart), sk.offset(v.WindowStart)))
		}
	}
	record(violations == 0, "token requests inside a Retry-After window",
		"%d (%d windows; %d requests within the %dms grace after a 429, at most %d after one, the latest %.0fms after it)%s",
		violations, windows, inGrace, sk.clients.RetryAfterGraceMS, maxInGrace, graceDelay, joinDetails(details))

	// The cap is checked from both sides. The stand-in counts a request
	// from its arrival until it answers; a request a hang holds counts
	// until the stand-in notices the client gave up, which can be a moment
	// after the client has let go and sent the next one, so its count of
	// answered requests is what the cap bounds, and the raw peak is shown.
	// The plugin counts its own requests in flight per credential.
	var peaks []string
	peakOK := true
	for _, c := range sk.clients.Clients {
		peaks = append(peaks, fmt.Sprintf("%s %d (%d with hung ones)", c.ClientID, c.PeakAnswered, c.PeakInFlight))
		if c.PeakAnswered > gateMaxInFlight {
			peakOK = false
			peaks[len(peaks)-1] += fmt.Sprintf(" (first at %s)", sk.offset(c.PeakAt))
		}
	}
	record(peakOK, "peak token requests in flight per credential, at the stand-in", "%s; the cap is %d", strings.Join(peaks, ", "), gateMaxInFlight)
	record(sk.metrics.InFlightPeak <= gateMaxInFlight, "peak token requests in flight per credential, in the plugin",
		"%d since the reload (piwik/metrics upstream_in_flight_peak); the cap is %d", sk.metrics.InFlightPeak, gateMaxInFlight)

	if len(sk.idle) != 2 || sk.idle[0].err != "" || sk.idle[1].err != "" {
		record(false, "plugin RSS, threads and open files, idle", "not measured: %+v", sk.idle)
	} else {
		first, last := sk.idle[0], sk.idle[1]
		record(flat(int64(first.netFiles()), int64(last.netFiles())), "plugin open files, idle, net of connections to Piwik PRO",
			"%d → %d (%+.1f%%; raw %d → %d with %d → %d connections)", first.netFiles(), last.netFiles(),
			change(int64(first.netFiles()), int64(last.netFiles())), first.files, last.files, first.conns, last.conns)
		record(last.conns <= 32, "plugin connections to Piwik PRO, idle", "%d → %d (the transport keeps at most 32 idle)", first.conns, last.conns)
		record(flat(first.threads, last.threads), "plugin threads, idle", "%d → %d (%+.1f%%)", first.threads, last.threads, change(first.threads, last.threads))
		record(float64(last.rssKB) <= 1.1*float64(first.rssKB), "plugin RSS, idle",
			"%.1f → %.1f MiB (%+.1f%%)", mib(first.rssKB), mib(last.rssKB), change(first.rssKB, last.rssKB))
		record(first.pid == last.pid, "plugin process", "pid %d measured first and at the end (%v before the reload, %v after)",
			last.pid, sk.pidsBefore, sk.pidsAfter)
	}
	r := sk.scan
	record(len(r.Findings) == 0, "secrets and tokens in the soak's logs",
		"%d files (%d MiB) checked for %d secrets and tokens: %d found%s", r.Files, r.Bytes>>20, r.Secrets, len(r.Findings), joinDetails(r.Findings))
}

// flat reports whether a count measured idle went from first to last
// without growing by more than 10%, or by 2 where that is more: a small
// count moves by one or two with what the runtime happens to hold.
func flat(first, last int64) bool {
	return last <= first+max(2, first/10)
}

// checkLeases checks that leased roles' reads have a lease and unleased
// ones' a ttl and none.
func (sk *soak) checkLeases(record func(bool, string, string, ...any)) {
	bad := 0
	for _, r := range sk.reads {
		role := sk.role(r.role)
		if r.err == nil && (role.leased != (r.leaseID != "") || !role.leased && r.ttl <= 0) {
			bad++
		}
	}
	record(bad == 0, "leases", "%d successful reads with a lease that did not match their role's leased (or no ttl when unleased)", bad)
}

// checkCoverage checks that no covered read of a token_reuse role failed.
func (sk *soak) checkCoverage(record func(bool, string, string, ...any)) {
	floor := staleFloor(sk.plan.lifetime) + 2*time.Second
	for _, role := range sk.roles {
		if !role.reuse {
			continue
		}
		deleted := sk.deletedRuns(role.clientID)
		var covered, excluded, failed int
		var firstFailures []string
		for _, r := range sk.reads {
			if r.role != role.name {
				continue
			}
			if sk.overlapsReload(r) || overlapsAny(r, deleted) {
				excluded++
				continue
			}
			if !sk.covered(r, role.clientID, deleted, floor) {
				continue
			}
			covered++
			if r.err != nil {
				failed++
				if len(firstFailures) < 5 {
					firstFailures = append(firstFailures, fmt.Sprintf("from %s to %s: %s", sk.offset(r.start), sk.offset(r.end), redactErr(r.err)))
				}
			}
		}
		record(failed == 0 && covered > 0, "reads of "+role.name+" while a valid token was cached",
			"%d failed of %d covered (%d reads overlapping the reload or a deletion of %s not judged)%s",
			failed, covered, excluded, role.clientID, joinDetails(firstFailures))
	}
}

// covered reports whether read r of a role minting with clientID began
// after the stand-in sent that credential a token that has floor left when
// r ended, in the same plugin process and since the credential was last
// restored.
func (sk *soak) covered(r credsRead, clientID string, deleted []phaseRun, floor time.Duration) bool {
	since := sk.start
	if !r.start.Before(sk.reloadEnd) {
		since = sk.reloadEnd
	}
	for _, p := range deleted {
		if !p.End.After(r.start) && p.End.After(since) {
			since = p.End
		}
	}
	for _, tok := range sk.issued[clientID] {
		if !tok.At.Before(since) && tok.At.Before(r.start) && tok.Exp.Sub(r.end) >= floor {
			return true
		}
	}
	return false
}

// checkDeletion checks that, once Piwik PRO rejected a deleted credential,
// its role's reads fail until the credential is back, and that the role
// reads again after.
func (sk *soak) checkDeletion(record func(bool, string, string, ...any)) {
	role := sk.roleByClient(soakDeletedClient)
	runs := sk.deletedRuns(soakDeletedClient)
	var rejected, servedAfter, recovered, judged int
	for _, p := range runs {
		if p.End.After(sk.end) {
			continue // cut short by the end of the run
		}
		judged++
		var firstReject time.Time
		for _, r := range sk.reads {
			if r.role == role.name && r.err != nil && failureCause(r.err) == "credentials" && !r.start.Before(p.Start) && !r.end.After(p.End) &&
				(firstReject.IsZero() || r.end.Before(firstReject)) {
				firstReject = r.end
			}
		}
		if firstReject.IsZero() {
			continue
		}
		rejected++
		for _, r := range sk.reads {
			if r.role == role.name && r.start.After(firstReject) && r.end.Before(p.End) && r.err == nil {
				servedAfter++
			}
		}
		for _, r := range sk.reads {
			if r.role == role.name && r.start.After(p.End) && r.err == nil {
				recovered++
				break
			}
		}
	}
	record(judged > 0 && rejected == judged && servedAfter == 0 && recovered == judged, "reads of "+role.name+" after Piwik PRO rejected its deleted credential",
		"%d deletions, %d rejected by Piwik PRO, after which %d reads were served a token while the credential was deleted; the role read again after %d restores",
		judged, rejected, servedAfter, recovered)
}

// deletedRuns are the phase runs in which clientID was deleted.
func (sk *soak) deletedRuns(clientID string) []phaseRun {
	var runs []phaseRun
	for _, p := range sk.sched.Phases {
		if spec := sk.plan.phases[p.Index]; slices.Contains(spec.Revoke, clientID) {
			runs = append(runs, p)
		}
	}
	return runs
}

func (sk *soak) overlapsReload(r credsRead) bool {
	return r.start.Before(sk.reloadEnd) && r.end.After(sk.reloadStart)
}

func overlapsAny(r credsRead, runs []phaseRun) bool {
	for _, p := range runs {
		if r.start.Before(p.End) && r.end.After(p.Start) {
			return true
		}
	}
	return false
}

func (sk *soak) role(name string) soakRole {
	for _, r := range sk.roles {
		if r.name == name {
			return r
		}
	}
	return soakRole{}
}

func (sk *soak) roleByClient(clientID string) soakRole {
	for _, r := range sk.roles {
		if r.clientID == clientID {
			return r
		}
	}
	return soakRole{}
}

// failureCause names why a read failed, from the plugin's message.
func failureCause(err error) string {
	msg := err.Error()
	var respErr *api.ResponseError
	status := 0
	if errors.As(err, &respErr) {
		status = respErr.StatusCode
	}
	for _, c := range []struct{ text, cause string }{
		{msgCredentialsRejected, "credentials"},
		{msgWaitingOutRateLimit, "429, not sent"},
		{msgRateLimited, "429"},
		{msgBackingOff, "backing off, not sent"},
		{msgUpstreamStatus, "5xx"},
		{msgUnreachable, "unreachable"},
		{msgTimedOut, "timeout"},
	} {
		if strings.Contains(msg, c.text) {
			return c.cause
		}
	}
	if status != 0 {
		return "HTTP " + strconv.Itoa(status)
	}
	return "no HTTP reply"
}
