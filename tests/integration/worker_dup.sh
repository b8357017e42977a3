#!/usr/bin/env bash
# worker_dup.sh - duplicates run once: the same message delivered again while its
# task runs (visibility shorter than the task), and the same key sent as two
# messages to two workers.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib/harness.sh"
. "$top/tests/lib/worker_lib.sh"
wl_setup worker-dup
WL_TIMEOUT=45

export DTQ_EXEC_ALLOW=/bin/sh DTQ_RECEIVE_WAIT=1s DTQ_RETRY_BACKOFF=0s
# A 2 s visibility and a heartbeat of 10 s: SQS hands the message out again while
# the first execution still runs.
DTQ_LEASE=30s DTQ_HEARTBEAT_INTERVAL=10s DTQ_VISIBILITY_TIMEOUT=2s wl_start_worker w1 --concurrency 2
DTQ_LEASE=30s DTQ_HEARTBEAT_INTERVAL=10s DTQ_VISIBILITY_TIMEOUT=2s wl_start_worker w2 --concurrency 2

wl_py send redeliver/1 -- /bin/sh -c 'sleep 5; echo ran >> "$0"' "$WL_DIR/redeliver.out" >/dev/null
check "redelivered while running: succeeded" wl_wait wl_state_is redeliver/1 succeeded
sleep 3
check "redelivered while running: one execution" test "$(wl_executions redeliver/1)" = 1
check "redelivered while running: the child ran once" test "$(wc -l <"$WL_DIR/redeliver.out")" = 1
check "redelivered while running: a claim found the live lease" grep -q 'key=redeliver/1.*leased elsewhere' "$WL_DIR/w1.log" "$WL_DIR/w2.log"

# the same key twice, as two messages (a producer retry)
for i in 1 2; do
	wl_py send twice/1 -- /bin/sh -c 'sleep 1; echo ran >> "$0"' "$WL_DIR/twice.out" >/dev/null
done
check "same key twice: succeeded" wl_wait wl_state_is twice/1 succeeded
# the second message is suppressed once the first has finished
queue_empty() { [ "$(wl_py depth "$DTQ_QUEUE_URL")" = 0 ]; }
wl_wait queue_empty
check "same key twice: both messages gone" test "$(wl_py depth "$DTQ_QUEUE_URL")" = 0
check "same key twice: one execution" test "$(wl_executions twice/1)" = 1
check "same key twice: the child ran once" test "$(wc -l <"$WL_DIR/twice.out")" = 1
dups=$(( $(wl_metric "$WL_PORT_w1" dtq_duplicates_suppressed_total) + $(wl_metric "$WL_PORT_w2" dtq_duplicates_suppressed_total) ))
check "duplicates suppressed counted ($dups)" test "$dups" -ge 1
check "one result row per key" test "$(wl_psql "SELECT count(*) FROM tasks WHERE key IN ('twice/1','redeliver/1') AND state='succeeded'")" = 2
wl_done
