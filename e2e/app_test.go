package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAppReadsNewTokenBeforeExpiry builds examples/app and runs it twice
// at once, with an AppRole that carries the reporting-reader policy,
// against a Vault and a stand-in of their own that issue 10-second tokens:
// once on the leased reporting role, and once on a role with leased=false,
// where the app has only the read's ttl to go by. Each app's calls to
// /api/users/v2/me go through a recorder in front of the stand-in, which
// shows that every call worked, that the app moved to a new token before
// the old one expired, and which tokens must not show in the app's output.
func TestAppReadsNewTokenBeforeExpiry(t *testing.T) {
	requireBinaries(t)
	dir := testDir(t)
	app := buildExample(t, dir, "app")

	// A server of its own: the short token lifetime must not reach the
	// other tests.
	env := newDevEnv(t, dir, t.Cleanup)
	v, st := env.vault, env.standin
	const lifetime = 10
	st.setLifetime(t, lifetime)

	const unleasedRole = "reporting-unleased"
	v.vault(t, "write", "piwik/roles/"+unleasedRole, "leased=false")
	policy := filepath.Join(dir, "unleased-reader.hcl")
	writeFile(t, policy, fmt.Sprintf("path %q {\n  capabilities = [\"read\"]\n}\n", "piwik/creds/"+unleasedRole))
	v.vault(t, "policy", "write", "unleased-reader", policy)
	v.vault(t, "policy", "write", "reporting-reader", filepath.Join(examplesDir(t), "policies", "reporting-reader.hcl"))
	confDir := mkdir(t, filepath.Join(dir, "etc"))
	roleID, secretID := v.approle(t, "reporting-reader", "unleased-reader")
	writeFile(t, filepath.Join(confDir, "role-id"), roleID)
	writeFile(t, filepath.Join(confDir, "secret-id"), secretID)

	runs := []*appRun{
		{name: "leased", creds: "piwik/creds/reporting", says: "lease", rec: newMeRecorder(t, st.url)},
		{name: "unleased", creds: "piwik/creds/" + unleasedRole, says: "no lease, ttl", rec: newMeRecorder(t, st.url)},
	}
	// A call every half second for 12 s: the first token (lease or ttl
	// about 10 s) must be replaced after about 8 s, at the first call after
	// that, which leaves it more than a second before it expires.
	const calls = 24
	for _, r := range runs {
		p, err := startProcess("example app ("+r.name+")", filepath.Join(dir, "app-"+r.name+".log"), dir,
			[]string{
				"VAULT_ADDR=" + v.addr,
				"PIWIK_URL=" + r.rec.url,
				"APPROLE_ROLE_ID_FILE=" + filepath.Join(confDir, "role-id"),
				"APPROLE_SECRET_ID_FILE=" + filepath.Join(confDir, "secret-id"),
			},
			app, "-creds="+r.creds, "-interval=500ms", "-iterations="+strconv.Itoa(calls))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.stop)
		r.proc = p
	}
	for _, r := range runs {
		select {
		case <-r.proc.done:
		case <-time.After(90 * time.Second):
			t.Fatal(r.proc.failure("did not finish its calls within 90s"))
		}
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			r.check(t, calls, lifetime, secretID)
		})
	}
}

// appRun is one run of the example app: the creds path it reads, what it
// must say it timed its reads by, the recorder its Piwik PRO calls go
// through, and its process.
type appRun struct {
	name, creds, says string
	rec               *meRecorder
	proc              *process
}

// check fails t unless the run made calls successful calls to /me with at
// least two tokens, each one first used before the one before it expired,
// logged each token read with what it timed the next read by, and printed
// neither a token nor the AppRole secretID.
func (r *appRun) check(t *testing.T, calls, lifetime int, secretID string) {
	t.Helper()
	seen := r.rec.calls()
	var tokens []string // in order of first use
	firstUse := map[string]time.Time{}
	for _, c := range seen {
		if c.token == "" {
			t.Errorf("call at %s had no bearer token", c.at.Format(time.RFC3339Nano))
			continue
		}
		rememberSecret(t, "access token the example app sent to /me", c.token)
		if _, ok := firstUse[c.token]; !ok {
			firstUse[c.token] = c.at
			tokens = append(tokens, c.token)
		}
	}
	if r.proc.exitErr != nil {
		t.Fatal(r.proc.failure("failed"))
	}
	if len(seen) != calls {
		t.Fatalf("the app called /api/users/v2/me %d times, want %d", len(seen), calls)
	}
	for i, c := range seen {
		if c.status != http.StatusOK {
			t.Errorf("call %d: /api/users/v2/me answered %d, want 200", i+1, c.status)
		}
	}
	if len(tokens) < 2 {
		t.Fatalf("the app used %d token(s) in %d calls over 12s, want at least 2 with %ds tokens", len(tokens), calls, lifetime)
	}
	for i := 1; i < len(tokens); i++ {
		exp := jwtExpiry(t, tokens[i-1])
		if !firstUse[tokens[i]].Before(exp) {
			t.Errorf("token %d was first used %s after token %d expired", i+1, firstUse[tokens[i]].Sub(exp), i)
		}
	}

	out, err := os.ReadFile(r.proc.logPath)
	if err != nil {
		t.Fatal(err)
	}
	output := string(out)
	for _, tok := range append(tokens, secretID) {
		if strings.Contains(output, tok) {
			t.Fatalf("the app's output contains a token or the secret_id:\n%s", redact(output))
		}
	}
	if jwtShape.MatchString(output) {
		t.Fatalf("the app's output contains a JWT:\n%s", redact(output))
	}
	email := seen[0].email
	if email == "" || strings.Count(output, email) != calls {
		t.Errorf("the app's output does not name the user %q once per call:\n%s", email, output)
	}
	if n := strings.Count(output, "read a new access token"); n != len(tokens) {
		t.Errorf("the app logged %d token reads, but used %d tokens:\n%s", n, len(tokens), output)
	}
	if n := strings.Count(output, "read a new access token from "+r.creds+": "+r.says+" "); n != len(tokens) {
		t.Errorf("the app did not time each of its reads by the %s:\n%s", r.says, output)
	}
	t.Logf("the app made %d calls with %d tokens; the second was first used %s before the first expired",
		len(seen), len(tokens), jwtExpiry(t, tokens[0]).Sub(firstUse[tokens[1]]).Round(100*time.Millisecond))
}

// jwtShape matches a JWT: a base64url JSON header ({"… is eyJ), payload and
// signature.
var jwtShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)

// buildExample builds examples/<name> into dir and returns the binary's path.
func buildExample(t *testing.T, dir, name string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building examples/%s needs the go command: %v", name, err)
	}
	bin := filepath.Join(dir, name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./examples/"+name)
	cmd.Dir = filepath.Dir(examplesDir(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/%s: %v\n%s", name, err, out)
	}
	return bin
}

// meCall is one GET /api/users/v2/me the recorder passed on.
type meCall struct {
	at     time.Time
	token  string
	status int
	email  string // from the reply, when it was a user
}

// meRecorder is a reverse proxy in front of a stand-in that records each
// call's bearer token and outcome. Tests read the tokens, the handler never
// fails a test, and nothing is logged.
type meRecorder struct {
	url    string
	target string

	mu   sync.Mutex
	seen []meCall
}

func newMeRecorder(t *testing.T, target string) *meRecorder {
	t.Helper()
	r := &meRecorder{target: target}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (r *meRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	call := meCall{at: time.Now(), token: bearer(req)}
	out, err := http.NewRequestWithContext(req.Context(), req.Method, r.target+req.URL.RequestURI(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	out.Header = req.Header.Clone()
	resp, err := httpClient.Do(out)
	if err != nil {
		http.Error(w, "stand-in unreachable", http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	call.status = resp.StatusCode
	var doc struct {
		Data struct {
			Attributes struct {
				Email string `json:"email"`
			} `json:"attributes"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &doc) == nil {
		call.email = doc.Data.Attributes.Email
	}
	r.mu.Lock()
	r.seen = append(r.seen, call)
	r.mu.Unlock()

	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

func (r *meRecorder) calls() []meCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]meCall(nil), r.seen...)
}

// bearer returns the token of an "Authorization: Bearer" header, or "".
func bearer(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}
