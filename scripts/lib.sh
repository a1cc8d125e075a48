# Helpers shared by the scripts in scripts/. Source it; it
# runs nothing by itself.

# step prints what the script is about to do.
step() {
	printf '==> %s\n' "$*"
}

# die prints an error and exits.
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# random_string prints 32 random URL-safe characters.
random_string() {
	local s
	s="$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
	printf '%s' "${s:0:32}"
}

# start_background PIDFILE LOGFILE CMD... starts CMD detached from this shell
# in a process group of its own (so that dev-stop.sh can end it together
# with its children), with output to LOGFILE, and records its pid in
# PIDFILE. With setsid (Linux) it gets a session of its own too; without it
# (macOS), bash's job control gives it its own process group. The process
# writes its own pid: setsid may fork, so $! is not reliable.
start_background() {
	local pidfile="$1" logfile="$2" i
	shift 2
	rm -f "$pidfile"
	# shellcheck disable=SC2016 # $$ and $0 belong to the inner shell
	local record_pid='printf "%s\n" "$$" >"$0"; exec "$@"'
	if command -v setsid >/dev/null 2>&1; then
		setsid bash -c "$record_pid" "$pidfile" "$@" </dev/null >"$logfile" 2>&1 &
	else
		set -m
		bash -c "$record_pid" "$pidfile" "$@" </dev/null >"$logfile" 2>&1 &
		set +m
	fi
	for i in $(seq 1 50); do
		[[ -s "$pidfile" ]] && return 0
		sleep 0.1
	done
	die "could not start $1; read $logfile"
}

# sha256_of FILE prints the SHA-256 of FILE in hex: with sha256sum (Linux),
# shasum (macOS) or openssl, whichever is there.
sha256_of() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | cut -d' ' -f1
	elif command -v shasum >/dev/null 2>&1; then
		shasum -a 256 "$1" | cut -d' ' -f1
	else
		openssl dgst -sha256 -r "$1" | cut -d' ' -f1
	fi
}

# vault_release VAULT prints the release of the Vault binary VAULT as
# MAJOR.MINOR.PATCH ("1.21.0" for "Vault v1.21.0 ('…'), built …", also for
# "v1.19.4+ent"), or nothing when it does not say (or does not run). The
# binary gets no terminal input, so one that prompts cannot hang the script.
vault_release() {
	{ "$1" version </dev/null 2>/dev/null || true; } |
		sed -n 's/^Vault v\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n 1
}

# version_at_least A B succeeds when the release A (MAJOR.MINOR.PATCH) is B
# or newer.
version_at_least() {
	local IFS=.
	# shellcheck disable=SC2206 # splitting on dots is the point
	local a=($1) b=($2) i
	for i in 0 1 2; do
		((${a[i]:-0} > ${b[i]:-0})) && return 0
		((${a[i]:-0} < ${b[i]:-0})) && return 1
	done
	return 0
}

# alive PIDFILE reports whether the process recorded in PIDFILE runs.
alive() {
	local pid
	[[ -f "$1" ]] || return 1
	pid="$(cat "$1")"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

# wait_until SECONDS MESSAGE CHECK... runs CHECK every half second until it
# succeeds, and dies with MESSAGE after SECONDS. CHECK returning 2 means it
# can never succeed (the process died), so the wait ends at once.
wait_until() {
	local seconds="$1" message="$2" rc
	shift 2
	local deadline=$((SECONDS + seconds))
	while ((SECONDS < deadline)); do
		rc=0
		"$@" || rc=$?
		case $rc in
		0) return 0 ;;
		2) die "$message (the process exited)" ;;
		esac
		sleep 0.5
	done
	die "$message (gave up after ${seconds}s)"
}

# vault_ready VAULT PIDFILE succeeds once the Vault started with PIDFILE
# answers unsealed at VAULT_ADDR.
vault_ready() {
	alive "$2" || return 2
	"$1" status >/dev/null 2>&1
}

# file_ready FILE PIDFILE succeeds once FILE is not empty.
file_ready() {
	alive "$2" || return 2
	[[ -s "$1" ]]
}

# run_or_die MESSAGE CMD... runs CMD and dies with MESSAGE if it fails.
run_or_die() {
	local message="$1"
	shift
	"$@" || die "$message"
}

# stop_pidfile NAME PIDFILE MARK ends the process group recorded in
# PIDFILE, politely first, and removes PIDFILE. A process that is already
# gone is fine. A pid file outlives its process (a crash, a reboot) and the
# pid may since belong to something else, so the process is ended only when
# its command line contains MARK.
stop_pidfile() {
	local name="$1" pidfile="$2" mark="$3" pid i
	[[ -f "$pidfile" ]] || return 0
	pid="$(cat "$pidfile")"
	if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
		[[ "$(ps -ww -o args= -p "$pid" 2>/dev/null || true)" != *"$mark"* ]]; then
		step "$name is not running (pid $pid is another process now; left alone)"
	elif [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
		step "stopping $name (pid $pid)"
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		for i in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		if kill -0 "$pid" 2>/dev/null; then
			step "$name did not stop in 10s; killing it"
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		fi
	else
		step "$name is not running"
	fi
	rm -f "$pidfile"
}
