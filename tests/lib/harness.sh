# tests/lib/harness.sh - throwaway PostgreSQL and moto_server for tests.
#
# Source it, then call harness_init once; it removes everything it started
# when the shell exits, fails or is interrupted. What it exports:
#   DTQ_TEST_TMP            private temp directory
#   DTQ_TEST_PG_DSN         libpq conninfo (unix socket in the temp dir)
#   DTQ_TEST_PG_URL         the same as a postgresql:// URL over TCP loopback
#   DTQ_TEST_PGDATA, DTQ_TEST_PG_PORT, DTQ_TEST_PG_BIN
#   DTQ_TEST_SQS_ENDPOINT   http://127.0.0.1:PORT of moto_server (SQS, ECS, IAM...)
#   DTQ_TEST_SQS_PORT
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION  dummy keys for moto
# Functions: harness_start_pg, harness_stop_pg, harness_restart_pg,
#   harness_start_moto, harness_stop_moto, harness_free_port, harness_python.
# If the variables are already set (the test runner started shared servers),
# the start functions reuse them instead of starting new ones.

harness_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${DTQ_VENV:=$harness_top/.venv}"
export DTQ_VENV

harness_log() { printf '# harness: %s\n' "$*" >&2; }

harness_python() {
	if [ -x "$DTQ_VENV/bin/python" ]; then "$DTQ_VENV/bin/python" "$@"; else python3 "$@"; fi
}

harness_free_port() {
	harness_python - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

# Waits until a TCP port on loopback accepts connections.
harness_wait_port() {
	local port=$1 what=$2 tries=${3:-150}
	while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
		tries=$((tries - 1))
		if [ "$tries" -le 0 ]; then
			harness_log "$what did not open port $port"
			return 1
		fi
		sleep 0.1
	done
}

harness_cleanup() {
	local rc=$?
	# Only the shell that made the temp dir owns the servers in it.
	if [ -n "${harness_own_tmp:-}" ] && [ -d "$harness_own_tmp" ]; then
		harness_stop_moto >/dev/null 2>&1 || true
		[ -n "${DTQ_TEST_PGDATA:-}" ] && harness_stop_pg >/dev/null 2>&1 || true
		rm -rf "$harness_own_tmp"
	fi
	return $rc
}

harness_init() {
	if [ -z "${DTQ_TEST_TMP:-}" ] || [ ! -d "$DTQ_TEST_TMP" ]; then
		DTQ_TEST_TMP=$(mktemp -d /tmp/dtq-test.XXXXXX)
		chmod 755 "$DTQ_TEST_TMP"
		harness_own_tmp=$DTQ_TEST_TMP
		export DTQ_TEST_TMP
	fi
	trap harness_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

harness_pg_bin() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	if [ -z "$d" ]; then
		harness_log "PostgreSQL server binaries not found under /usr/lib/postgresql: run make deps"
		return 1
	fi
	echo "$d"
}

# initdb refuses to run as root: as root, the cluster belongs to "postgres".
harness_as_pg_owner() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

harness_pg_running() {
	[ -n "${DTQ_TEST_PGDATA:-}" ] && [ -f "$DTQ_TEST_PGDATA/postmaster.pid" ] &&
		harness_as_pg_owner "$DTQ_TEST_PG_BIN/pg_ctl" -D "$DTQ_TEST_PGDATA" status >/dev/null 2>&1
}

# Starts the test server, or reuses the running one named by the variables
# (a shared server from the runner, or one a test stopped and wants back).
harness_start_pg() {
	local bin
	if harness_pg_running; then
		return 0
	fi
	bin=$(harness_pg_bin) || return 1
	DTQ_TEST_PG_BIN=$bin
	: "${DTQ_TEST_PGDATA:=$DTQ_TEST_TMP/pg}"
	if [ ! -f "$DTQ_TEST_PGDATA/PG_VERSION" ]; then
		mkdir -p "$DTQ_TEST_PGDATA"
		if [ "$(id -u)" -eq 0 ]; then chown postgres "$DTQ_TEST_PGDATA"; fi
		harness_as_pg_owner "$bin/initdb" -D "$DTQ_TEST_PGDATA" -A trust -U postgres -E UTF8 \
			--no-sync >"$DTQ_TEST_TMP/initdb.log" 2>&1 ||
			{ cat "$DTQ_TEST_TMP/initdb.log" >&2; return 1; }
	fi
	: "${DTQ_TEST_PG_PORT:=$(harness_free_port)}"
	harness_as_pg_owner "$bin/pg_ctl" -D "$DTQ_TEST_PGDATA" -w -t 60 -l "$DTQ_TEST_PGDATA/server.log" \
		-o "-k $DTQ_TEST_PGDATA -p $DTQ_TEST_PG_PORT -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
		start >/dev/null || { tail -n 20 "$DTQ_TEST_PGDATA/server.log" >&2; return 1; }
	DTQ_TEST_PG_DSN="host=$DTQ_TEST_PGDATA port=$DTQ_TEST_PG_PORT user=postgres dbname=postgres"
	DTQ_TEST_PG_URL="postgresql://postgres@127.0.0.1:$DTQ_TEST_PG_PORT/postgres"
	export DTQ_TEST_PG_BIN DTQ_TEST_PGDATA DTQ_TEST_PG_PORT DTQ_TEST_PG_DSN DTQ_TEST_PG_URL
	harness_log "PostgreSQL on port $DTQ_TEST_PG_PORT, socket dir $DTQ_TEST_PGDATA"
}

harness_stop_pg() {
	harness_as_pg_owner "$DTQ_TEST_PG_BIN/pg_ctl" -D "$DTQ_TEST_PGDATA" -m fast -w stop >/dev/null
}

harness_restart_pg() {
	harness_as_pg_owner "$DTQ_TEST_PG_BIN/pg_ctl" -D "$DTQ_TEST_PGDATA" -m fast -w -t 60 \
		-l "$DTQ_TEST_PGDATA/server.log" restart >/dev/null
}

harness_start_moto() {
	if [ -n "${DTQ_TEST_SQS_PORT:-}" ] && (exec 3<>"/dev/tcp/127.0.0.1/$DTQ_TEST_SQS_PORT") 2>/dev/null; then
		return 0
	fi
	if [ ! -x "$DTQ_VENV/bin/moto_server" ]; then
		harness_log "moto_server not found in $DTQ_VENV: run make deps"
		return 1
	fi
	: "${DTQ_TEST_SQS_PORT:=$(harness_free_port)}"
	"$DTQ_VENV/bin/moto_server" -H 127.0.0.1 -p "$DTQ_TEST_SQS_PORT" \
		>>"$DTQ_TEST_TMP/moto.log" 2>&1 &
	echo $! >"$DTQ_TEST_TMP/moto.pid"
	harness_wait_port "$DTQ_TEST_SQS_PORT" moto_server 300 || { tail -n 20 "$DTQ_TEST_TMP/moto.log" >&2; return 1; }
	DTQ_TEST_SQS_ENDPOINT="http://127.0.0.1:$DTQ_TEST_SQS_PORT"
	export DTQ_TEST_SQS_PORT DTQ_TEST_SQS_ENDPOINT
	export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-testing}
	export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-testing}
	export AWS_REGION=${AWS_REGION:-us-east-1}
	harness_log "moto_server on $DTQ_TEST_SQS_ENDPOINT"
}

harness_stop_moto() {
	local pid
	[ -f "$DTQ_TEST_TMP/moto.pid" ] || return 0
	pid=$(cat "$DTQ_TEST_TMP/moto.pid")
	local tries=100
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true # reaps it when this shell started it
	while kill -0 "$pid" 2>/dev/null && [ "$tries" -gt 0 ]; do
		sleep 0.05
		tries=$((tries - 1))
	done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$DTQ_TEST_TMP/moto.pid"
}

# TAP-style checks for shell tests: `check "what" command...` runs the
# command and prints "ok - what" or "not ok - what" with its output.
harness_failures=0
check() {
	local what=$1 out
	shift
	if out=$("$@" 2>&1); then
		printf 'ok - %s\n' "$what"
	else
		printf 'not ok - %s\n' "$what"
		printf '%s\n' "$out" | sed 's/^/#   /' | tail -n 20
		harness_failures=$((harness_failures + 1))
	fi
}
