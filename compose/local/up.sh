#!/usr/bin/env bash
# compose/local/up.sh - start the local dtq + Dagster stack without Docker:
#   PostgreSQL (Dagster's storage and the dtq ledger), moto_server (SQS), the task queue and
#   its DLQ (`dtq queue create`), the ledger schema (`dtq migrate`), Dagster's webserver and
#   daemon (Postgres storage, DtqRunLauncher, run monitoring) and N `dtq worker`s.
# State, logs and pids live in .demo/ (DTQ_DEMO_DIR); `. .demo/env` gives a shell the
# stack's settings. compose/local/down.sh stops it all, status.sh shows it.
#
#   compose/local/up.sh [--workers N] [--concurrency N] [--port PORT]
#
# Needs `make` (build/dtq with the applets worker, executor-shim, queue and migrate) and
# `make deps` (the virtualenv with Dagster and moto). Idempotent: a running stack is left as
# it is.
set -euo pipefail

# shellcheck source=compose/local/lib.sh
. "$(dirname "$0")/lib.sh"

workers=3
concurrency=4
ui_port=3000
while [ $# -gt 0 ]; do
	case $1 in
	--workers) workers=$2; shift 2 ;;
	--concurrency) concurrency=$2; shift 2 ;;
	--port) ui_port=$2; shift 2 ;;
	-h | --help) sed -n '2,14p' "$0"; exit 0 ;;
	*) die "unknown option $1 (see --help)" ;;
	esac
done

[ -x "$dtq" ] || die "$dtq not found: run make"
missing=$(missing_applets)
[ -z "$missing" ] || die "$dtq lacks the applet(s) $missing that the stack needs"
for tool in dagster dagster-webserver dagster-daemon moto_server; do
	[ -x "$DTQ_VENV/bin/$tool" ] || die "$DTQ_VENV/bin/$tool not found: run make deps"
done

if alive webserver && [ -f "$state/env" ]; then
	say "already running (compose/local/status.sh shows it)"
	exit 0
fi
mkdir -p "$state/pids" "$state/logs" "$state/dagster_home" "$state/counters"

# --- PostgreSQL, under .demo/pg -----------------------------------------------------------
pg_bin=$(harness_pg_bin) || die "PostgreSQL server binaries not found: run make deps"
pgdata=$state/pg
if [ ! -f "$pgdata/PG_VERSION" ]; then
	mkdir -p "$pgdata"
	if [ "$(id -u)" -eq 0 ]; then chown postgres "$pgdata"; fi
	harness_as_pg_owner "$pg_bin/initdb" -D "$pgdata" -A trust -U postgres -E UTF8 \
		>"$state/logs/initdb.log" 2>&1 || { cat "$state/logs/initdb.log" >&2; die "initdb failed"; }
fi
if [ -f "$state/pg.port" ]; then pg_port=$(cat "$state/pg.port"); else pg_port=$(harness_free_port); fi
echo "$pg_port" >"$state/pg.port"
if ! harness_as_pg_owner "$pg_bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
	say "PostgreSQL on 127.0.0.1:$pg_port ($pgdata)"
	harness_as_pg_owner "$pg_bin/pg_ctl" -D "$pgdata" -w -t 60 -l "$pgdata/server.log" \
		-o "-k $pgdata -p $pg_port -c listen_addresses=127.0.0.1 -c max_connections=200" \
		start >/dev/null || { tail -n 20 "$pgdata/server.log" >&2; die "PostgreSQL did not start"; }
fi
for db in dagster dtq; do
	harness_as_pg_owner "$pg_bin/createdb" -h "$pgdata" -p "$pg_port" -U postgres "$db" \
		2>/dev/null || true
done
pg_url="postgresql://postgres@127.0.0.1:$pg_port"

# --- moto_server (SQS) ---------------------------------------------------------------------
if ! alive moto; then
	moto_port=$(harness_free_port)
	echo "$moto_port" >"$state/moto.port"
	spawn moto "$DTQ_VENV/bin/moto_server" -H 127.0.0.1 -p "$moto_port"
	harness_wait_port "$moto_port" moto_server 300 || die "moto_server did not start"
	say "moto_server on 127.0.0.1:$moto_port"
fi
moto_port=$(cat "$state/moto.port")

# --- settings, shared by every process of the stack ---------------------------------------
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export DTQ_LEDGER_DSN="$pg_url/dtq"
"$dtq" migrate >"$state/logs/migrate.log" 2>&1 || { cat "$state/logs/migrate.log" >&2; die "dtq migrate failed"; }
queues=$("$dtq" queue create dtq-demo --dlq dtq-demo-dlq --max-receive 5)
queue_url=$(awk '$1 == "queue" {print $2}' <<<"$queues")
dlq_url=$(awk '$1 == "dlq" {print $2}' <<<"$queues")
[ -n "$queue_url" ] || die "dtq queue create printed no queue URL: $queues"

cat >"$state/env" <<EOF
# Settings of the local stack (compose/local/up.sh). Source it: . .demo/env
export DTQ_DEMO_DIR='$state'
export DTQ_VENV='$DTQ_VENV'
export DTQ_BIN='$dtq'
export PATH='$(dirname "$dtq")':"\$PATH"
export AWS_ENDPOINT_URL='$AWS_ENDPOINT_URL'
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export DTQ_QUEUE_URL='$queue_url'
export DTQ_DLQ_URL='$dlq_url'
export DTQ_LEDGER_DSN='$pg_url/dtq'
# Dagster's storage. SQLAlchemy 2 reads plain postgresql:// as psycopg 3: name the driver.
export DAGSTER_PG_URL='postgresql+psycopg2://postgres@127.0.0.1:$pg_port/dagster'
export DAGSTER_HOME='$state/dagster_home'
export PYTHONPATH='$top/python:$top/python/examples'
export DTQ_DEMO_UI='http://127.0.0.1:$ui_port'
export DTQ_DEMO_COUNTERS='$state/counters'
EOF
load_env

# --- Dagster: instance and code location ---------------------------------------------------
cat >"$DAGSTER_HOME/dagster.yaml" <<EOF
# Written by compose/local/up.sh. Storage: PostgreSQL. Runs: one dtq task each.
storage:
  postgres:
    postgres_url: {env: DAGSTER_PG_URL}
run_launcher:
  module: dagster_dtq
  class: DtqRunLauncher
  config:
    queue_url: {env: DTQ_QUEUE_URL}
    ledger_dsn: {env: DTQ_LEDGER_DSN}
    dtq_path: $dtq
# Required with DtqRunLauncher: without it, a run message delivered twice makes Dagster fail
# the run ("started a new run worker while the run was already in state STARTED"); with it,
# the duplicate is ignored and dead run workers are found through the ledger.
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_resume_run_attempts: 3   # a run whose run worker died is resumed as a new dtq task
  poll_interval_seconds: 30
telemetry:
  enabled: false
EOF
cat >"$DAGSTER_HOME/workspace.yaml" <<EOF
load_from:
  - python_module:
      module_name: dtq_examples.definitions
      working_directory: $top/python/examples
      executable_path: $DTQ_VENV/bin/python
      location_name: dtq_examples
EOF

if ! alive webserver; then
	say "Dagster webserver on $DTQ_DEMO_UI"
	(cd "$DAGSTER_HOME" && spawn webserver "$DTQ_VENV/bin/dagster-webserver" -h 127.0.0.1 \
		-p "$ui_port" -w "$DAGSTER_HOME/workspace.yaml")
fi
if ! alive daemon; then
	(cd "$DAGSTER_HOME" && spawn daemon "$DTQ_VENV/bin/dagster-daemon" run \
		-w "$DAGSTER_HOME/workspace.yaml")
fi

# --- dtq workers ---------------------------------------------------------------------------
# What a step or run process inherits from its worker: nothing but these (DTQ_ENV_ALLOW).
# Dagster's storage needs DAGSTER_PG_URL (named in dagster.yaml) and DAGSTER_HOME; a run
# worker also needs the queue, the ledger and AWS to launch its steps through the shim.
env_allow="PATH,HOME,LANG,LC_ALL,TZ,PYTHONPATH,DAGSTER_HOME,DAGSTER_PG_*,DTQ_QUEUE_URL,DTQ_LEDGER_DSN,AWS_*"
for i in $(seq 1 "$workers"); do
	name=worker$i
	alive "$name" && continue
	DTQ_WORKER_ID="local-$name" DTQ_WORKER_CONCURRENCY=$concurrency \
		DTQ_DAGSTER_ENTRYPOINT="$DTQ_VENV/bin/dagster" DTQ_ENV_ALLOW=$env_allow \
		DTQ_HEALTH_ADDR="127.0.0.1:$(harness_free_port)" \
		spawn "$name" "$dtq" worker
done
say "$workers dtq workers, $concurrency tasks each"

harness_wait_port "$ui_port" dagster-webserver 600 || die "the webserver did not start (see $state/logs/webserver.log)"
say "up: Dagster UI $DTQ_DEMO_UI, settings in $state/env, logs in $state/logs"
