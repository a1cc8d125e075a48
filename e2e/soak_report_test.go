package e2e

import (
	"fmt"
	"math"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/harness"
)

// tableEvery is the period of the report's rows: 30s, or less for short
// runs.
func (sk *soak) tableEvery() time.Duration {
	return min(30*time.Second, max(sk.sampleEvery(), sk.plan.duration/6))
}

// offset is t as seconds since the load began.
func (sk *soak) offset(t time.Time) string {
	return fmt.Sprintf("+%.1fs", t.Sub(sk.start).Seconds())
}

// report renders the run as Markdown.
func (sk *soak) report() string {
	var b strings.Builder
	p := sk.plan
	fmt.Fprintf(&b, "# Soak test: %s\n\n", sk.start.UTC().Format("2006-01-02T15:04Z"))
	fmt.Fprintf(&b, "- run: %s of load in %d cycle(s) of %s (scale %.2f); %d readers pausing %s between reads; `go test -run TestSoak` with SOAK_DURATION=%s\n",
		p.duration, p.cycles, p.duration/time.Duration(p.cycles), p.scale, sk.readers(), sk.pause, p.duration)
	fmt.Fprintf(&b, "- Vault: the real `vault` binary (Vault %s), dev server (one node, in-memory storage), audit log on; plugin %s, the shipped binary, measured from outside (/proc and piwik/metrics)\n",
		harness.VaultVersion(suite.vaultBin), pluginVersion.version)
	fmt.Fprintf(&b, "- machine: %d cores, shared with other jobs; load average (1, 5, 15 min) before: %s; after: %s\n",
		runtime.NumCPU(), sk.loadBefore, harness.LoadAverage())
	fmt.Fprintf(&b, "- tokens: lifetime %s; token_reuse roles: reuse_min_remaining %s, stale floor %s; config: request_timeout %s, max_retries %d\n",
		p.lifetime, p.minRemaining, staleFloor(p.lifetime), defaultRequestTimeout, defaultMaxRetries)
	fmt.Fprintf(&b, "- reload: `vault plugin reload -type=secret -plugin=%s` at %s took %s; plugin pid %v before, %v after\n\n",
		pluginName, sk.offset(sk.reloadStart), sk.reloadEnd.Sub(sk.reloadStart).Round(time.Millisecond), sk.pidsBefore, sk.pidsAfter)

	b.WriteString("Stand-in schedule, repeated:\n\n| phase | duration | fault |\n|---|---:|---|\n")
	for _, ph := range p.phases {
		fault := "none"
		if ph.Fault != nil {
			fault = fmt.Sprint(ph.Fault["kind"])
			if ra, ok := ph.Fault["retry_after"]; ok {
				fault += fmt.Sprintf(", Retry-After %vs", ra)
			}
			if d, ok := ph.Fault["delay_ms"]; ok {
				fault += fmt.Sprintf(", %vms", d)
			}
		}
		if len(ph.Revoke) > 0 {
			fault = "credential " + strings.Join(ph.Revoke, ", ") + " deleted"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", ph.Name, time.Duration(ph.DurationMS)*time.Millisecond, fault)
	}

	b.WriteString("\n## Checks\n\n| check | result | |\n|---|---|---|\n")
	for _, c := range sk.checks {
		mark := "pass"
		if !c.ok {
			mark = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", c.what, strings.ReplaceAll(c.result, "\n", "; "), mark)
	}

	b.WriteString("\n## Reads\n\n| role | credential | leased | token_reuse | readers | reads | ok | failed | stale warnings | failures by cause |\n|---|---|---|---|---:|---:|---:|---:|---:|---|\n")
	for _, role := range sk.roles {
		var reads, failed, stale int
		causes := map[string]int{}
		for _, r := range sk.reads {
			if r.role != role.name {
				continue
			}
			reads++
			if isStale(r) {
				stale++
			}
			if r.err != nil {
				failed++
				cause := failureCause(r.err)
				if sk.overlapsReload(r) {
					cause = "during the reload: " + cause
				}
				causes[cause]++
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %t | %t | %d | %d | %d | %d | %d | %s |\n", role.name, role.clientID, role.leased, role.reuse,
			role.readers, reads, reads-failed, failed, stale, countList(causes))
	}
	fmt.Fprintf(&b, "\nPlugin metrics of the process running at the end (they restart with it): %d upstream requests, %d failed (%s), %d tokens minted, %d reuse hits, %d stale serves, %d requests not sent (%s).\n",
		sk.metrics.UpstreamRequests, sk.metrics.UpstreamFailures, countList64(sk.metrics.FailuresByKind), sk.metrics.TokensMinted,
		sk.metrics.ReuseHits, sk.metrics.StaleServes, sk.metrics.RequestsNotSent, countList64(sk.metrics.NotSentByKind))

	b.WriteString("\n## Token requests the stand-in received, by phase (all cycles)\n\n| phase | credential | requests | outcomes |\n|---|---|---:|---|\n")
	type key struct{ phase, client string }
	byPhase := map[key]map[string]int64{}
	var order []key
	for _, run := range sk.sched.Phases {
		name := fmt.Sprintf("%d. %s", run.Index+1, run.Name)
		for id, outcomes := range run.Clients {
			k := key{name, id}
			if byPhase[k] == nil {
				byPhase[k] = map[string]int64{}
				order = append(order, k)
			}
			for o, n := range outcomes {
				byPhase[k][o] += n
			}
		}
	}
	sort.Slice(order, func(a, b int) bool {
		if order[a].phase != order[b].phase {
			ia, _ := strconv.Atoi(strings.SplitN(order[a].phase, ".", 2)[0])
			ib, _ := strconv.Atoi(strings.SplitN(order[b].phase, ".", 2)[0])
			return ia < ib
		}
		return order[a].client < order[b].client
	})
	for _, k := range order {
		var n int64
		for _, c := range byPhase[k] {
			n += c
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s |\n", k.phase, k.client, n, countList64(byPhase[k]))
	}
	b.WriteString("\nPer credential over the whole run:\n\n| credential | requests | outcomes | peak in flight | 429s sent | requests within the grace | violations | tokens issued |\n|---|---:|---|---:|---:|---:|---:|---:|\n")
	for _, c := range sk.clients.Clients {
		fmt.Fprintf(&b, "| %s | %d | %s | %d | %d | %d | %d | %d |\n", c.ClientID, c.Requests, countList64(c.Outcomes), c.PeakInFlight,
			c.RateLimitWindows, c.RequestsInGrace, c.Violations, c.TokensIssued)
	}

	b.WriteString("\n## Plugin measured idle (readers paused, every mint ended)\n\n| when | at | pid | open files | connections to Piwik PRO | open files net of connections | threads | RSS MiB |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range sk.idle {
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d | %.1f |\n", s.label, sk.offset(s.at), s.pid, s.files, s.conns, s.netFiles(), s.threads, mib(s.rssKB))
	}

	fmt.Fprintf(&b, "\n## Over time (every %s; reads, failures, stale warnings and token requests in the interval)\n\n", sk.tableEvery())
	b.WriteString("| t | phase | reads | failed | stale | token requests | 429s sent | violations | peak in flight | plugin pid | RSS MiB | threads | open files |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var last soakSample
	next := sk.start
	for i, s := range sk.samples {
		if s.at.Before(next) && i != len(sk.samples)-1 {
			continue
		}
		next = next.Add(sk.tableEvery())
		row := fmt.Sprintf("| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %.1f | %d | %d |", sk.offset(s.at), p.phaseAt(s.at.Sub(sk.start)),
			s.reads-last.reads, s.failed-last.failed, s.stale-last.stale, s.tokenRequests-last.tokenRequests, s.windows, s.violations, s.peakInFlight,
			s.plugin.pid, mib(s.plugin.rssKB), s.plugin.threads, s.plugin.files)
		if s.err != "" {
			row += " " + strings.ReplaceAll(redact(s.err), "|", "/")
		}
		b.WriteString(row + "\n")
		last = s
	}
	return b.String()
}

func (sk *soak) readers() int {
	n := 0
	for _, r := range sk.roles {
		n += r.readers
	}
	return n
}

// joinDetails renders details after a result, or nothing.
func joinDetails(details []string) string {
	if len(details) == 0 {
		return ""
	}
	return ": " + strings.Join(details, "; ")
}

func countList(m map[string]int) string {
	m64 := make(map[string]int64, len(m))
	for k, v := range m {
		m64[k] = int64(v)
	}
	return countList64(m64)
}

// countList renders counts as "a 3, b 1", largest first.
func countList64(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool {
		if m[keys[a]] != m[keys[b]] {
			return m[keys[a]] > m[keys[b]]
		}
		return keys[a] < keys[b]
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func mib(kb int64) float64 {
	return float64(kb) / 1024
}

// change is the relative change from a to b in percent.
func change(a, b int64) float64 {
	if a == 0 {
		return math.Inf(1)
	}
	return 100 * float64(b-a) / float64(a)
}
