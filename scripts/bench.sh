#!/usr/bin/env bash
# Load benchmark of the plugin inside a real Vault dev server, against the
# Piwik PRO stand-in; run by `make bench`, which builds the binaries first.
# See BENCHMARKS.md for what it measures and the latest results.
#
# It starts the stand-in and `vault server -dev` on free loopback ports,
# registers this plugin and a do-nothing baseline plugin (bench/baseline),
# and loads four paths with bench/load, in interleaved rounds:
#   a) kv/data/bench       a kv-v2 read: Vault without any plugin process
#   b) baseline/creds/x    a constant lease from a plugin process: the floor
#   c) piwik/creds/reuse   a token_reuse role: served from the token cache
#   d) piwik/creds/mint    a default role: one Piwik PRO token per read
# recording throughput, latency, the stand-in's token requests and the CPU
# each process spent per read; then it reads creds of 1,000 token_reuse roles 100,000 times, round-robin,
# and reports the plugin's memory. The table goes to stdout and to
# bench/results/latest.md; every process it started is stopped on exit.
#
# Environment:
#   VAULT_BINARY, PLUGIN_BINARY, STANDIN_BINARY   absolute paths (required)
#   BENCH_CONCURRENCY  concurrent clients per scenario (default 16)
#   BENCH_DURATION     seconds measured per scenario (default 20)
#   BENCH_ROUNDS       slices each scenario's time is cut into; the slices
#                      of the four scenarios take turns (default 4)
#   BENCH_WARMUP       seconds of unmeasured load before each scenario's
#                      first slice (default 2)
#   BENCH_RSS_ROLES    roles of the memory run (default 1000)
#   BENCH_RSS_READS    reads of the memory run (default 100000)
#   BENCH_STRICT       if 1, exit 1 when a target is missed
#   BENCH_PROFILE_DIR  if set, save there a CPU profile of Vault (from its
#                      sys/pprof endpoint) of each slice: vault-<a..d>-<round>.pprof
#   GO                 the go command that builds bench/ (default go)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

: "${VAULT_BINARY:?set VAULT_BINARY to the vault binary (make bench does)}"
: "${PLUGIN_BINARY:?set PLUGIN_BINARY to the plugin binary (make bench does)}"
: "${STANDIN_BINARY:?set STANDIN_BINARY to the stand-in binary (make bench does)}"
concurrency="${BENCH_CONCURRENCY:-16}"
duration="${BENCH_DURATION:-20}"
duration="${duration%s}" # "20s" works too
rounds="${BENCH_ROUNDS:-4}"
warmup="${BENCH_WARMUP:-2}"
warmup="${warmup%s}"
rss_roles="${BENCH_RSS_ROLES:-1000}"
rss_reads="${BENCH_RSS_READS:-100000}"
go_cmd="${GO:-go}"
version="v0.1.0"
plugin_name="vault-plugin-secrets-piwik"
baseline_name="vault-plugin-secrets-baseline"

for knob in concurrency duration rounds warmup rss_roles rss_reads; do
	[[ "${!knob}" =~ ^[0-9]+$ ]] || die "$knob must be a whole number, not '${!knob}'"
done
((concurrency > 0 && duration > 0 && rounds > 0 && rss_roles > 0)) || die "concurrency, duration, rounds and roles must be positive"
for tool in curl jq sha256sum; do
	command -v "$tool" >/dev/null || die "$tool is required"
done
for bin in "$VAULT_BINARY" "$PLUGIN_BINARY" "$STANDIN_BINARY"; do
	[[ -x "$bin" ]] || die "$bin is missing: run 'make bench'"
done

loadavg_start="$(cut -d' ' -f1-3 /proc/loadavg)"
work="$(mktemp -d "${TMPDIR:-/tmp}/piwik-bench.XXXXXX")"
vault_pid="" standin_pid="" plugin_pids=""

# cleanup stops Vault (and the plugin processes it started) and the
# stand-in, and removes the work directory unless the run failed.
cleanup() {
	local rc=$? pid
	set +e
	if [[ -n "$vault_pid" ]]; then
		plugin_pids="$plugin_pids $(pgrep -P "$vault_pid" | tr '\n' ' ')"
		stop_pid vault "$vault_pid"
	fi
	for pid in $plugin_pids; do
		kill -0 "$pid" 2>/dev/null && stop_pid "plugin" "$pid"
	done
	[[ -n "$standin_pid" ]] && stop_pid stand-in "$standin_pid"
	if ((rc == 0)); then
		rm -rf "$work"
	else
		printf 'the run failed; logs are in %s\n' "$work" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_pid NAME PID ends PID politely, then firmly after 10s.
stop_pid() {
	local i
	step "stopping $1 (pid $2)"
	kill -TERM "$2" 2>/dev/null || return 0
	for i in $(seq 1 50); do
		kill -0 "$2" 2>/dev/null || return 0
		sleep 0.2
	done
	kill -KILL "$2" 2>/dev/null || true
}

# free_port prints a loopback port that nothing listens on, nor on the next
# one (Vault's dev cluster listener takes port+1).
free_port() {
	local port i
	for i in $(seq 1 50); do
		port=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
			! (exec 3<>"/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null; then
			printf '%s' "$port"
			return 0
		fi
	done
	die "found no free port"
}

# vault_up and standin_up are checks for lib.sh's wait_until: 0 when ready,
# 2 when the process died.
vault_up() {
	kill -0 "$vault_pid" 2>/dev/null || return 2
	"$VAULT_BINARY" status >/dev/null 2>&1
}
standin_up() {
	kill -0 "$standin_pid" 2>/dev/null || return 2
	[[ -s "$work/standin.addr" ]]
}

# token_requests prints how many token requests the stand-in has served.
token_requests() {
	curl -fsS "$standin_url/_standin/stats" | jq -r .token_requests
}

# plugin_pid [NAME] prints the pid of the process Vault runs for plugin
# NAME (default: the piwik plugin). Plugins are multiplexed: one process
# serves every mount of a plugin.
plugin_pid() {
	local name="${1:-$plugin_name}" pids
	pids="$(pgrep -P "$vault_pid" -f -- "^$work/plugins/$name( |$)" || true)"
	[[ -n "$pids" && "$pids" != *$'\n'* ]] || die "expected one $name process under Vault, found: ${pids:-none}"
	printf '%s' "$pids"
}

# cpu_ms PID prints the CPU time, user and system, PID has used.
clk_tck="$(getconf CLK_TCK)"
cpu_ms() {
	sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$clk_tck" '{ printf "%d", ($12 + $13) * 1000 / hz }'
}

# per_read MS READS prints MS spread over READS, in microseconds.
per_read() {
	awk -v ms="$1" -v n="$2" 'BEGIN { if (n == 0) print "n/a"; else printf "%.0f", ms * 1000 / n }'
}

# status_mib PID FIELD prints a /proc/PID/status memory field in MiB.
status_mib() {
	awk -v f="$2:" '$1 == f { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

# reset_peak PID restarts PID's VmHWM from its current RSS, so that each
# scenario reports its own peak. Where the kernel refuses, VmHWM is the
# peak since the process started.
reset_peak() {
	echo 5 >"/proc/$1/clear_refs" 2>/dev/null || hwm_note="VmHWM could not be reset; it is the peak since the plugin started."
}
hwm_note=""

# load ARGS... runs the load driver against Vault.
load() {
	"$work/bin/load" -addr "$VAULT_ADDR" "$@"
}

# --- build and start -------------------------------------------------------

step "building the load driver and the baseline plugin (bench/) into $work"
mkdir -p "$work/bin" "$work/plugins" "$work/home"
if [[ -n "${BENCH_PROFILE_DIR:-}" ]]; then
	mkdir -p "$BENCH_PROFILE_DIR"
	BENCH_PROFILE_DIR="$(cd "$BENCH_PROFILE_DIR" && pwd)"
fi
(cd "$root" && "$go_cmd" build -trimpath -o "$work/bin/load" ./bench/load)
(cd "$root" && "$go_cmd" build -trimpath -o "$work/plugins/$baseline_name" ./bench/baseline)
cp "$PLUGIN_BINARY" "$work/plugins/$plugin_name"

standin_secret="$(random_string)"
step "starting the Piwik PRO stand-in on a free loopback port (log: $work/standin.log)"
PIWIK_STANDIN_CLIENT_SECRET="$standin_secret" "$STANDIN_BINARY" \
	-listen 127.0.0.1:0 -client-id bench-client -addr-file "$work/standin.addr" \
	</dev/null >"$work/standin.log" 2>&1 &
standin_pid=$!
wait_until 15 "the stand-in did not start; read $work/standin.log" standin_up
standin_url="$(cat "$work/standin.addr")"

vault_port="$(free_port)"
export VAULT_ADDR="http://127.0.0.1:$vault_port"
VAULT_TOKEN="$(random_string)"
export VAULT_TOKEN
step "starting Vault dev server on $VAULT_ADDR (log: $work/vault.log)"
# The root token goes through the environment, out of ps; HOME keeps the
# dev server's token helper away from the user's ~/.vault-token.
HOME="$work/home" VAULT_DEV_ROOT_TOKEN_ID="$VAULT_TOKEN" "$VAULT_BINARY" server -dev \
	-dev-listen-address="127.0.0.1:$vault_port" -dev-plugin-dir="$work/plugins" \
	</dev/null >"$work/vault.log" 2>&1 &
vault_pid=$!
wait_until 30 "Vault did not come up; read $work/vault.log" vault_up
vault_version="$("$VAULT_BINARY" version | awk '{ sub(",", "", $2); print $2 }')"

for name in "$plugin_name" "$baseline_name"; do
	step "registering $name $version"
	sha="$(sha256sum "$work/plugins/$name" | cut -d' ' -f1)"
	"$VAULT_BINARY" plugin register -sha256="$sha" -version="$version" secret "$name" >/dev/null
done

step "enabling kv-v2 at kv/ and writing kv/bench"
"$VAULT_BINARY" secrets enable -path=kv kv-v2 >/dev/null
# A new kv-v2 mount refuses writes until it has finished setting up.
kv_put() { "$VAULT_BINARY" kv put -mount=kv bench value=benchmark >/dev/null 2>&1; }
wait_until 15 "writing kv/bench failed; read $work/vault.log" kv_put

step "enabling the baseline plugin at baseline/ and the piwik plugin at piwik/"
"$VAULT_BINARY" secrets enable -path=baseline -plugin-version="$version" "$baseline_name" >/dev/null
"$VAULT_BINARY" secrets enable -path=piwik -plugin-version="$version" "$plugin_name" >/dev/null

step "writing piwik/config (url=$standin_url) and roles reuse (token_reuse=true) and mint (the default)"
printf '%s' "$standin_secret" |
	"$VAULT_BINARY" write piwik/config url="$standin_url" client_id=bench-client client_secret=- >/dev/null
"$VAULT_BINARY" write piwik/roles/reuse token_reuse=true >/dev/null
"$VAULT_BINARY" write piwik/roles/mint ttl=0 >/dev/null

step "writing $rss_roles roles r0..r$((rss_roles - 1)) with token_reuse=true"
out="$(load -method POST -path 'piwik/roles/r{i}' -spread "$rss_roles" -reads "$rss_roles" \
	-data '{"token_reuse":true}' -concurrency 4 -duration 120s)"
[[ "$(jq -r '.reads' <<<"$out")" == "$rss_roles" ]] || die "writing the roles failed: $out"

pid="$(plugin_pid)"
step "the piwik plugin runs as pid $pid"

# --- scenarios ---------------------------------------------------------------
#
# The scenarios run interleaved: round 1 runs a, b, c, d for a slice of
# BENCH_DURATION each, round 2 again, and so on, so that whatever else the
# machine does, and the leases piling up in Vault, weigh on all four alike.
# Only the first slice of each scenario has a warm-up.

declare -A res
scenarios=(a b c d)
declare -A spath=([a]=kv/data/bench [b]=baseline/creds/x [c]=piwik/creds/reuse [d]=piwik/creds/mint)
declare -A sname=([a]="kv-v2 read" [b]="baseline plugin" [c]="piwik, token_reuse" [d]="piwik, mint per read")
slice=$((duration / rounds))
((slice > 0)) || die "BENCH_DURATION ($duration) must be at least BENCH_ROUNDS ($rounds) seconds"

for s in "${scenarios[@]}"; do
	for k in reads errors warmup_reads requests upstream hwm secs cpu_vault cpu_plugin cpu_standin cpu_driver; do
		res[$s.$k]=0
	done
	: >"$work/latency-$s.txt"
done
res[a.cpu_plugin]="-"
first_pid="$(plugin_pid)"

# add SCENARIO KEY VALUE adds VALUE (a decimal) to the scenario's tally.
add() { res[$1.$2]="$(awk -v x="${res[$1.$2]}" -v y="$3" 'BEGIN { print x + y }')"; }

for round in $(seq 1 "$rounds"); do
	for s in "${scenarios[@]}"; do
		wu=0
		((round > 1)) || wu="$warmup"
		pid="$(plugin_pid)"
		# The plugin process that serves this scenario's path, if any.
		case $s in
		a) served="" ;;
		b) served="$(plugin_pid "$baseline_name")" ;;
		*) served="$pid" ;;
		esac
		reset_peak "$pid"
		before="$(token_requests)"
		vault_cpu="$(cpu_ms "$vault_pid")" standin_cpu="$(cpu_ms "$standin_pid")"
		served_cpu="$([[ -z "$served" ]] || cpu_ms "$served")"
		step "round $round/$rounds ($s) ${sname[$s]}: $concurrency clients read ${spath[$s]} for ${wu}s warm-up + ${slice}s"
		profiler=""
		if [[ -n "${BENCH_PROFILE_DIR:-}" ]]; then
			# Profiles the measured part; it starts after the warm-up.
			(sleep "$wu" && curl -fsS -o "$BENCH_PROFILE_DIR/vault-$s-$round.pprof" -H "X-Vault-Token: $VAULT_TOKEN" \
				"$VAULT_ADDR/v1/sys/pprof/profile?seconds=$((slice > 2 ? slice - 1 : 1))") &
			profiler=$!
		fi
		out="$(load -path "${spath[$s]}" -concurrency "$concurrency" -duration "${slice}s" -warmup "${wu}s" \
			-latency-file "$work/latency-$s.txt")"
		[[ -z "$profiler" ]] || wait "$profiler" || step "profiling Vault failed"
		after="$(token_requests)"
		printf '    %s\n' "$out"
		add "$s" reads "$(jq -r .reads <<<"$out")"
		add "$s" errors "$(jq -r '.errors + .warmup_errors' <<<"$out")"
		add "$s" warmup_reads "$(jq -r .warmup_reads <<<"$out")"
		add "$s" requests "$(jq -r '.reads + .warmup_reads + .errors + .warmup_errors' <<<"$out")"
		add "$s" secs "$(jq -r .duration_s <<<"$out")"
		add "$s" upstream $((after - before))
		res[$s.hwm]="$(awk -v x="${res[$s.hwm]}" -v y="$(status_mib "$pid" VmHWM)" 'BEGIN { print (y > x ? y : x) }')"
		# CPU of each process on the shared cores, warm-up included.
		add "$s" cpu_vault $(($(cpu_ms "$vault_pid") - vault_cpu))
		[[ -z "$served" ]] || add "$s" cpu_plugin $(($(cpu_ms "$served") - served_cpu))
		add "$s" cpu_standin $(($(cpu_ms "$standin_pid") - standin_cpu))
		add "$s" cpu_driver "$(jq -r .cpu_ms <<<"$out")"
	done
done

# percentile_ms FILE P prints the P-th percentile (nearest rank) of the
# latencies in FILE (microseconds, one per line) in milliseconds.
percentile_ms() {
	sort -n "$1" | awk -v p="$2" '{ v[NR] = $1 }
		END { if (NR == 0) { print 0; exit } i = int(p * NR + 0.5); if (i < 1) i = 1; if (i > NR) i = NR; printf "%.3f", v[i] / 1000 }'
}

for s in "${scenarios[@]}"; do
	res[$s.reads_per_s]="$(awk -v n="${res[$s.reads]}" -v t="${res[$s.secs]}" 'BEGIN { printf "%.1f", (t > 0 ? n / t : 0) }')"
	for p in 50 90 99; do
		res[$s.p${p}_ms]="$(percentile_ms "$work/latency-$s.txt" "0.$p")"
	done
	for k in cpu_vault cpu_plugin cpu_standin cpu_driver; do
		[[ "${res[$s.$k]}" == "-" ]] || res[$s.$k]="$(per_read "${res[$s.$k]}" "${res[$s.requests]}")"
	done
done
res[d.vault_rss]="$(status_mib "$vault_pid" VmRSS)"

# --- memory run --------------------------------------------------------------

pid="$(plugin_pid)"
reset_peak "$pid"
before="$(token_requests)"
step "memory: $rss_reads reads of piwik/creds/r{0..$((rss_roles - 1))}, round-robin, $concurrency clients"
rss_out="$(load -path 'piwik/creds/r{i}' -spread "$rss_roles" -reads "$rss_reads" \
	-concurrency "$concurrency" -duration 300s)"
after="$(token_requests)"
printf '    %s\n' "$rss_out"
rss_upstream=$((after - before))
rss_now="$(status_mib "$pid" VmRSS)"
rss_hwm="$(status_mib "$pid" VmHWM)"
rss_done="$(jq -r .reads <<<"$rss_out")"
metrics="$(curl -fsS -H "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/piwik/metrics" |
	jq -c '.data | {tokens_minted, reuse_hits, upstream_requests, upstream_failures}')"
[[ "$(plugin_pid)" == "$first_pid" ]] || hwm_note="$hwm_note The plugin process changed during the run (it restarted)."

# --- report ------------------------------------------------------------------

# ratio X Y prints X/Y to two places.
ratio() { awk -v x="$1" -v y="$2" 'BEGIN { if (y == 0) print "n/a"; else printf "%.2f", x / y }'; }
# at_least X Y succeeds when X >= Y.
at_least() { awk -v x="$1" -v y="$2" 'BEGIN { exit !(x >= y) }'; }
verdict() { if "$@"; then printf PASS; else printf MISS; fi; }

c_tp="$(ratio "${res[c.reads_per_s]}" "${res[b.reads_per_s]}")"
d_tp="$(ratio "${res[d.reads_per_s]}" "${res[b.reads_per_s]}")"
c_p99="$(ratio "${res[c.p99_ms]}" "${res[b.p99_ms]}")"
d_p99="$(ratio "${res[d.p99_ms]}" "${res[b.p99_ms]}")"
d_total=$((res[d.reads] + res[d.warmup_reads]))
d_errors=${res[d.errors]}

t_tp="$(verdict at_least "$c_tp" 0.9)"
t_p99="$(verdict at_least 1.2 "$c_p99")"
t_reuse="$(verdict test "${res[c.upstream]}" -eq 1 -a "$rss_upstream" -eq "$rss_roles")"
t_mint="$(verdict test "${res[d.upstream]}" -eq "$d_total" -a "$d_errors" -eq 0)"
t_rss="$(verdict awk -v r="$rss_now" -v n="$rss_done" -v want="$rss_reads" 'BEGIN { exit !(r < 64 && n == want) }')"

report="$work/report.md"
{
	printf '# make bench: %s\n\n' "$(date -u +%Y-%m-%dT%H:%MZ)"
	printf -- '- machine: %s cores (%s), %s GiB RAM; %s; Vault %s\n' \
		"$(nproc)" "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
		"$(awk '/^MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)" \
		"$("$go_cmd" version | awk '{print $3}')" "$vault_version"
	printf -- '- load: %s concurrent clients; each scenario measured for %s rounds of %ss, interleaved (a b c d, a b c d, ...), after a %ss warm-up; driver, Vault, plugins and stand-in share the machine\n' \
		"$concurrency" "$rounds" "$slice" "$warmup"
	printf -- '- load average (1, 5, 15 min) before the run: %s; after: %s\n\n' "$loadavg_start" "$(cut -d' ' -f1-3 /proc/loadavg)"
	printf '| scenario | path | reads | reads/s | p50 ms | p90 ms | p99 ms | errors | upstream token requests | piwik plugin VmHWM MiB |\n'
	printf '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
	for s in "${scenarios[@]}"; do
		printf '| (%s) %s | `%s` | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
			"$s" "${sname[$s]}" "${spath[$s]}" "${res[$s.reads]}" "${res[$s.reads_per_s]}" \
			"${res[$s.p50_ms]}" "${res[$s.p90_ms]}" "${res[$s.p99_ms]}" \
			"${res[$s.errors]}" "${res[$s.upstream]}" "${res[$s.hwm]}"
	done
	printf '\nUpstream token requests and errors cover the warm-up too (warm-up reads: c %s, d %s); Vault VmRSS after d: %s MiB.\n\n' \
		"${res[c.warmup_reads]}" "${res[d.warmup_reads]}" "${res[d.vault_rss]}"
	printf 'CPU time per read, in microseconds, of each process (warm-up included; the plugin is the one serving the path):\n\n'
	printf '| scenario | Vault | plugin | stand-in | load driver | total |\n|---|---:|---:|---:|---:|---:|\n'
	for s in "${scenarios[@]}"; do
		printf '| (%s) %s | %s | %s | %s | %s | %s |\n' "$s" "${sname[$s]}" \
			"${res[$s.cpu_vault]}" "${res[$s.cpu_plugin]}" "${res[$s.cpu_standin]}" "${res[$s.cpu_driver]}" \
			"$(awk -v a="${res[$s.cpu_vault]}" -v b="${res[$s.cpu_plugin]}" -v c="${res[$s.cpu_standin]}" -v d="${res[$s.cpu_driver]}" 'BEGIN { print a + b + c + d }')"
	done
	printf '\n'
	printf '| ratio | throughput | p99 latency |\n|---|---:|---:|\n'
	printf '| c/b (reuse vs baseline) | %s | %s |\n' "$c_tp" "$c_p99"
	printf '| d/b (mint vs baseline) | %s | %s |\n\n' "$d_tp" "$d_p99"
	printf 'Memory run: %s of %s reads over %s roles at %s reads/s (p99 %s ms, %s errors); %s upstream token requests; ' \
		"$rss_done" "$rss_reads" "$rss_roles" "$(jq -r .reads_per_s <<<"$rss_out")" \
		"$(jq -r .p99_ms <<<"$rss_out")" "$(jq -r .errors <<<"$rss_out")" "$rss_upstream"
	printf 'piwik plugin VmRSS %s MiB, VmHWM %s MiB.\n' "$rss_now" "$rss_hwm"
	printf 'Plugin metrics at the end: `%s`.\n' "$metrics"
	[[ -z "$hwm_note" ]] || printf '%s\n' "$hwm_note"
	printf '\n| target | measured | result |\n|---|---|---|\n'
	printf '| c/b throughput >= 0.9 | %s | %s |\n' "$c_tp" "$t_tp"
	printf '| c p99 <= 1.2x b p99 | %s x | %s |\n' "$c_p99" "$t_p99"
	printf '| reuse: one token request per role per lifetime | c: %s (cold cache); memory run: %s for %s roles | %s |\n' \
		"${res[c.upstream]}" "$rss_upstream" "$rss_roles" "$t_reuse"
	printf '| mint: one token request per read | %s requests for %s reads, %s errors | %s |\n' \
		"${res[d.upstream]}" "$d_total" "$d_errors" "$t_mint"
	printf '| RSS < 64 MiB after %s reads across %s roles | %s MiB (VmHWM %s) | %s |\n' \
		"$rss_reads" "$rss_roles" "$rss_now" "$rss_hwm" "$t_rss"
} >"$report"

mkdir -p "$root/bench/results"
cp "$report" "$root/bench/results/latest.md"
printf '\n'
cat "$report"
printf '\n(written to bench/results/latest.md)\n'

if [[ "${BENCH_STRICT:-}" == 1 ]] && grep -q '| MISS |' "$report"; then
	exit 1
fi
