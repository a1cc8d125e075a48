package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A profile summary splits the CPU time each process spent per read into
// a few categories, so that the cost of a scenario can be compared with
// its baseline's piece by piece. Each sample goes to the first category
// one of whose functions is on its stack.

// category is a named group of functions.
type category struct {
	name  string
	funcs []string // substrings of function names
}

// categories are checked in order; the first one with a function on a
// sample's stack takes the sample.
var categories = []category{
	{"GC: idle-time marking (uses cores the process leaves idle)", []string{"runtime.gcDrainMarkWorkerIdle"}},
	{"GC: other marking, assists, sweeping", []string{"runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep", "runtime.bgscavenge"}},
	{"Vault: parsing plugin log lines (go-plugin logStderr)", []string{"go-plugin.(*Client).logStderr"}},
	{"Vault: gRPC call to the plugin", []string{"plugin.(*backendGRPCPluginClient).HandleRequest"}},
	{"Vault: lease registration", []string{"vault.(*ExpirationManager).Register"}},
	{"Vault: token lookup", []string{"vault.(*Core).LookupToken", "vault.(*Core).PopulateTokenEntry", "vault.(*Core).CheckToken"}},
	{"Vault: rest of the request", []string{"vault.(*Core).HandleRequest", "vault.(*Core).switchedLockHandleRequest"}},
	{"plugin: debug log line per token request (observeAttempt)", []string{"(*backend).observeAttempt"}},
	{"plugin: token reply parsing (parseTokenReply)", []string{"vault-plugin-secrets-piwik.parseTokenReply"}},
	{"plugin: HTTP request, caller side (client.go)", []string{"vault-plugin-secrets-piwik.(*Client)."}},
	{"HTTP client transport goroutines (net/http)", []string{"net/http.(*persistConn).", "net/http.(*Transport).dialConn"}},
	{"stand-in: minting (claims, JWT, HMAC signature)", []string{"standin.(*Server).tokenReply"}},
	{"HTTP server (net/http: read, parse, write)", []string{"net/http.(*conn).serve"}},
	{"plugin: framework request handling (routing, fields, handler)", []string{"framework.(*Backend).HandleRequest"}},
	{"gRPC and go-plugin plumbing", []string{"google.golang.org/grpc", "hashicorp/go-plugin", "yamux"}},
	{"scheduler, netpoll, timers", []string{"runtime.schedule", "runtime.findRunnable", "runtime.park_m", "runtime.mcall", "runtime.mstart", "runtime.sysmon", "runtime.goexit0"}},
	{"other", nil},
}

// sample is one stack with the CPU time it stands for.
type sample struct {
	weight time.Duration
	stack  []string
}

// categorize returns the index of the category sample s belongs to.
func categorize(s sample) int {
	for i, c := range categories {
		if c.funcs == nil {
			return i
		}
		for _, frame := range s.stack {
			for _, f := range c.funcs {
				if strings.Contains(frame, f) {
					return i
				}
			}
		}
	}
	return len(categories) - 1
}

// profiled is a slice whose profiles were taken.
type profiled struct {
	deployment, entry, scenario string
	name                        string  // file name prefix
	reads                       float64 // reads during the profile (estimated from the slice's rate)
	piwik, baseline             []int
	standin                     int
}

// pprofSamples reads a Go CPU profile with `go tool pprof -traces`.
func pprofSamples(path string) ([]sample, error) {
	out, err := exec.Command("go", "tool", "pprof", "-traces", path).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof -traces %s: %w", path, err)
	}
	return parseTraces(out)
}

// parseTraces parses the output of `go tool pprof -traces`: samples
// separated by dashed lines, each a weight and a stack, leaf first.
func parseTraces(out []byte) ([]sample, error) {
	var samples []sample
	var cur *sample
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "-----") {
			if cur != nil {
				samples = append(samples, *cur)
			}
			cur = &sample{}
			continue
		}
		if cur == nil {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(cur.stack) == 0 && cur.weight == 0 {
			d, err := time.ParseDuration(fields[0])
			if err != nil {
				continue
			}
			cur.weight = d
			fields = fields[1:]
		}
		if len(fields) > 0 {
			cur.stack = append(cur.stack, fields[0])
		}
	}
	if cur != nil && len(cur.stack) > 0 {
		samples = append(samples, *cur)
	}
	return samples, sc.Err()
}

// perfSamples reads `perf script` output of a perf.data file and returns
// the samples of each process, by pid. perf samples at perfHz of CPU time.
func perfSamples(path string) (map[int][]sample, error) {
	out, err := exec.Command("perf", "script", "-i", path, "-F", "pid,ip,sym").Output()
	if err != nil {
		return nil, fmt.Errorf("perf script -i %s: %w", path, err)
	}
	return parsePerfScript(out)
}

// parsePerfScript parses the output of `perf script -F pid,ip,sym`: a line
// with the pid, then one tab-indented line per frame (address and
// symbol), leaf first, then a blank line.
func parsePerfScript(out []byte) (map[int][]sample, error) {
	byPID := map[int][]sample{}
	pid := -1
	var cur *sample
	flush := func() {
		if cur != nil && pid >= 0 {
			byPID[pid] = append(byPID[pid], *cur)
		}
		cur = nil
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if line[0] != '\t' { // a sample's header: its pid
			flush()
			n, err := strconv.Atoi(strings.TrimSpace(line))
			if err != nil {
				pid = -1
				continue
			}
			pid = n
			cur = &sample{weight: time.Second / perfHz}
			continue
		}
		if cur != nil {
			if f := strings.Fields(line); len(f) >= 2 {
				cur.stack = append(cur.stack, f[1])
			}
		}
	}
	flush()
	return byPID, sc.Err()
}

// perfHz is the sampling frequency given to perf record.
const perfHz = 999

// breakdown is CPU time per category, summed over profiles, and the reads
// they cover.
type breakdown struct {
	perCategory []time.Duration
	reads       float64
}

func (b *breakdown) add(samples []sample) {
	if b.perCategory == nil {
		b.perCategory = make([]time.Duration, len(categories))
	}
	for _, s := range samples {
		b.perCategory[categorize(s)] += s.weight
	}
}

// summarizeProfiles writes <profile dir>/summary-<deployment>.md: for each
// process, the CPU time per read of each category in each scenario, summed
// over the rounds.
func (h *benchRun) summarizeProfiles(d *deployment) error {
	type key struct{ entry, scenario, process string }
	sums := map[key]*breakdown{}
	get := func(k key) *breakdown {
		if sums[k] == nil {
			sums[k] = &breakdown{}
		}
		return sums[k]
	}
	var entries []string
	seen := map[string]bool{}
	for _, p := range h.profiles {
		if p.deployment != d.key {
			continue
		}
		if !seen[p.entry] {
			seen[p.entry] = true
			entries = append(entries, p.entry)
		}
		if samples, err := pprofSamples(p.name + "-vault.pprof"); err == nil {
			b := get(key{p.entry, p.scenario, "Vault (active node)"})
			b.add(samples)
			b.reads += p.reads
		}
		byPID, err := perfSamples(p.name + ".perf.data")
		if err != nil {
			continue
		}
		for process, pids := range map[string][]int{"piwik plugin": p.piwik, "baseline plugin": p.baseline, "stand-in": {p.standin}} {
			b := get(key{p.entry, p.scenario, process})
			for _, pid := range pids {
				b.add(byPID[pid])
			}
			b.reads += p.reads
		}
	}

	var out strings.Builder
	fmt.Fprintf(&out, "# CPU per read by category: %s\n\n", d.title)
	fmt.Fprintf(&out, "Microseconds of CPU per read, from the profiles in this directory (Vault: sys/pprof; plugins and stand-in: perf record -g at %d Hz), summed over the rounds. Reads are estimated from each slice's rate over the profile's window. Each sample counts in the first category (top to bottom) with a function on its stack.\n\n", perfHz)
	for _, e := range entries {
		for _, process := range []string{"Vault (active node)", "piwik plugin", "baseline plugin", "stand-in"} {
			var cols []scenario
			for _, s := range allScenarios {
				if b := sums[key{e, s.key, process}]; b != nil && b.reads > 0 && total(b.perCategory) > 0 {
					cols = append(cols, s)
				}
			}
			if len(cols) == 0 {
				continue
			}
			fmt.Fprintf(&out, "## %s: %s\n\n| category |", e, process)
			for _, s := range cols {
				fmt.Fprintf(&out, " %s |", s.title)
			}
			out.WriteString("\n|---|")
			for range cols {
				out.WriteString("---:|")
			}
			out.WriteString("\n")
			for i, c := range categories {
				row := fmt.Sprintf("| %s |", c.name)
				shown := false
				for _, s := range cols {
					b := sums[key{e, s.key, process}]
					us := float64(b.perCategory[i].Microseconds()) / b.reads
					shown = shown || us >= 0.5
					row += fmt.Sprintf(" %.0f |", us)
				}
				if shown {
					out.WriteString(row + "\n")
				}
			}
			out.WriteString("| **total** |")
			for _, s := range cols {
				b := sums[key{e, s.key, process}]
				fmt.Fprintf(&out, " **%.0f** |", float64(total(b.perCategory).Microseconds())/b.reads)
			}
			out.WriteString("\n\n")
		}
	}
	path := filepath.Join(h.cfg.profileDir, "summary-"+d.key+".md")
	step("writing %s", path)
	return os.WriteFile(path, []byte(out.String()), 0o644)
}

func total(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}
