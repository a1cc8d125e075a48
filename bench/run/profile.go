package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// startProfiles, when BENCH_PROFILE_DIR is set, profiles the measured part
// of a slice (it starts after the warm-up) and returns a function that
// waits for the profiles to be written:
//
//   - <name>-vault.pprof: Vault's CPU profile from sys/pprof/profile (the
//     active node);
//   - <name>-driver.pprof: this process's CPU profile, i.e. the load
//     generator's;
//   - <name>.perf.data: `perf record -g` of the plugin processes and the
//     stand-in, if perf is installed (`perf report -i ... --sort pid,sym`);
//     scripts/bench.sh builds the plugin with its symbol table for this.
//
// <name> is <set-up>-<entry>-<scenario>-r<round>.
//
// The returned function also records the slice for summarizeProfiles,
// given the slice's read rate.
func (h *benchRun) startProfiles(d *deployment, e entry, s scenario, round int, warm, slice time.Duration) func(readsPerSecond float64) {
	dir := h.cfg.profileDir
	if dir == "" {
		return func(float64) {}
	}
	name := filepath.Join(dir, fmt.Sprintf("%s-%s-%s-r%d", d.key, e.key, s.key, round))
	secs := max(1, int((slice-time.Second)/time.Second))
	p := profiled{
		deployment: d.key, entry: e.title, scenario: s.key, name: name,
		piwik: d.pluginPIDs(pluginName), baseline: d.pluginPIDs(baselineName), standin: h.standin.Proc.PID(),
	}
	var wg sync.WaitGroup
	report := func(what string, err error) {
		if err != nil {
			step("profile %s of %s: %v", what, name, err)
		}
	}
	wg.Go(func() {
		time.Sleep(warm)
		report("vault", vaultProfile(d, secs, name+"-vault.pprof"))
	})
	wg.Go(func() {
		time.Sleep(warm)
		f, err := os.Create(name + "-driver.pprof")
		if err != nil {
			report("driver", err)
			return
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			report("driver", err)
			return
		}
		time.Sleep(time.Duration(secs) * time.Second)
		pprof.StopCPUProfile()
	})
	if perf, err := exec.LookPath("perf"); err == nil {
		pids := append(append(slices.Clone(p.piwik), p.baseline...), p.standin)
		list := make([]string, len(pids))
		for i, pid := range pids {
			list[i] = strconv.Itoa(pid)
		}
		wg.Go(func() {
			time.Sleep(warm)
			cmd := exec.Command(perf, "record", "-q", "-F", "999", "-g", "-o", name+".perf.data",
				"-p", strings.Join(list, ","), "--", "sleep", strconv.Itoa(secs))
			out, err := cmd.CombinedOutput()
			if err != nil {
				report("perf", fmt.Errorf("%w: %s", err, out))
			}
		})
	}
	return func(readsPerSecond float64) {
		wg.Wait()
		p.reads = readsPerSecond * float64(secs)
		h.profiles = append(h.profiles, p)
	}
}

// vaultProfile saves a CPU profile of the active node over secs seconds.
func vaultProfile(d *deployment, secs int, path string) error {
	resp, err := rawGet(d.active().client, "sys/pprof/profile", map[string][]string{"seconds": {strconv.Itoa(secs)}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
