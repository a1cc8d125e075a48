#!/usr/bin/env bash
# Runs the core of the end-to-end suite against each Vault binary given on
# the command line, one after the other, and prints one result line per
# Vault version and a summary. Run by `make compat`, which builds the
# binaries first (bin/vault and bin/vault-<version>); see README,
# "Compatibility".
#
# The core is what depends on the Vault release rather than on the plugin
# alone: reading creds as leases, lease lookup/renew/revoke and revocation
# on disable, the example ACL policies, Vault Agent templates, upgrading the
# plugin version in place, a restart of a real server with file storage,
# the OpenAPI document and path-help, plus the suite's scan of every log
# (server, agent, audit) for secrets. Left out: upstream faults and the
# check path (plugin logic that Vault only forwards), the example app (an
# Agent user like the Agent test), the log scanner's self-test, and the
# 3-node raft cluster (the slowest test).
#
# Usage: scripts/compat.sh VAULT_BINARY...
# Environment:
#   PLUGIN_BINARY, STANDIN_BINARY  absolute paths (required)
#   PLUGIN_VERSION                 the version the plugin was built with
#   COMPAT_RUN                     go test -run pattern (default: the core)
#   COMPAT_LOG_DIR                 where each run's output goes (default bin/compat)
#   GO                             the go command (default go)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

: "${PLUGIN_BINARY:?set PLUGIN_BINARY to the plugin binary (make compat does)}"
: "${STANDIN_BINARY:?set STANDIN_BINARY to the stand-in binary (make compat does)}"
(($# > 0)) || die "usage: $0 VAULT_BINARY..."

core='^(TestCredsLeaseMatchesTokenLifetime|TestConfigReadOmitsSecret|TestLeaseLookupRevokeAndDisable|TestWrongSecretFailsWithoutEcho|TestReportingReaderPolicy|TestPiwikAdminPolicy|TestAgentRewritesTokenBeforeExpiry|TestUpgradePluginVersion|TestConfigAndRolesSurviveRestart|TestOpenAPIDocumentsEveryPath|TestPathHelpForEveryPath)$'
run="${COMPAT_RUN:-$core}"
log_dir="${COMPAT_LOG_DIR:-$root/bin/compat}"
go="${GO:-go}"
mkdir -p "$log_dir"

results=()
failed=0
for bin in "$@"; do
	[[ -x "$bin" ]] || die "$bin is missing or not executable"
	# "Vault v1.21.0, built 2025-..." -> v1.21.0
	version="$("$bin" version | sed -n 's/^Vault \(v[^ ,]*\).*/\1/p')"
	[[ -n "$version" ]] || die "$bin does not say which Vault it is"
	log="$log_dir/e2e-$version.log"
	step "Vault $version ($bin): e2e core, output in $log"
	start=$SECONDS
	rc=0
	(cd "$root" && VAULT_BINARY="$bin" "$go" test -count=1 -timeout 30m -v -run "$run" ./e2e/...) >"$log" 2>&1 || rc=$?
	elapsed=$((SECONDS - start))
	passed="$(grep -c '^--- PASS' "$log" || true)"
	failing="$(grep '^--- FAIL' "$log" | awk '{print $3}' | paste -sd, - || true)"
	if ((rc == 0)); then
		line="Vault $version: e2e core PASS ($passed tests, ${elapsed}s)"
	else
		failed=1
		line="Vault $version: e2e core FAIL (exit $rc, ${elapsed}s; failed: ${failing:-see log}; log: $log)"
	fi
	echo "$line"
	results+=("$line")
done

step "summary"
printf '%s\n' "${results[@]}"
exit "$failed"
