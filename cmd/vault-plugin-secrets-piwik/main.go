// Command vault-plugin-secrets-piwik is the Piwik PRO secrets engine as a
// Vault plugin binary. Vault starts it; it is not meant to be run by hand.
//
// With PIWIK_PLUGIN_DEBUG_DIR set in its environment (vault plugin register
// -env PIWIK_PLUGIN_DEBUG_DIR=/dir ...), it also serves its goroutine count
// and Go memory statistics, as JSON, at GET /runtime on the unix socket
// /dir/plugin-<pid>.sock (mode 0600). The soak test uses it: nothing
// outside the process can count goroutines. Nothing else is served there.
package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/helper/pluginutil"
	"github.com/hashicorp/vault/sdk/plugin"

	piwik "github.com/piwik-vault/vault-plugin-secrets-piwik"
)

// debugDirEnv names the directory of the runtime statistics socket.
const debugDirEnv = "PIWIK_PLUGIN_DEBUG_DIR"

func main() {
	meta := &api.PluginAPIClientMeta{}
	flags := meta.FlagSet()
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(err)
	}
	if dir := os.Getenv(debugDirEnv); dir != "" && os.Getenv(pluginutil.PluginMetadataModeEnv) != "true" {
		serveRuntimeStats(dir)
	}
	err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: piwik.Factory,
		// Only used by Vault versions that predate automatic mTLS.
		TLSProviderFunc: api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	})
	if err != nil {
		fatal(err)
	}
}

// serveRuntimeStats serves GET /runtime on dir/plugin-<pid>.sock in the
// background. A failure is logged and otherwise ignored: the statistics
// are for tests, never a reason not to serve Vault.
func serveRuntimeStats(dir string) {
	path := filepath.Join(dir, "plugin-"+strconv.Itoa(os.Getpid())+".sock")
	ln, err := net.Listen("unix", path)
	if err == nil {
		err = os.Chmod(path, 0o600)
	}
	if err != nil {
		hclog.New(&hclog.LoggerOptions{}).Warn("runtime statistics socket not served", "error", err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /runtime", func(w http.ResponseWriter, _ *http.Request) {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"pid":          os.Getpid(),
			"goroutines":   runtime.NumGoroutine(),
			"heap_alloc":   m.HeapAlloc,
			"heap_inuse":   m.HeapInuse,
			"heap_objects": m.HeapObjects,
			"stack_inuse":  m.StackInuse,
			"sys":          m.Sys,
			"num_gc":       m.NumGC,
		})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("plugin shutting down", "error", err)
	os.Exit(1)
}
