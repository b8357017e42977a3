#!/usr/bin/env bash
# deploy_ecs.sh - deploy/ecs and compose/Dockerfile.* as a user would use them, against
# the harness's moto_server and PostgreSQL: the README's steps (dtq queue create,
# dtq migrate, secrets, roles, register-task-definition, create-service) done with
# boto3 (tests/integration/deploy_ecs.py), static checks of the files against what
# dtq itself says (`dtq config --markdown`, `dtq --help`, `dtq health --help`), then
# a worker started with exactly the container's environment: healthy by the task
# definition's healthCheck, and drained by SIGTERM well within stopTimeout.
# Docker is not used: the Dockerfiles are checked statically.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib/harness.sh"
harness_init
harness_start_pg >/dev/null || exit 1
harness_start_moto >/dev/null || exit 1
dtq=${DTQ_BIN:-$top/build/dtq}
tmp=$DTQ_TEST_TMP/deploy_ecs.$$
mkdir -p "$tmp"
worker_pid=
stop_worker() { [ -n "$worker_pid" ] && kill -KILL "$worker_pid" 2>/dev/null; harness_cleanup; }
trap stop_worker EXIT
py() { harness_python "$top/tests/integration/deploy_ecs.py" "$@"; }
schema=dtq_deploy_ecs_$$

# The README's first steps: the queue and its DLQ, then the ledger schema.
q=dtq-deploy-$$
urls=$(AWS_ENDPOINT_URL=$DTQ_TEST_SQS_ENDPOINT "$dtq" queue create "$q" --dlq "$q-dlq" --json) ||
	{ echo "not ok - dtq queue create"; exit 1; }
echo "ok - dtq queue create makes the queue and its DLQ"
queue_url=$(printf '%s' "$urls" | jq -r .queue_url)
dlq_url=$(printf '%s' "$urls" | jq -r .dlq_url)
check "dtq migrate creates the ledger schema" \
	env DTQ_LEDGER_DSN="$DTQ_TEST_PG_DSN" DTQ_LEDGER_SCHEMA=$schema "$dtq" migrate

# Secrets, roles, policies, task definition, service, static checks (TAP lines).
py aws "$DTQ_TEST_SQS_ENDPOINT" "$queue_url" "$dlq_url" "$DTQ_TEST_PG_DSN" "$tmp" || harness_failures=$((harness_failures + 1))
[ -s "$tmp/worker.env" ] || { echo "not ok - deploy_ecs.py wrote the container's environment"; exit 1; }

# The checks must be able to fail: broken copies of the filled task definition.
broken() { # broken NAME JQ-FILTER: the static checks must fail on the changed copy
	jq "$2" "$tmp/taskdef.json" >"$tmp/$1.json" && ! py static "$tmp/$1.json" >"$tmp/$1.out" 2>&1
}
env_sel='.containerDefinitions[0].environment'
check "a misspelt setting name is caught (DTQ_QUEUE_URI)" broken misspelt \
	"($env_sel[] | select(.name == \"DTQ_QUEUE_URL\") | .name) |= \"DTQ_QUEUE_URI\""
check "... and reported by name" grep -q 'not ok - every DTQ_\* name.*' "$tmp/misspelt.out"
check "the ledger DSN in environment is caught" broken dsn_env \
	"$env_sel += [{\"name\": \"DTQ_LEDGER_DSN\", \"value\": \"host=db\"}] | .containerDefinitions[0].secrets |= map(select(.name != \"DTQ_LEDGER_DSN\"))"
check "a stopTimeout below the drain is caught" broken short_stop '.containerDefinitions[0].stopTimeout = 40'
check "an invalid value is caught (DTQ_SHUTDOWN_GRACE=soon)" broken bad_value \
	"($env_sel[] | select(.name == \"DTQ_SHUTDOWN_GRACE\") | .value) |= \"soon\""
check "a healthCheck option dtq health lacks is caught" broken bad_probe \
	'.containerDefinitions[0].healthCheck.command += ["--verbose"]'

# A worker with exactly the container's environment (secrets as ECS injects them),
# but moto's endpoint, a free health port and a schema of its own.
port=$(harness_free_port)
addr=127.0.0.1:$port
mapfile -t task_env <"$tmp/worker.env"
env -i PATH=/usr/bin:/bin "${task_env[@]}" DTQ_HEALTH_ADDR=$addr DTQ_LEDGER_SCHEMA=$schema \
	AWS_ENDPOINT_URL="$DTQ_TEST_SQS_ENDPOINT" AWS_ACCESS_KEY_ID=testing \
	AWS_SECRET_ACCESS_KEY=testing "$dtq" worker >"$tmp/worker.log" 2>&1 &
worker_pid=$!
read -r -a probe <"$tmp/healthcheck.argv"
probe=("${probe[@]//127.0.0.1:8080/$addr}")
healthy() { "$dtq" "${probe[@]:1}"; }
wait_healthy() {
	local tries=100
	until healthy >/dev/null 2>&1; do
		kill -0 "$worker_pid" 2>/dev/null || { cat "$tmp/worker.log"; return 1; }
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || { cat "$tmp/worker.log"; return 1; }
		sleep 0.1
	done
}
check "the worker starts with the task definition's environment and is healthy" wait_healthy
check "the image's HEALTHCHECK (readiness) agrees" \
	env -i PATH=/usr/bin:/bin DTQ_HEALTH_ADDR=$addr "$dtq" health --quiet --timeout 3s
check "json logs, as DTQ_LOG_FORMAT says" bash -c "head -n 1 '$tmp/worker.log' | jq -e .msg"
stop_timeout=$(cat "$tmp/stop_timeout")
start=$(date +%s)
kill -TERM "$worker_pid"
# Waited for here, not inside `check` (which runs in a subshell that cannot wait).
t=$((stop_timeout * 10))
while kill -0 "$worker_pid" 2>/dev/null && [ "$t" -gt 0 ]; do sleep 0.1; t=$((t - 1)); done
wait "$worker_pid"
rc=$?
worker_pid=
took=$(($(date +%s) - start))
check "SIGTERM (ECS stop): the worker drains and exits 0" test "$rc" -eq 0
check "... within stopTimeout (${stop_timeout}s; took ${took}s)" test "$took" -lt "$stop_timeout"
check "... saying it drained" grep -q '"msg":"drained: no task left; exiting"' "$tmp/worker.log"
[ "$harness_failures" -eq 0 ]
