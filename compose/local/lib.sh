# compose/local/lib.sh - shared by up.sh, down.sh and status.sh: where the no-Docker local
# stack keeps its state, and small helpers. Source it; it sets:
#   top       the repository
#   state     the stack's directory (DTQ_DEMO_DIR, default .demo in the repository)
#   DTQ_VENV  the virtualenv with Dagster and moto (default .venv)
#   dtq       the dtq binary (DTQ_BIN, default build/dtq)
# The PostgreSQL helpers are the test harness's (tests/lib/harness.sh), used without its
# temp-dir and clean-up-on-exit part: this stack outlives the script that starts it.

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
state=${DTQ_DEMO_DIR:-$top/.demo}
: "${DTQ_VENV:=$top/.venv}"
export DTQ_VENV
dtq=${DTQ_BIN:-$top/build/dtq}

# shellcheck source=tests/lib/harness.sh
. "$top/tests/lib/harness.sh"

say() { printf '[local] %s\n' "$*"; }
die() { printf 'compose/local: %s\n' "$*" >&2; exit 1; }

pidfile() { echo "$state/pids/$1.pid"; }

alive() {
	local f pid
	f=$(pidfile "$1")
	[ -f "$f" ] || return 1
	pid=$(cat "$f")
	kill -0 "$pid" 2>/dev/null
}

# Starts a long-running process in its own session (so down.sh can stop it and its children
# as one group), logging to $state/logs/NAME.log.
spawn() {
	local name=$1
	shift
	mkdir -p "$state/pids" "$state/logs"
	setsid "$@" >>"$state/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$(pidfile "$name")"
}

# Stops a process started by spawn(): SIGTERM to its group, SIGKILL after $2 seconds.
stop_process() {
	local name=$1 wait=${2:-30} pid f
	f=$(pidfile "$name")
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		local tries=$((wait * 10))
		while kill -0 "$pid" 2>/dev/null && [ "$tries" -gt 0 ]; do
			sleep 0.1
			tries=$((tries - 1))
		done
		if kill -0 "$pid" 2>/dev/null; then
			say "$name did not stop within ${wait}s: killing it"
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$f"
}

# The applets the stack needs; `dtq --help` lists only those that work in this build.
missing_applets() {
	local have a
	have=$("$dtq" --help 2>/dev/null | sed -n '/^applets:/,/^$/p' | awk 'NR > 1 {print $1}')
	for a in executor-shim worker queue migrate; do
		grep -qx "$a" <<<"$have" || printf '%s ' "$a"
	done
}

load_env() {
	[ -f "$state/env" ] || die "no stack in $state (run compose/local/up.sh)"
	# shellcheck source=/dev/null
	. "$state/env"
}
