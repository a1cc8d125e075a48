package piwik

import (
	"context"
	"errors"
	"net/http"

	"github.com/hashicorp/vault/sdk/logical"
)

// failureStatus is the one mapping from a failure to the HTTP status Vault
// answers with, on every path:
//
//   - 404 for a patch of a config or role that was never written;
//   - 409 for a role whose secret was given for another url than the
//     config's (nothing was sent), and for a patch of a stored entry that
//     does not decode (only a full write replaces it);
//   - 500 for a stored entry that does not decode, and for anything that
//     is not an upstream failure;
//   - 504 when the caller's own deadline ended first;
//   - for a failed token request, 429 when Piwik PRO rate limited it (the
//     message says when to retry), 504 when it did not answer in time,
//     and 502 for anything else Piwik PRO or the network did, a token that
//     expires within a second included.
//
// The caller's own bad input is a 400 and never comes through here.
func failureStatus(err error) int {
	var binding *bindingError
	var caller *callerError
	var patch *patchError
	switch {
	case errors.As(err, &patch) && patch.corrupt:
		return http.StatusConflict
	case errors.As(err, &patch):
		return http.StatusNotFound
	case errors.As(err, &binding):
		return http.StatusConflict
	case isCorrupt(err):
		return http.StatusInternalServerError
	case errors.As(err, &caller) && errors.Is(caller.cause, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, errTokenTooShort):
		return http.StatusBadGateway
	}
	upErr, ok := asUpstreamError(err)
	switch {
	case !ok:
		return http.StatusInternalServerError
	case upErr.Kind == kindRateLimited:
		return http.StatusTooManyRequests
	case upErr.Kind == kindTimeout:
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// failureError is err as Vault answers it: coded with failureStatus and
// its message, which is safe to show (no secret, no token, upstream text
// scrubbed). Errors this plugin does not know, such as storage failures,
// pass unchanged and Vault answers them with a 500 of its own.
func failureError(err error) error {
	if !knownFailure(err) {
		return err
	}
	return logical.CodedError(failureStatus(err), err.Error())
}

// knownFailure reports whether err is one of the failures failureStatus
// maps.
func knownFailure(err error) bool {
	var binding *bindingError
	var caller *callerError
	var patch *patchError
	_, upstream := asUpstreamError(err)
	return upstream || isCorrupt(err) || errors.As(err, &binding) || errors.As(err, &caller) ||
		errors.As(err, &patch) || errors.Is(err, errTokenTooShort)
}

// verifyFailure answers a write whose credentials could not be verified,
// with prefix saying what was not stored: 400 when Piwik PRO rejected them
// (the caller's own bad input), else as failureError, so that a 429 or a
// timeout is retried by clients instead of read as bad input.
func verifyFailure(prefix string, err error) (*logical.Response, error) {
	msg := prefix + ": " + err.Error()
	if upErr, ok := asUpstreamError(err); ok && upErr.Kind == kindCredentials {
		return logical.ErrorResponse(msg), nil
	}
	if !knownFailure(err) {
		return nil, err
	}
	return nil, logical.CodedError(failureStatus(err), msg)
}

// combinedStatus is the status of a report of several failures, each with
// its own status: theirs when they all agree, else 502, so that a probe
// which only looks at the status sees that something failed.
func combinedStatus(statuses map[int]bool) int {
	if len(statuses) == 1 {
		for s := range statuses {
			return s
		}
	}
	return http.StatusBadGateway
}

// patchError is a patch of what cannot be patched: an entry that was never
// written, or one that does not decode (corrupt), which only a full write
// replaces.
type patchError struct {
	msg     string
	corrupt bool
}

func (e *patchError) Error() string { return e.msg }

// errTokenTooShort is a token Piwik PRO issued that expires within a
// second of now, too short for any lease.
var errTokenTooShort = errors.New("the token Piwik PRO issued expires in less than a second; check the clocks of Vault and Piwik PRO")
