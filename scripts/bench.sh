#!/usr/bin/env bash
# Load benchmark of the plugin inside real Vault servers (dev, one raft
# node, a 3-node raft cluster) against the Piwik PRO stand-in; run by
# `make bench`, which builds the plugin, the stand-in and Vault first.
# BENCHMARKS.md explains what it measures and lists the knobs (BENCH_*).
#
# This script builds the harness (bench/run) and the baseline plugin
# (bench/baseline) into a temporary directory and runs the harness, which
# starts and stops every server itself and writes bench/results/latest.md
# (or $BENCH_OUT).
#
# Environment: VAULT_BINARY, PLUGIN_BINARY, STANDIN_BINARY (required,
# absolute paths); PLUGIN_VERSION (default: the top entry of CHANGELOG.md); GO (default go);
# BENCH_PROFILE_DIR: also save CPU profiles there, with a plugin built
# with its symbol table so that perf can name its functions.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

: "${VAULT_BINARY:?set VAULT_BINARY to the vault binary (make bench does)}"
: "${PLUGIN_BINARY:?set PLUGIN_BINARY to the plugin binary (make bench does)}"
: "${STANDIN_BINARY:?set STANDIN_BINARY to the stand-in binary (make bench does)}"
go_cmd="${GO:-go}"
export PLUGIN_VERSION="${PLUGIN_VERSION:-$(make -s -C "$root" version)}"
module="github.com/piwik-vault/vault-plugin-secrets-piwik"

build="$(mktemp -d "${TMPDIR:-/tmp}/piwik-bench-build.XXXXXX")"
trap 'rm -rf "$build"' EXIT

cd "$root"
# With profiles, both plugins keep their symbol tables so that perf can
# name their functions; the code is the same.
strip="-s -w"
[[ -z "${BENCH_PROFILE_DIR:-}" ]] || strip=""
step "building bench/run and bench/baseline into $build"
"$go_cmd" build -o "$build/bench-run" ./bench/run
CGO_ENABLED=0 "$go_cmd" build -trimpath -ldflags "$strip" -o "$build/baseline" ./bench/baseline
if [[ -n "${BENCH_PROFILE_DIR:-}" ]]; then
	step "building the plugin with its symbol table, for perf (profiles go to $BENCH_PROFILE_DIR)"
	CGO_ENABLED=0 "$go_cmd" build -trimpath -ldflags "-X $module.Version=$PLUGIN_VERSION" \
		-o "$build/plugin" ./cmd/vault-plugin-secrets-piwik
	PLUGIN_BINARY="$build/plugin"
fi

step "running the benchmark (BENCH_MODE=${BENCH_MODE:-full})"
BASELINE_BINARY="$build/baseline" PLUGIN_BINARY="$PLUGIN_BINARY" \
	BENCH_OUT="${BENCH_OUT:-$root/bench/results/latest.md}" "$build/bench-run"
