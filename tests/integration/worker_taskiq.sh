#!/usr/bin/env bash
# worker_taskiq.sh - interop: a Python producer using taskiq + taskiq-aio-sqs kicks
# tasks named "dtq.exec" to the queue; dtq worker registers them in the ledger
# under their TaskIQ task_id, runs them, and honours TaskIQ's `timeout` label.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib/harness.sh"
. "$top/tests/lib/worker_lib.sh"
wl_setup worker-taskiq
WL_TIMEOUT=30

export DTQ_EXEC_ALLOW=/bin/sh,/bin/sleep DTQ_RECEIVE_WAIT=1s DTQ_LEASE=5s DTQ_KILL_GRACE=1s
wl_start_worker w1 --concurrency 2
out=$(harness_python "$top/tests/integration/worker_taskiq_producer.py" 2>"$WL_DIR/producer.err")
check "taskiq producer kicked two tasks" test "$(printf '%s\n' "$out" | grep -c .)" = 2 || cat "$WL_DIR/producer.err"
slow=$(printf '%s\n' "$out" | awk '$2 == "slow" {print $1}')
quick=$(printf '%s\n' "$out" | awk '$2 == "quick" {print $1}')
check "quick task succeeded, keyed by its task_id" wl_wait wl_state_is "$quick" succeeded
check "quick task output logged" grep -q "key=$quick.*hello from taskiq" "$WL_DIR/w1.log"
check "timeout label honoured: failed with reason timeout" wl_wait wl_state_is "$slow" failed
check "timeout label honoured: error" test "$(wl_psql "SELECT error FROM tasks WHERE key='$slow'")" = timeout
check "timeout label honoured: within a few seconds" test "$(wl_psql "SELECT extract(epoch FROM finished_at - started_at) < 5 FROM tasks WHERE key='$slow'")" = t
check "registered as plain TaskIQ tasks" grep -q "key=$quick.*registered task dtq.exec" "$WL_DIR/w1.log"
wl_done
