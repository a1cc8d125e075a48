package e2e

import "time"

// What a user of the plugin must see, as the tests check it from outside:
// the plugin's name, the pacing of its token requests, what a read says
// when it cannot get a token. The suite is a black-box contract, so it
// keeps these values itself, here and only here; a change to one of them in
// the plugin is a change its users see, and must show here too.

const (
	pluginName = "vault-plugin-secrets-piwik"
	module     = "github.com/piwik-vault/vault-plugin-secrets-piwik"
)

// The pacing of token requests per credential.
const (
	gateMaxInFlight           = 4 // token requests in flight at once
	gateFailuresBeforeBackoff = 2
	gateBackoffBase           = 500 * time.Millisecond
	gateMaxBackoff            = 30 * time.Second
	// retryAfterCap is the longest Retry-After the plugin honours.
	retryAfterCap = 5 * time.Minute
)

// The config's defaults.
const (
	defaultRequestTimeout = 10 * time.Second
	defaultMaxRetries     = 3
)

// staleFloor is the least life a cached token must have left to be served
// while Piwik PRO cannot issue a new one.
func staleFloor(lifetime time.Duration) time.Duration {
	return min(30*time.Second, lifetime/4)
}

// What the plugin's messages say. Each constant is a part of a message
// that a test looks for.
const (
	// staleWarning: the warning of a read served a cached token during an
	// outage.
	staleWarning = "serving the cached token"
	// A failed read: why.
	msgCredentialsRejected = "rejected the client credentials"
	msgRateLimited         = "rate limited the token request"
	msgWaitingOutRateLimit = "waiting out Piwik PRO's rate limit"
	msgNotSent             = "no request sent"
	msgBackingOff          = "this credential is backing off"
	msgUpstreamStatus      = "Piwik PRO failed with HTTP"
	msgUnreachable         = "Piwik PRO is unreachable"
	msgTimedOut            = "Piwik PRO timed out"
	// msgMintFailed starts the warn line a failed mint writes to Vault's
	// log.
	msgMintFailed = "Piwik PRO did not issue a token"
)

// tryAgainAfter is how a read refused inside a Retry-After window says how
// long is left.
func tryAgainAfter(d time.Duration) string {
	return "try again after " + d.String()
}
