#!/usr/bin/env bash
# Runs `make acc`, the acceptance test meant for a real Piwik PRO account,
# against a local Piwik PRO stand-in: it starts the stand-in with one
# credential on a free loopback port and passes its URL, client id and
# secret in PIWIK_URL, PIWIK_CLIENT_ID and PIWIK_CLIENT_SECRET. Run by
# `make acc-standin`, which builds the binaries first.
#
# Environment:
#   STANDIN_BINARY  the stand-in (default bin/piwik-standin)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

standin_bin="${STANDIN_BINARY:-$root/bin/piwik-standin}"
[[ -x "$standin_bin" ]] || die "$standin_bin is missing: run 'make acc-standin'"

work="$(mktemp -d "${TMPDIR:-/tmp}/piwik-acc.XXXXXX")"
standin_pid=""
# cleanup stops the stand-in and removes its files, unless the run failed.
cleanup() {
	local rc=$?
	if [[ -n "$standin_pid" ]]; then
		step "stopping the stand-in (pid $standin_pid)"
		kill -TERM "$standin_pid" 2>/dev/null || true
		wait "$standin_pid" 2>/dev/null || true
	fi
	if ((rc == 0)); then
		rm -rf "$work"
	else
		printf 'the run failed; the stand-in log is in %s\n' "$work" >&2
	fi
}
trap cleanup EXIT

client_id="acc-client"
secret="$(random_string)"
step "starting the Piwik PRO stand-in with credential $client_id (log: $work/standin.log)"
PIWIK_STANDIN_CLIENT_SECRET="$secret" "$standin_bin" \
	-listen 127.0.0.1:0 -client-id "$client_id" -addr-file "$work/standin.addr" \
	</dev/null >"$work/standin.log" 2>&1 &
standin_pid=$!
standin_up() {
	kill -0 "$standin_pid" 2>/dev/null || return 2
	[[ -s "$work/standin.addr" ]]
}
wait_until 15 "the stand-in did not start; read $work/standin.log" standin_up
url="$(cat "$work/standin.addr")"

step "make acc with PIWIK_URL=$url PIWIK_CLIENT_ID=$client_id PIWIK_CLIENT_SECRET=(the stand-in's)"
PIWIK_URL="$url" PIWIK_CLIENT_ID="$client_id" PIWIK_CLIENT_SECRET="$secret" \
	make --no-print-directory -C "$root" acc
