package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// StartWait bounds every wait for a server: a start, an unseal, an
// election, a node catching up.
const StartWait = 90 * time.Second

// Vault is a Vault server the lab started.
type Vault struct {
	Name      string
	Addr      string // http://127.0.0.1:PORT
	Port      int    // the API port; the cluster listens on Port+1
	Token     string // root token
	Dir       string
	PluginDir string
	Proc      *Process
	// LogStart is where the current run's output starts in its log.
	LogStart int64
}

// NewClient returns an API client for the Vault at addr that uses token
// (none when empty) and never retries.
func NewClient(addr, token string, timeout time.Duration) (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	cfg.Timeout = timeout
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetToken(token)
	return c, nil
}

// Client returns an API client for v that uses token, with a 60s timeout.
func (v *Vault) Client(token string) (*api.Client, error) {
	return NewClient(v.Addr, token, 60*time.Second)
}

// DevSpec is a `vault server -dev` to start.
type DevSpec struct {
	Dir, Name string
	// Plugins are copied into the server's plugin directory: command name
	// to the binary to copy.
	Plugins  map[string]string
	LogLevel string // empty for Vault's default
}

// StartDev starts `vault server -dev` in s.Dir, with a root token of its
// own (in the environment, out of ps) and a private HOME, and waits until
// it is active. Its log is <Name>.log and its plugin directory
// <Name>-plugins in s.Dir.
func (l *Lab) StartDev(s DevSpec) (*Vault, error) {
	v := &Vault{Name: s.Name, Token: RandomString(24), Dir: s.Dir, PluginDir: filepath.Join(s.Dir, s.Name+"-plugins")}
	if err := copyPlugins(s.Plugins, v.PluginDir); err != nil {
		return nil, err
	}
	home := filepath.Join(s.Dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	err := l.Launch(v, LaunchSpec{
		Env: []string{"HOME=" + home, "VAULT_DEV_ROOT_TOKEN_ID=" + v.Token},
		Args: func(port int) ([]string, error) {
			args := []string{"server", "-dev",
				fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port),
				"-dev-plugin-dir=" + v.PluginDir,
				"-dev-no-store-token",
			}
			if s.LogLevel != "" {
				args = append(args, "-log-level="+s.LogLevel)
			}
			return args, nil
		},
	})
	if err != nil {
		return nil, err
	}
	if err := v.WaitActive(); err != nil {
		v.Proc.Stop()
		return nil, err
	}
	return v, nil
}

// copyPlugins copies each binary of plugins into dir under its name.
func copyPlugins(plugins map[string]string, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, src := range plugins {
		if err := CopyFile(src, dir, name, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// LaunchSpec is how to run a Vault server.
type LaunchSpec struct {
	Env []string
	// Args returns the server's arguments for its API port (writing its
	// configuration file, if it has one).
	Args func(port int) ([]string, error)
	// StablePorts picks ports below the ephemeral range (StablePortPair).
	StablePorts bool
}

// Launch starts v's server and waits until its API answers. With v.Port 0
// it picks free ports, and others if those were taken meanwhile; otherwise
// it reuses v.Port, as a restarted raft node must. It sets v.Addr, v.Proc
// and v.LogStart; on failure the process is stopped.
func (l *Lab) Launch(v *Vault, s LaunchSpec) error {
	logPath := filepath.Join(v.Dir, v.Name+".log")
	for attempt := 1; ; attempt++ {
		fresh := v.Port == 0
		if fresh {
			pick := FreePortPair
			if s.StablePorts {
				pick = StablePortPair
			}
			port, err := pick()
			if err != nil {
				return err
			}
			v.Port = port
		}
		v.Addr = fmt.Sprintf("http://127.0.0.1:%d", v.Port)
		args, err := s.Args(v.Port)
		if err != nil {
			return err
		}
		v.LogStart = FileSize(logPath)
		l.logf("starting vault %s on %s (log: %s)", v.Name, v.Addr, logPath)
		p, err := l.Start(Spec{Name: "vault " + v.Name, Bin: l.VaultBin, Args: args, Dir: v.Dir, Env: s.Env, LogPath: logPath})
		if err != nil {
			return err
		}
		v.Proc = p
		client, err := NewClient(v.Addr, "", 30*time.Second)
		if err != nil {
			p.Stop()
			return err
		}
		err = WaitFor(StartWait, 100*time.Millisecond, p, func() (bool, error) {
			_, err := client.Sys().Health()
			return err == nil, nil
		})
		if err == nil {
			return nil
		}
		p.Stop()
		if fresh && attempt < 3 && LogContains(logPath, v.LogStart, "address already in use") {
			v.Port = 0
			continue
		}
		return p.Failure("API did not answer: " + err.Error())
	}
}

// WaitActive waits until v is initialized, unsealed and active.
func (v *Vault) WaitActive() error {
	client, err := v.Client("")
	if err != nil {
		return err
	}
	err = WaitFor(StartWait, 100*time.Millisecond, v.Proc, func() (bool, error) {
		h, err := client.Sys().Health()
		return err == nil && h.Initialized && !h.Sealed && !h.Standby, nil
	})
	if err != nil {
		return v.Proc.Failure("not active: " + err.Error())
	}
	return nil
}

// Unseal gives v the unseal key and waits until it is unsealed, as the
// active node or as a standby. It fails when Vault unsealed without its
// cluster listener, which it starts on unsealing and carries on without,
// cut off from its peers.
func (v *Vault) Unseal(key string) error {
	client, err := v.Client("")
	if err != nil {
		return err
	}
	if _, err := client.Sys().Unseal(key); err != nil {
		return v.Proc.Failure("unseal: " + err.Error())
	}
	err = WaitFor(StartWait, 100*time.Millisecond, v.Proc, func() (bool, error) {
		h, err := client.Sys().Health()
		return err == nil && h.Initialized && !h.Sealed, nil
	})
	if err != nil {
		return v.Proc.Failure("still sealed after the unseal key was given: " + err.Error())
	}
	if LogContains(v.Proc.LogPath, v.LogStart, "error starting listener") {
		return v.Proc.Failure(fmt.Sprintf("unsealed without its cluster listener on port %d", v.Port+1))
	}
	return nil
}

// ServerConfig is the HCL of a non-dev server on loopback around storage,
// its storage block: the API listens on port and the cluster on port+1.
// logLevel may be empty for Vault's default.
func ServerConfig(storage string, port int, pluginDir, logLevel string) string {
	config := storage + fmt.Sprintf(`
listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}

api_addr         = "http://127.0.0.1:%d"
cluster_addr     = "https://127.0.0.1:%d"
plugin_directory = %q
disable_mlock    = true
`, port, port+1, port, port+1, pluginDir)
	if logLevel != "" {
		config += fmt.Sprintf("log_level        = %q\n", logLevel)
	}
	return config
}

// CLIResult is the outcome of one vault CLI run.
type CLIResult struct {
	Stdout, Stderr string
	ExitCode       int
}

// CLI runs the vault CLI against the server at addr with token (none when
// empty) and stdin, in dir and with dir/home as HOME, so that no token
// helper file of the developer's is read. The error says only that the CLI
// could not run; a command that failed has a non-zero ExitCode.
func (l *Lab) CLI(addr, dir, token, stdin string, args ...string) (CLIResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.VaultBin, args...)
	cmd.Dir = dir
	cmd.Env = append(append([]string(nil), l.BaseEnv...), "VAULT_ADDR="+addr, "HOME="+filepath.Join(dir, "home"))
	if token != "" {
		cmd.Env = append(cmd.Env, "VAULT_TOKEN="+token)
	}
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return CLIResult{}, fmt.Errorf("vault %s: %w", l.redact(strings.Join(args, " ")), err)
	}
	return CLIResult{Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: cmd.ProcessState.ExitCode()}, nil
}
