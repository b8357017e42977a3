#!/usr/bin/env bash
# worker_fifo.sh - a worker on a FIFO queue (and FIFO DLQ): tasks submitted through
# the executor-shim (one group per task) run once each; two tasks of one group run
# one after the other, even when one receive brings both and even across a retry;
# different groups run side by side; a second send with the same deduplication id
# runs nothing; refused and exhausted messages reach the FIFO DLQ in their group;
# a drain gives back the messages that waited behind their group.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib/harness.sh"
. "$top/tests/lib/worker_lib.sh"
wl_setup worker-fifo --fifo
WL_TIMEOUT=30

export DTQ_EXEC_ALLOW=/bin/sh DTQ_LEASE=6s DTQ_VISIBILITY_TIMEOUT=20s DTQ_RECEIVE_WAIT=1s
export DTQ_RETRY_BACKOFF=1s DTQ_MAX_ATTEMPTS=3 DTQ_KILL_GRACE=1s DTQ_SHUTDOWN_GRACE=1s
check "the queue and its DLQ are FIFO" bash -c "[[ '$DTQ_QUEUE_URL' == *.fifo && '$DTQ_DLQ_URL' == *.fifo ]]"

# stamp NAME [SECONDS]: a command line that records its start, sleeps, records its end
stamp() {
	printf '%s\n' /bin/sh -c 'date +%s.%N > "$0.start"; sleep "$1"; date +%s.%N > "$0.end"' \
		"$WL_DIR/$1" "${2:-0}"
}
# after A B: B started after A ended
after() { awk -v a="$(cat "$WL_DIR/$1.end")" -v b="$(cat "$WL_DIR/$2.start")" 'BEGIN { exit !(b >= a) }'; }
# overlap A B: each started before the other ended
overlap() {
	awk -v as="$(cat "$WL_DIR/$1.start")" -v ae="$(cat "$WL_DIR/$1.end")" \
		-v bs="$(cat "$WL_DIR/$2.start")" -v be="$(cat "$WL_DIR/$2.end")" \
		'BEGIN { exit !(as < be && bs < ae) }'
}
send_in() { # send_in GROUP KEY ARGV...
	local group=$1 key=$2
	shift 2
	wl_py send "$key" --group "$group" -- "$@" >/dev/null
}
submit() { # submit KEY ARGV...: through the executor-shim
	local key=$1
	shift
	harness_python -c 'import json, sys; print(json.dumps({"key": sys.argv[1], "task_name": "dtq.exec", "kwargs": {"argv": sys.argv[2:]}}))' \
		"$key" "$@" | "$DTQ_BIN" executor-shim submit >/dev/null 2>>"$WL_DIR/shim.err"
}

# Everything is sent before the worker starts, in this order, so that its first
# receive (up to 4 messages) brings both messages of group g1 and both of g2.
mapfile -t a < <(stamp order_1 2)
send_in g1 order/1 "${a[@]}"
mapfile -t a < <(stamp order_2)
send_in g1 order/2 "${a[@]}"
# retry/1 fails its first attempt; retry/2, behind it in g2, must wait for its
# success: it is given back unrun, and SQS delivers the group again from retry/1
send_in g2 retry/1 /bin/sh -c 'echo "1 attempt $DTQ_ATTEMPT" >> "$0"; [ "$DTQ_ATTEMPT" -gt 1 ]' "$WL_DIR/retry.log"
send_in g2 retry/2 /bin/sh -c 'echo "2 attempt $DTQ_ATTEMPT" >> "$0"' "$WL_DIR/retry.log"
for i in 1 2 3; do
	submit "shim/$i" /bin/sh -c 'echo ran >> "$0"' "$WL_DIR/shim_$i.out"
done
mapfile -t a < <(stamp par_a 2)
send_in ga par/a "${a[@]}"
mapfile -t a < <(stamp par_b 2)
send_in gb par/b "${a[@]}"
# the same deduplication id twice, under two keys: SQS keeps the first only.
# moto forgets a deduplication id once its message is deleted (SQS remembers it
# for 5 minutes), so only a second send while the first is queued is tested.
wl_py send dedup/1 --group g3 --dedup same-id -- /bin/sh -c 'echo 1 >> "$0"' "$WL_DIR/dedup.out" >/dev/null
wl_py send dedup/2 --group g3 --dedup same-id -- /bin/sh -c 'echo 2 >> "$0"' "$WL_DIR/dedup.out" >/dev/null
wl_py send dead/1 --group g4 --max-attempts 1 -- /bin/sh -c 'exit 3' >/dev/null
printf 'not json at all' | wl_py send-raw >/dev/null # group "default"

wl_start_worker w1 --concurrency 4
for k in order/1 order/2 shim/1 shim/2 shim/3 par/a par/b retry/1 retry/2 dedup/1; do
	check "$k succeeded" wl_wait wl_state_is "$k" succeeded
done
check "one group: the second started after the first ended" after order_1 order_2
check "one group: the worker held the second back" grep -q 'key=order/2.*waits behind' "$WL_DIR/w1.log"
check "two groups ran side by side" overlap par_a par_b
for i in 1 2 3; do
	check "shim/$i: one execution, one run" test "$(wl_executions "shim/$i") $(wc -l <"$WL_DIR/shim_$i.out")" = "1 1"
done
check "a retry keeps the group's order" test "$(paste -sd, "$WL_DIR/retry.log")" = "1 attempt 1,1 attempt 2,2 attempt 1"
check "retry/1: two executions" test "$(wl_executions retry/1)" = 2
check "retry/2 was given back while retry/1 waited for its retry" grep -q 'key=retry/2.*given back unrun' "$WL_DIR/w1.log"
check "dedup: only the first message ran" test "$(paste -sd, "$WL_DIR/dedup.out")" = 1
check "dedup: the second key never reached the ledger" test -z "$(wl_state dedup/2)"
check "exhausted: dead" wl_wait wl_state_is dead/1 dead
queue_empty() { [ "$(wl_py depth "$DTQ_QUEUE_URL")" = 0 ]; }
check "every message left the queue" wl_wait queue_empty
dlq=$(wl_py dlq)
check "FIFO DLQ: the exhausted task, in its group" test "$(printf '%s\n' "$dlq" | jq -r 'select(.key == "dead/1") | .reason + " " + .group')" = "exhausted g4"
check "FIFO DLQ: the malformed message, in its group" test "$(printf '%s\n' "$dlq" | jq -r 'select(.body == "not json at all") | .reason + " " + .group')" = "malformed default"
check "FIFO DLQ: nothing else" test "$(printf '%s\n' "$dlq" | grep -c .)" = 2

# A drain gives back what waits behind its group without running it.
mapfile -t a < <(stamp drain_1 4)
send_in g5 drain/1 "${a[@]}"
mapfile -t a < <(stamp drain_2 2)
send_in g5 drain/2 "${a[@]}"
check "drain: the first task runs" wl_wait wl_state_is drain/1 running
kill -TERM "$WL_PID_w1"
wl_wait_exit "$WL_PID_w1"
check "drain: the worker exits 0 (got $WL_STATUS)" test "$WL_STATUS" = 0
check "drain: the first task is released" wl_state_is drain/1 queued
check "drain: the second never ran" test ! -e "$WL_DIR/drain_2.start" -a -z "$(wl_state drain/2)"
check "drain: both messages are back in the queue" test "$(wl_py depth "$DTQ_QUEUE_URL")" = 2

# A message that waits longer than the visibility timeout stays invisible: the
# worker extends it as it extends a running task's (here every 1 s, visibility
# 2 s, and drain/2 waits 4 s). Otherwise SQS would hand it out again once drain/1
# is deleted, to this worker's next receive.
DTQ_VISIBILITY_TIMEOUT=2s DTQ_LEASE=3s wl_start_worker w2 --concurrency 4
check "long wait: drain/2 succeeded" wl_wait wl_state_is drain/2 succeeded
check "long wait: drain/2 waited its turn" after drain_1 drain_2
check "long wait: drain/1 ran again (its first run was released), drain/2 once" \
	test "$(wl_executions drain/1) $(wl_executions drain/2)" = "2 1"
check "long wait: no message was delivered twice" test "$(wl_metric "$WL_PORT_w2" dtq_messages_received_total)" = 2
wl_done
