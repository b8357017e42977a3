#!/usr/bin/env bash
# The harness really starts PostgreSQL and moto_server, and both answer.
set -uo pipefail
. "$(dirname "$0")/../lib/harness.sh"
harness_init
harness_start_pg || { echo "not ok - PostgreSQL starts"; exit 1; }
harness_start_moto || { echo "not ok - moto_server starts"; exit 1; }

check "PostgreSQL answers a query over its unix socket" \
	bash -c '[ "$(psql "$DTQ_TEST_PG_DSN" -XAtc "select 40 + 2")" = 42 ]'
check "PostgreSQL answers over TCP loopback" \
	bash -c '[ "$(psql "$DTQ_TEST_PG_URL" -XAtc "select current_user")" = postgres ]'
check "the socket lives in the test's temp dir" test -S "$DTQ_TEST_PGDATA/.s.PGSQL.$DTQ_TEST_PG_PORT"
check "moto_server creates and lists an SQS queue" harness_python - <<'PY'
import os, boto3
sqs = boto3.client("sqs", endpoint_url=os.environ["DTQ_TEST_SQS_ENDPOINT"], region_name="us-east-1")
url = sqs.create_queue(QueueName="harness-smoke")["QueueUrl"]
assert url.endswith("/harness-smoke"), url
assert url in sqs.list_queues().get("QueueUrls", []), "queue not listed"
PY
check "moto_server survives a stop and a start on the same port" bash -c '
	. tests/lib/harness.sh
	port=$DTQ_TEST_SQS_PORT
	harness_stop_moto
	! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || exit 1
	harness_start_moto && [ "$DTQ_TEST_SQS_PORT" = "$port" ]'
check "PostgreSQL restarts with the same address" bash -c '
	. tests/lib/harness.sh
	harness_restart_pg && [ "$(psql "$DTQ_TEST_PG_DSN" -XAtc "select 1")" = 1 ]'
exit 0
