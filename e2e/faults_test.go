package e2e

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// TestFaultsThroughVault makes the stand-in fail in each way Piwik PRO, or
// a proxy in front of it, can, and pins what a reader of creds gets from
// the real Vault: a token when a retry can help, otherwise an HTTP status
// and a message an operator can act on, and never a lease without a token.
//
// It has its own stand-in and mount on the shared dev server, so that its
// faults reach no other test.
func TestFaultsThroughVault(t *testing.T) {
	const mount = "piwik-faults"
	v, st := mountPrivately(t, mount)

	// The client allows a hanging read more than twice the request_timeout
	// the test sets, and less than the default one.
	client := v.client(t, v.token)
	client.SetClientTimeout(20 * time.Second)
	creds := mount + "/creds/reporting"

	leased := 0 // leases the successful reads made
	for _, tc := range []struct {
		name  string
		fault map[string]any
		// requestTimeout, when not 0, is written to the config first, with
		// max_retries=0 so that one attempt has the whole budget.
		requestTimeout int
		// wantStatus is the HTTP status of the read; 0 means success.
		wantStatus int
		// wantMessage is part of the error message.
		wantMessage string
		// wantRequests is how many token requests the read makes.
		wantRequests int64
		// minTime and maxTime bound how long the read takes.
		minTime, maxTime time.Duration
	}{{
		name:         "retries_unavailable_until_it_answers",
		fault:        map[string]any{"kind": "unavailable", "count": 2},
		wantRequests: 3,
		maxTime:      5 * time.Second,
	}, {
		name:         "waits_out_a_short_rate_limit",
		fault:        map[string]any{"kind": "rate_limit", "retry_after": 1, "count": 1},
		wantRequests: 2,
		minTime:      time.Second,
		maxTime:      5 * time.Second,
	}, {
		name:         "passes_on_a_rate_limit_longer_than_the_budget",
		fault:        map[string]any{"kind": "rate_limit", "retry_after": 120},
		wantStatus:   http.StatusTooManyRequests,
		wantMessage:  "try again after 2m0s",
		wantRequests: 1,
		maxTime:      5 * time.Second,
	}, {
		name:         "retries_a_server_error_then_gives_up",
		fault:        map[string]any{"kind": "server_error"},
		wantStatus:   http.StatusBadGateway,
		wantMessage:  "HTTP 500 Internal Server Error: an HTML page (170 bytes), not JSON (after 4 attempts)",
		wantRequests: 4,
		maxTime:      8 * time.Second,
	}, {
		name:         "does_not_retry_not_implemented",
		fault:        map[string]any{"kind": "not_implemented"},
		wantStatus:   http.StatusBadGateway,
		wantMessage:  "HTTP 501",
		wantRequests: 1,
		maxTime:      5 * time.Second,
	}, {
		name:         "answers_after_one_hung_attempt",
		fault:        map[string]any{"kind": "hang", "count": 1},
		wantRequests: 2,
		maxTime:      10 * time.Second,
	}, {
		name:           "times_out_a_hang_after_request_timeout",
		fault:          map[string]any{"kind": "hang"},
		requestTimeout: 2,
		wantStatus:     http.StatusGatewayTimeout,
		wantMessage:    "request_timeout 2s",
		wantRequests:   1,
		minTime:        2 * time.Second,
		maxTime:        6 * time.Second,
	}, {
		name:         "rejects_an_html_page",
		fault:        map[string]any{"kind": "html"},
		wantStatus:   http.StatusBadGateway,
		wantMessage:  "unusable token reply",
		wantRequests: 1,
		maxTime:      5 * time.Second,
	}, {
		name:         "rejects_a_truncated_reply",
		fault:        map[string]any{"kind": "truncated"},
		wantStatus:   http.StatusBadGateway,
		wantMessage:  "unusable token reply",
		wantRequests: 1,
		maxTime:      5 * time.Second,
	}, {
		name:         "rejects_an_expired_token",
		fault:        map[string]any{"kind": "expired_jwt"},
		wantStatus:   http.StatusBadGateway,
		wantMessage:  "has already passed",
		wantRequests: 1,
		maxTime:      5 * time.Second,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			// Each case mints with a credential of its own: a case that
			// ends inside a rate-limit or backoff window of its credential
			// (the plugin pauses such a credential) must not hold up the
			// next one.
			cred := addStandinCredential(t, st, "faults-"+tc.name)
			body, _ := json.Marshal(map[string]string{"client_id": cred.clientID, "client_secret": cred.clientSecret})
			v.vaultAs(t, v.token, string(body), "patch", mount+"/config", "-")
			if tc.requestTimeout != 0 {
				v.vault(t, "write", mount+"/config", "request_timeout="+strconv.Itoa(tc.requestTimeout), "max_retries=0")
				t.Cleanup(func() {
					v.vault(t, "write", mount+"/config", "request_timeout="+strconv.Itoa(int(defaultRequestTimeout.Seconds())), "max_retries="+strconv.Itoa(defaultMaxRetries))
				})
			}
			st.control(t, "fault", tc.fault)
			// This clears a fault without a count; one with a count is spent
			// by the read, which the number of token requests checks.
			t.Cleanup(func() { st.control(t, "fault", map[string]any{"kind": ""}) })

			leasesBefore := leaseCount(t, client, creds)
			requestsBefore := st.stats(t).TokenRequests
			start := time.Now()
			secret, err := client.Logical().Read(creds)
			elapsed := time.Since(start)
			requests := st.stats(t).TokenRequests - requestsBefore

			if tc.wantStatus == 0 {
				requireToken(t, st, secret, err)
				leased++
			} else {
				requireFailure(t, st, secret, err, tc.wantStatus, tc.wantMessage)
				if n := leaseCount(t, client, creds); n != leasesBefore {
					t.Errorf("%d leases under %s after the failed read, %d before", n, creds, leasesBefore)
				}
			}
			if requests != tc.wantRequests {
				t.Errorf("the read made %d token requests, want %d", requests, tc.wantRequests)
			}
			if elapsed < tc.minTime || elapsed > tc.maxTime {
				t.Errorf("the read took %s, want between %s and %s", elapsed.Round(time.Millisecond), tc.minTime, tc.maxTime)
			}
		})
	}

	// With every fault cleared, reads work as before, and the only leases
	// are those of the successful reads.
	secret, err := client.Logical().Read(creds)
	requireToken(t, st, secret, err)
	if n := leaseCount(t, client, creds); n != leased+1 {
		t.Errorf("%d leases under %s, want %d: one per successful read", n, creds, leased+1)
	}
}

// requireToken fails t unless a creds read returned a leased, working
// token.
func requireToken(t *testing.T, st *standin, secret *api.Secret, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("the read failed: %s", redact(err.Error()))
	}
	access, _ := secret.Data["access_token"].(string)
	if access == "" || secret.LeaseID == "" || !fullLease(secret.LeaseDuration) {
		t.Fatalf("the read returned access_token %t, lease_id %q, lease_duration %d; want a token with a lease of its 1800s",
			access != "", secret.LeaseID, secret.LeaseDuration)
	}
	rememberSecret(t, "access token read by "+t.Name(), access)
	st.requireTokenWorks(t, "token read by "+t.Name(), access)
}

// fullLease reports whether a lease of seconds is what a fresh 30-minute
// token gets: its remaining life, truncated, so at most 1800; the few
// seconds of slack cover a loaded machine between the token request and
// the lease.
func fullLease(seconds int) bool {
	return seconds > 1790 && seconds <= 1800
}

// requireFailure fails t unless a creds read failed with status and a
// message holding want, free of markup and of the client secret.
func requireFailure(t *testing.T, st *standin, secret *api.Secret, err error, status int, want string) {
	t.Helper()
	if err == nil {
		leased := secret != nil && secret.LeaseID != ""
		t.Fatalf("the read succeeded (lease %t), want HTTP %d", leased, status)
	}
	var respErr *api.ResponseError
	if !errors.As(err, &respErr) {
		t.Fatalf("the read failed without an HTTP reply: %s", redact(err.Error()))
	}
	msg := strings.Join(respErr.Errors, "\n")
	t.Logf("HTTP %d: %s", respErr.StatusCode, redact(msg))
	if respErr.StatusCode != status {
		t.Errorf("the read failed with HTTP %d, want %d", respErr.StatusCode, status)
	}
	if !strings.Contains(msg, want) {
		t.Errorf("the error message does not say %q", want)
	}
	if strings.ContainsAny(msg, "<>") {
		t.Error("the error message contains markup")
	}
	if strings.Contains(msg, st.clientSecret) {
		t.Error("the error message contains the client secret")
	}
}

// leaseCount returns how many leases Vault holds under prefix.
func leaseCount(t *testing.T, client *api.Client, prefix string) int {
	t.Helper()
	s, err := client.Logical().List("sys/leases/lookup/" + prefix + "/")
	if err != nil {
		t.Fatalf("list leases under %s: %v", prefix, err)
	}
	if s == nil {
		return 0
	}
	keys, _ := s.Data["keys"].([]any)
	return len(keys)
}
