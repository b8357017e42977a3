#!/usr/bin/env bash
# worker_basic.sh - dtq worker runs dtq.exec tasks: success, non-zero exit (retried,
# then dead and dead-lettered), timeout, cancel, a 1 MB output line, environment
# isolation, and the health endpoints.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib/harness.sh"
. "$top/tests/lib/worker_lib.sh"
wl_setup worker-basic

export DTQ_EXEC_ALLOW=/bin/sh,/bin/sleep,/bin/true,/bin/false,/usr/bin/env
export DTQ_LEASE=3s DTQ_VISIBILITY_TIMEOUT=10s DTQ_RECEIVE_WAIT=1s DTQ_RETRY_BACKOFF=0s
export DTQ_KILL_GRACE=1s DTQ_MAX_ATTEMPTS=2
export WORKER_SECRET=hunter2-do-not-leak
wl_start_worker w1 --concurrency 4
port=$WL_PORT_w1

wl_py send ok/1 -- /bin/sh -c 'echo hello from $DTQ_TASK_KEY fence=$DTQ_FENCE attempt=$DTQ_ATTEMPT' >/dev/null
check "success: recorded succeeded" wl_wait wl_state_is ok/1 succeeded
check "success: one execution" test "$(wl_executions ok/1)" = 1
check "success: output logged with the task key" wl_wait grep -q 'key=ok/1.*hello from ok/1 fence=1 attempt=1' "$WL_DIR/w1.log"

wl_py send fail/1 --max-attempts 2 -- /bin/sh -c 'exit 3' >/dev/null
check "non-zero exit: retried then dead" wl_wait wl_state_is fail/1 dead
check "non-zero exit: two executions" test "$(wl_executions fail/1)" = 2
check "non-zero exit: attempts record exit 3" test "$(wl_psql "SELECT string_agg(exit_code::text, ',' ORDER BY fence) FROM attempts WHERE key='fail/1'")" = "3,3"

wl_py send slow/1 --timeout 1 -- /bin/sleep 30 >/dev/null
check "timeout: recorded failed" wl_wait wl_state_is slow/1 failed
check "timeout: error is timeout" test "$(wl_psql "SELECT error FROM tasks WHERE key='slow/1'")" = timeout
check "timeout: one execution" test "$(wl_executions slow/1)" = 1

wl_py send cancel/1 -- /bin/sleep 30 >/dev/null
check "cancel: task starts" wl_wait wl_state_is cancel/1 running
"$DTQ_BIN" ledger cancel cancel/1 >/dev/null 2>&1
check "cancel: recorded cancelled" wl_wait wl_state_is cancel/1 cancelled

wl_py send big/1 -- /bin/sh -c 'head -c 1048576 /dev/zero | tr "\0" x; echo; echo after-the-big-line' >/dev/null
check "1 MB line: task succeeded" wl_wait wl_state_is big/1 succeeded
check "1 MB line: logged in full, in pieces" test "$(grep 'key=big/1' "$WL_DIR/w1.log" | grep -o 'x*' | tr -d '\n' | wc -c)" -ge 1048576
check "1 MB line: the next line follows" grep -q 'after-the-big-line' "$WL_DIR/w1.log"

wl_py send env/1 -- /usr/bin/env >/dev/null
check "environment: task succeeded" wl_wait wl_state_is env/1 succeeded
check "environment: DTQ_TASK_KEY passed" grep -q 'key=env/1.*stdout: DTQ_TASK_KEY=env/1' "$WL_DIR/w1.log"
check "environment: worker secret not visible" bash -c "! grep 'key=env/1' '$WL_DIR/w1.log' | grep -q 'WORKER_SECRET\|DTQ_LEDGER_DSN'"

check "healthz" curl -fsS "http://127.0.0.1:$port/healthz"
check "readyz 200 with slots" bash -c "curl -fsS http://127.0.0.1:$port/readyz | grep -q '^ready: [0-9]*/4 slots busy'"
check "metrics: succeeded counted" test "$(wl_metric "$port" dtq_tasks_succeeded_total)" -ge 3
check "metrics: timed out counted" test "$(wl_metric "$port" dtq_tasks_timed_out_total)" = 1
check "metrics: exhausted dead-lettered" test "$(wl_metric "$port" 'dtq_dead_lettered_total{reason="exhausted"}')" = 1
check "status JSON" bash -c "curl -fsS http://127.0.0.1:$port/status | jq -e '.worker and (.tasks|type==\"array\")'"
check "DLQ holds the exhausted task" bash -c "wl_py() { harness_python '$WL_TOOL' \"\$@\"; }; $(declare -f harness_python); wl_py dlq | jq -e 'select(.key==\"fail/1\" and .reason==\"exhausted\")'"

kill -TERM "$WL_PID_w1"
wl_wait_exit "$WL_PID_w1"
check "SIGTERM when idle: exit 0 (got $WL_STATUS)" test "$WL_STATUS" = 0
check "SIGTERM when idle: drained and stopped" grep -q 'worker stopped' "$WL_DIR/w1.log"
wl_done
