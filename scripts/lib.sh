# Helpers shared by scripts/dev.sh and scripts/dev-stop.sh. Source it; it
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
# in a session of its own (so that dev-stop.sh can end it together with its
# children), with output to LOGFILE, and records its pid in PIDFILE. The
# process writes its own pid: setsid may fork, so $! is not reliable.
start_background() {
	local pidfile="$1" logfile="$2" i
	shift 2
	rm -f "$pidfile"
	# shellcheck disable=SC2016 # $$ and $0 belong to the inner shell
	setsid bash -c 'printf "%s\n" "$$" >"$0"; exec "$@"' "$pidfile" "$@" \
		</dev/null >"$logfile" 2>&1 &
	for i in $(seq 1 50); do
		[[ -s "$pidfile" ]] && return 0
		sleep 0.1
	done
	die "could not start $1; read $logfile"
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

# stop_pidfile NAME PIDFILE ends the process group recorded in PIDFILE,
# politely first, and removes PIDFILE. A process that is already gone is
# fine.
stop_pidfile() {
	local name="$1" pidfile="$2" pid i
	[[ -f "$pidfile" ]] || return 0
	pid="$(cat "$pidfile")"
	if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
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
