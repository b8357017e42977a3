# tests/lib/worker_lib.sh - shared steps of the tests/integration/worker_*.sh tests.
#
# Source it after tests/lib/harness.sh. wl_setup NAME [CREATE FLAGS...] starts (or
# reuses) PostgreSQL and moto_server, migrates a ledger schema of its own (dtq_NAME),
# creates the queue NAME and its DLQ NAME-dlq (`dtq queue create` with the flags, e.g.
# --fifo), and exports the DTQ_* settings every dtq applet reads.
# Workers started with wl_start_worker are stopped when the shell exits.

wl_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${BUILD:=build}"
: "${DTQ_BIN:=$wl_top/$BUILD/dtq}"
WL_TOOL="$wl_top/tests/integration/worker_tool.py"
wl_pids=()

wl_cleanup() {
	local pid
	for pid in "${wl_pids[@]}"; do
		kill -CONT "$pid" 2>/dev/null
		kill -KILL "$pid" 2>/dev/null
	done
	for pid in "${wl_pids[@]}"; do
		wait "$pid" 2>/dev/null
	done
	# WL_KEEP=DIR keeps the workers' logs for a look after the test
	if [ -n "${WL_KEEP:-}" ] && [ -n "${WL_DIR:-}" ]; then
		mkdir -p "$WL_KEEP" && cp -r "$WL_DIR" "$WL_KEEP/"
	fi
	harness_cleanup
}

wl_setup() {
	local name=$1 urls
	shift
	harness_init
	trap wl_cleanup EXIT
	harness_start_pg || exit 1
	harness_start_moto || exit 1
	export DTQ_LEDGER_DSN=$DTQ_TEST_PG_DSN
	export DTQ_LEDGER_SCHEMA="dtq_${name//-/_}_$$"
	export DTQ_AWS_ENDPOINT_URL=$DTQ_TEST_SQS_ENDPOINT
	export DTQ_LOG_LEVEL=${DTQ_LOG_LEVEL:-info}
	"$DTQ_BIN" migrate >/dev/null || { echo "not ok - migrate"; exit 1; }
	urls=$("$DTQ_BIN" queue create "$name-$$" --dlq "$name-$$-dlq" --max-receive 100 --json "$@") ||
		{ echo "not ok - queue create"; exit 1; }
	DTQ_QUEUE_URL=$(printf '%s' "$urls" | jq -r '.queue_url // .url // .queue')
	DTQ_DLQ_URL=$(printf '%s' "$urls" | jq -r '.dlq_url // .dlq')
	export DTQ_QUEUE_URL DTQ_DLQ_URL
	WL_DIR=$DTQ_TEST_TMP/$name
	mkdir -p "$WL_DIR"
	chmod 777 "$WL_DIR"
}

wl_py() { harness_python "$WL_TOOL" "$@"; }

wl_psql() {
	psql "$DTQ_TEST_PG_DSN" -XAtq -v ON_ERROR_STOP=1 \
		-c "SET search_path TO $DTQ_LEDGER_SCHEMA" -c "$1"
}

# wl_start_worker NAME [FLAGS...]: starts `dtq worker` in the background with a
# health server on a free port; WL_PID_<NAME> and WL_PORT_<NAME> are set, the log is
# $WL_DIR/NAME.log.
wl_start_worker() {
	local name=$1 port pid
	shift
	port=$(harness_free_port)
	DTQ_WORKER_ID="$name-$$" DTQ_HEALTH_ADDR="127.0.0.1:$port" \
		"$DTQ_BIN" worker "$@" >>"$WL_DIR/$name.log" 2>&1 &
	pid=$!
	wl_pids+=("$pid")
	printf -v "WL_PID_$name" '%s' "$pid"
	printf -v "WL_PORT_$name" '%s' "$port"
	wl_wait_ready "$port" 100 || { echo "# worker $name did not become ready"; tail -n 20 "$WL_DIR/$name.log"; }
}

# wl_wait_ready PORT [TENTHS]: until /readyz answers 200.
wl_wait_ready() {
	local port=$1 tries=${2:-100}
	while [ "$tries" -gt 0 ]; do
		curl -fsS -m 1 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
		sleep 0.1
		tries=$((tries - 1))
	done
	return 1
}

# wl_wait CMD... [up to WL_TIMEOUT seconds, default 30]: until CMD succeeds.
wl_wait() {
	local deadline=$((SECONDS + ${WL_TIMEOUT:-30}))
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -ge "$deadline" ] && return 1
		sleep 0.2
	done
}

# The state of a key in the ledger ("" when absent).
wl_state() { wl_psql "SELECT state FROM tasks WHERE key = '$1'"; }
wl_state_is() { [ "$(wl_state "$1")" = "$2" ]; }
wl_executions() { wl_psql "SELECT count(*) FROM attempts WHERE key = '$1'"; }

# wl_wait_exit PID [TENTHS]: waits for a worker (a child of this shell: call it
# outside $(...)) to exit and sets WL_STATUS to its exit status.
wl_wait_exit() {
	local pid=$1 tries=${2:-600}
	while kill -0 "$pid" 2>/dev/null && [ "$tries" -gt 0 ]; do
		sleep 0.1
		tries=$((tries - 1))
	done
	wait "$pid"
	WL_STATUS=$?
}

wl_metric() {
	curl -fsS -m 2 "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'
}

wl_done() {
	[ "$harness_failures" -eq 0 ]
}
