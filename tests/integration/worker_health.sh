#!/usr/bin/env bash
# worker_health.sh - the worker's health server: /readyz follows the ledger and SQS
# (503 with the reason while one is unreachable, 200 again after), bad requests get
# clean errors, and a slow client does not stall the loop.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib/harness.sh"
. "$top/tests/lib/worker_lib.sh"
wl_setup worker-health
WL_TIMEOUT=30

# readiness window max(3 x heartbeat, receive_wait + http_timeout) = 3 s here
export DTQ_EXEC_ALLOW=/bin/true DTQ_RECEIVE_WAIT=1s DTQ_LEASE=3s DTQ_HTTP_TIMEOUT=2s
export DTQ_HTTP_MAX_RETRIES=0
wl_start_worker w1 --concurrency 3
url=http://127.0.0.1:$WL_PORT_w1
readyz() { curl -s -m 2 -w ' %{http_code}' "$url/readyz" | tr -d '\n'; }
ready_is() { [[ "$(readyz)" == $1 ]]; }

check "ready: 200 with slots" ready_is 'ready: 0/3 slots busy 200'
check "POST is refused with 405" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$url/readyz")" = 405
check "dtq health: healthy worker exits 0" "$DTQ_BIN" health --url "$url/readyz" --quiet
check "unknown path is 404" test "$(curl -s -o /dev/null -w '%{http_code}' "$url/nope")" = 404

# a client that sends half a request and stalls must not hold the loop
exec 7<>"/dev/tcp/127.0.0.1/$WL_PORT_w1"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n' >&7
check "a stalled client does not block /healthz" curl -fsS -m 2 "$url/healthz"
wl_py send during-stall -- /bin/true >/dev/null
check "nor the tasks" wl_wait wl_state_is during-stall succeeded
exec 7>&-

harness_stop_pg
check "ledger down: 503 ledger unreachable" wl_wait ready_is 'ledger unreachable for *503'
check "ledger down: /healthz still answers" curl -fsS -m 2 "$url/healthz"
check "ledger down: dtq health exits 1" bash -c "! '$DTQ_BIN' health --url '$url/readyz' --quiet 2>/dev/null"
harness_start_pg
check "ledger back: ready again" wl_wait ready_is 'ready: * 200'
wl_py send after-pg -- /bin/true >/dev/null
check "ledger back: tasks run again" wl_wait wl_state_is after-pg succeeded

harness_stop_moto
check "SQS down: 503 sqs unreachable" wl_wait ready_is 'sqs unreachable for *503'
check "SQS down: errors counted" test "$(wl_metric "$WL_PORT_w1" 'dtq_sqs_errors_total{action="ReceiveMessage"}')" -ge 1
check "SQS down: the worker is still alive" kill -0 "$WL_PID_w1"
harness_start_moto >/dev/null 2>&1
kill -TERM "$WL_PID_w1"
wl_wait_exit "$WL_PID_w1"
check "exits 0 after a drain" test "$WL_STATUS" = 0
wl_done
