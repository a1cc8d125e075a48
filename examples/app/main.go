// Command app is a small Piwik PRO API client that gets its access tokens
// from Vault: it logs in with AppRole, reads piwik/creds/reporting, calls
// GET /api/users/v2/me and prints who Piwik PRO says it is. Piwik PRO tokens
// cannot be renewed, so it reads a new one from Vault once 80% of the token's
// remaining life has passed, before the old one expires: of the lease, or,
// for a role with leased=false (no lease), of the ttl the read returns.
//
// It is configured from the environment:
//
//	VAULT_ADDR              address of Vault (the other VAULT_* variables of
//	                        the Vault API client work too)
//	PIWIK_URL               base URL of the Piwik PRO account,
//	                        e.g. https://acme.piwik.pro
//	APPROLE_ROLE_ID_FILE    file holding the AppRole role_id
//	                        (or APPROLE_ROLE_ID, the value itself)
//	APPROLE_SECRET_ID_FILE  file holding the AppRole secret_id
//	                        (or APPROLE_SECRET_ID, the value itself)
//
// It never prints the access token or the secret_id.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/vault/api"
)

// renewAt is the part of a token's remaining life (its lease, or its ttl
// when the role is unleased) after which the next token is read.
const renewAt = 0.8

func main() {
	log.SetPrefix("app: ")
	credsPath := flag.String("creds", "piwik/creds/reporting", "Vault `path` to read Piwik PRO access tokens from")
	interval := flag.Duration("interval", time.Minute, "time between two calls of the Piwik PRO API")
	iterations := flag.Int("iterations", 0, "exit after this many API calls (0: run until interrupted)")
	once := flag.Bool("once", false, "make one API call and exit (same as -iterations=1)")
	flag.Parse()
	if *once {
		*iterations = 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *credsPath, *interval, *iterations); err != nil {
		log.Fatal(err)
	}
}

// run calls the Piwik PRO API every interval, iterations times (0: until
// ctx ends).
func run(ctx context.Context, credsPath string, interval time.Duration, iterations int) error {
	piwikURL := strings.TrimRight(os.Getenv("PIWIK_URL"), "/")
	if piwikURL == "" {
		return errors.New("PIWIK_URL is not set")
	}
	roleID, err := setting("APPROLE_ROLE_ID")
	if err != nil {
		return err
	}
	secretID, err := setting("APPROLE_SECRET_ID")
	if err != nil {
		return err
	}
	vault, err := api.NewClient(api.DefaultConfig()) // reads VAULT_ADDR
	if err != nil {
		return fmt.Errorf("vault client: %w", err)
	}
	vault.ClearToken() // log in with AppRole, whatever VAULT_TOKEN says

	tokens := &tokenSource{vault: vault, roleID: roleID, secretID: secretID, path: credsPath}
	for i := 1; iterations == 0 || i <= iterations; i++ {
		if i > 1 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(interval):
			}
		}
		token, err := tokens.get(ctx)
		if err != nil {
			return err
		}
		u, err := whoAmI(ctx, piwikURL, token)
		if err != nil {
			return err
		}
		log.Printf("call %d: Piwik PRO user %s (id %s)", i, u.Email, u.ID)
	}
	return nil
}

// setting returns the value of $NAME, or the trimmed content of the file
// named by $NAME_FILE.
func setting(name string) (string, error) {
	if v := os.Getenv(name); v != "" {
		return v, nil
	}
	path := os.Getenv(name + "_FILE")
	if path == "" {
		return "", fmt.Errorf("set %s_FILE or %s", name, name)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s_FILE: %w", name, err)
	}
	v := strings.TrimSpace(string(data))
	if v == "" {
		return "", fmt.Errorf("%s_FILE: %s is empty", name, path)
	}
	return v, nil
}

// tokenSource hands out a Piwik PRO access token read from Vault, and reads
// a new one once renewAt of its remaining life has passed. It logs in to Vault again
// the same way when its Vault token nears its end.
type tokenSource struct {
	vault            *api.Client
	roleID, secretID string
	path             string

	loginAgain time.Time // zero: the Vault token does not expire
	access     string
	readAgain  time.Time
}

func (s *tokenSource) get(ctx context.Context) (string, error) {
	now := time.Now()
	if s.access != "" && now.Before(s.readAgain) {
		return s.access, nil
	}
	if s.vault.Token() == "" || !s.loginAgain.IsZero() && now.After(s.loginAgain) {
		if err := s.login(ctx); err != nil {
			return "", err
		}
	}
	secret, err := s.vault.Logical().ReadWithContext(ctx, s.path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", s.path, err)
	}
	if secret == nil {
		return "", fmt.Errorf("read %s: nothing there", s.path)
	}
	access, _ := secret.Data["access_token"].(string)
	if access == "" {
		return "", fmt.Errorf("read %s: no access_token in the reply", s.path)
	}
	life, source, err := remainingLife(secret, now)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", s.path, err)
	}
	next := time.Duration(float64(life) * renewAt).Round(time.Second)
	s.access, s.readAgain = access, now.Add(next)
	log.Printf("read a new access token from %s: %s %s, next read in %s", s.path, source, life, next)
	return access, nil
}

// remainingLife returns how long the token of a creds read has left, and
// what said so: the lease, when the role gives one; otherwise (a role with
// leased=false) the read's ttl, or failing that its expires_at. ttl comes
// first because it does not depend on this machine's clock.
func remainingLife(secret *api.Secret, now time.Time) (time.Duration, string, error) {
	if secret.LeaseID != "" && secret.LeaseDuration > 0 {
		return time.Duration(secret.LeaseDuration) * time.Second, "lease", nil
	}
	if n, ok := secret.Data["ttl"].(json.Number); ok {
		if seconds, err := n.Int64(); err == nil && seconds > 0 {
			return time.Duration(seconds) * time.Second, "no lease, ttl", nil
		}
	}
	if s, ok := secret.Data["expires_at"].(string); ok {
		if at, err := time.Parse(time.RFC3339, s); err == nil && at.After(now) {
			return at.Sub(now), "no lease, expires_at in", nil
		}
	}
	return 0, "", errors.New("the reply has neither a lease nor a ttl or expires_at in the future")
}

func (s *tokenSource) login(ctx context.Context) error {
	secret, err := s.vault.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{
		"role_id":   s.roleID,
		"secret_id": s.secretID,
	})
	if err != nil {
		return fmt.Errorf("AppRole login: %w", err)
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return errors.New("AppRole login: no token in the reply")
	}
	s.vault.SetToken(secret.Auth.ClientToken)
	ttl := time.Duration(secret.Auth.LeaseDuration) * time.Second
	s.loginAgain = time.Time{}
	if ttl > 0 {
		s.loginAgain = time.Now().Add(time.Duration(float64(ttl) * renewAt))
	}
	log.Printf("logged in to Vault with AppRole (Vault token valid for %s)", ttl)
	return nil
}

// user is who GET /api/users/v2/me says the token holder is.
type user struct {
	ID    string
	Email string
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// whoAmI calls GET <baseURL>/api/users/v2/me with token.
func whoAmI(ctx context.Context, baseURL, token string) (user, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/api/users/v2/me", nil)
	if err != nil {
		return user{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/vnd.api+json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return user{}, fmt.Errorf("GET /api/users/v2/me: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return user{}, fmt.Errorf("GET /api/users/v2/me: read reply: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return user{}, fmt.Errorf("GET /api/users/v2/me: %s", resp.Status)
	}
	var doc struct {
		Data struct {
			ID         string `json:"id"`
			Attributes struct {
				Email string `json:"email"`
			} `json:"attributes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return user{}, fmt.Errorf("GET /api/users/v2/me: decode reply: %w", err)
	}
	return user{ID: doc.Data.ID, Email: doc.Data.Attributes.Email}, nil
}
