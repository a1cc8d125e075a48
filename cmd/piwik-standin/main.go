// Command piwik-standin serves a stand-in of Piwik PRO's auth API (package
// standin) for end-to-end tests and local development.
//
// The first credential's client id is -client-id; its secret is read from
// $PIWIK_STANDIN_CLIENT_SECRET, never from a flag, so that it does not show
// in ps. Faults (at once, for a count of requests or on a schedule of
// phases), lifetime and credentials can be changed while it runs through
// the POST /_standin/ endpoints; GET /_standin/stats, /_standin/schedule,
// /_standin/clients and /_standin/issued?client_id=... report what it
// served.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/piwik-vault/vault-plugin-secrets-piwik/internal/standin"
)

// secretEnv names the variable holding the first credential's secret.
const secretEnv = "PIWIK_STANDIN_CLIENT_SECRET"

func main() {
	log.SetPrefix("piwik-standin: ")
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

// run serves until SIGINT or SIGTERM.
func run() error {
	listen := flag.String("listen", "127.0.0.1:0", "`address` to listen on")
	clientID := flag.String("client-id", "dev-client", "client id of the first credential (secret from $"+secretEnv+")")
	lifetime := flag.Duration("lifetime", standin.DefaultLifetime, "token lifetime")
	addrFile := flag.String("addr-file", "", "if set, write the base URL to this `file` once listening")
	certFile := flag.String("tls-cert-file", "", "serve HTTPS with this PEM certificate `file`")
	keyFile := flag.String("tls-key-file", "", "PEM private key `file` for -tls-cert-file")
	extra := flag.String("extra-credentials", "", "JSON `file` of more credentials: [{\"client_id\":…,\"client_secret\":…}]")
	grace := flag.Duration("retry-after-grace", standin.DefaultRetryAfterGrace, "how long after a 429 a request of the same client id still counts as sent before it, not as a violation of its Retry-After (GET /_standin/clients)")
	quiet := flag.Bool("quiet", false, "do not log each request (the load benchmark's thousands of token requests a second)")
	flag.Parse()

	creds, err := credentials(*clientID, *extra)
	if err != nil {
		return err
	}
	ln, scheme, err := listener(*listen, *certFile, *keyFile)
	if err != nil {
		return err
	}
	baseURL := scheme + "://" + dialAddr(ln.Addr())
	if *addrFile != "" {
		if err := writeFileAtomic(*addrFile, baseURL); err != nil {
			_ = ln.Close()
			return err
		}
	}
	srv := standin.New(standin.Options{Credentials: creds, Lifetime: *lifetime, RetryAfterGrace: *grace})
	fmt.Printf("piwik-standin listening on %s\n", baseURL)
	var handler http.Handler = srv
	if !*quiet {
		handler = standin.LogRequests(srv, log.Printf)
	}
	return serve(ln, srv, handler)
}

// credentials returns the first credential and those of the extra file.
func credentials(clientID, extraFile string) ([]standin.Credential, error) {
	secret := os.Getenv(secretEnv)
	if secret == "" {
		secret = "dev-secret"
	}
	creds := []standin.Credential{{ClientID: clientID, ClientSecret: secret}}
	if extraFile == "" {
		return creds, nil
	}
	more, err := standin.LoadCredentials(extraFile)
	if err != nil {
		return nil, err
	}
	return append(creds, more...), nil
}

// listener listens on addr, with TLS if a certificate is given, and returns
// the URL scheme to reach it.
func listener(addr, certFile, keyFile string) (net.Listener, string, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, "", errors.New("-tls-cert-file and -tls-key-file go together")
	}
	var cfg *tls.Config
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, "", fmt.Errorf("load TLS key pair: %w", err)
		}
		cfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("listen: %w", err)
	}
	if cfg == nil {
		return ln, "http", nil
	}
	return tls.NewListener(ln, cfg), "https", nil
}

// dialAddr is the address a client on this machine dials to reach a
// listener: a wildcard address becomes 127.0.0.1, which Go's wildcard
// listeners (dual-stack for "[::]" and "0.0.0.0" alike) accept.
func dialAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port))
}

// writeFileAtomic writes data (no trailing newline) to path through a
// temporary file in the same directory and a rename, so a reader never sees
// it half written.
func writeFileAtomic(path, data string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".piwik-standin-addr-*")
	if err != nil {
		return fmt.Errorf("write address file: %w", err)
	}
	_, err = tmp.WriteString(data)
	if err == nil {
		err = tmp.Chmod(0o644) // CreateTemp makes it 0600; a URL is no secret
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write address file: %w", err)
	}
	return nil
}

// serve serves handler, srv with or without request logging, on ln until
// SIGINT or SIGTERM, then shuts down: replies held by a hang or slow fault
// are released so shutdown does not wait on them.
func serve(ln net.Listener, srv *standin.Server, handler http.Handler) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hs := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	srv.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	log.Print("stopped")
	return nil
}
