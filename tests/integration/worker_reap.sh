#!/usr/bin/env bash
# worker_reap.sh - the reaper sends lost messages again: a task submitted through the
# executor-shim whose message is gone and whose row is unsent (d: `dtq ledger reap
# --send`, without a worker; a: the worker's reaper), a running row whose lease
# expired with no message left (b: requeued, sent again, run once, the lost
# execution closed as lost), and a row past max_attempts (c: dead, not sent).
# Messages are signed and the worker requires signatures, so the re-sent messages
# are signed as the shim signs.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib/harness.sh"
. "$top/tests/lib/worker_lib.sh"
wl_setup worker-reap

export DTQ_EXEC_ALLOW=/bin/sh
export DTQ_LEASE=3s DTQ_VISIBILITY_TIMEOUT=10s DTQ_RECEIVE_WAIT=1s DTQ_RETRY_BACKOFF=0s
export DTQ_KILL_GRACE=1s DTQ_REAP_INTERVAL=1s
export DTQ_SIGNING_KEY="reap-test-key-$$" DTQ_REQUIRE_SIGNATURE=true

submit() { # submit KEY MAX_ATTEMPTS
	printf '{"key": "%s", "task_name": "dtq.exec", "max_attempts": %s, "kwargs": {"argv": ["/bin/sh", "-c", "echo ran $DTQ_TASK_KEY fence=$DTQ_FENCE"]}, "labels": {"team": "reap"}}' "$1" "$2" |
		"$DTQ_BIN" executor-shim submit 2>>"$WL_DIR/shim.err"
}
depth() { wl_py depth "$DTQ_QUEUE_URL"; }
# A row made unsent, and old enough for the reaper's resend_after (1 minute).
unsent() { wl_psql "UPDATE tasks SET sent_at = NULL, updated_at = now() - interval '2 minutes' WHERE key = '$1'"; }
# A worker that is gone claimed it: lease run out, no message left.
ghost_claim() {
	wl_psql "SELECT c.outcome FROM claim_task('$1', 'ghost-$$', 1, NULL, false, NULL, NULL, NULL, NULL) AS c"
}

for k in reap/a reap/b reap/d; do
	check "submit $k" bash -c "$(declare -f submit); DTQ_BIN='$DTQ_BIN' WL_DIR='$WL_DIR' submit $k 3 | jq -e '.created'"
done
check "submit reap/c (one attempt)" bash -c "$(declare -f submit); DTQ_BIN='$DTQ_BIN' WL_DIR='$WL_DIR' submit reap/c 1 | jq -e '.created'"
check "four messages queued" test "$(depth)" = 4
wl_py purge "$DTQ_QUEUE_URL"
check "the messages are gone" wl_wait test "$(depth)" = 0

# (d) dtq ledger reap --send, no worker
unsent reap/d
check "reap --dry-run --send sends nothing" bash -c "'$DTQ_BIN' ledger reap --dry-run --send --json | jq -e '.dry_run and ([.tasks[] | select(.key == \"reap/d\" and .action == \"resend\")] | length == 1) and (has(\"sent\") | not)'"
check "dry run: still nothing queued" test "$(depth)" = 0
out=$("$DTQ_BIN" ledger reap --send --json 2>>"$WL_DIR/reap.err")
check "reap --send exits 0" test $? = 0
check "reap --send: reap/d re-sent, alone" bash -c "printf '%s' '$out' | jq -e '.sent == 1 and ([.tasks[] | select(.key == \"reap/d\" and .action == \"resend\" and .sent and (.message_id | length > 0))] | length == 1) and (.tasks | length == 1)'"
check "reap --send: one message queued" test "$(depth)" = 1
check "reap --send: reap/d marked sent" test "$(wl_psql "SELECT sent_at IS NOT NULL FROM tasks WHERE key = 'reap/d'")" = t
check "reap --send again: nothing left to send" bash -c "'$DTQ_BIN' ledger reap --send --json | jq -e '.tasks | length == 0'"
check "reap --send without queue_url: exit 2" bash -c "DTQ_QUEUE_URL= '$DTQ_BIN' ledger reap --send >/dev/null 2>&1; test \$? = 2"

# (a) unsent, (b) expired lease, (c) expired lease on the last attempt
unsent reap/a
check "ghost claims reap/b" test "$(ghost_claim reap/b)" = CLAIMED
check "ghost claims reap/c" test "$(ghost_claim reap/c)" = CLAIMED

wl_start_worker w1 --concurrency 2
port=$WL_PORT_w1
check "d: runs (reap --send's message)" wl_wait wl_state_is reap/d succeeded
check "a: re-sent by the worker's reaper and run" wl_wait wl_state_is reap/a succeeded
check "b: requeued, re-sent and run" wl_wait wl_state_is reap/b succeeded
check "c: dead" wl_wait wl_state_is reap/c dead
check "a: one execution" test "$(wl_executions reap/a)" = 1
check "d: one execution" test "$(wl_executions reap/d)" = 1
check "b: the lost execution closed as lost, then one run" test "$(wl_psql "SELECT string_agg(worker || ':' || outcome, ',' ORDER BY fence) FROM attempts WHERE key = 'reap/b'")" = "ghost-$$:lost,w1-$$:succeeded"
check "b: ran at fence 2" grep -q 'key=reap/b.*ran reap/b fence=2' "$WL_DIR/w1.log"
check "c: the lost execution closed as lost" test "$(wl_psql "SELECT string_agg(outcome, ',') FROM attempts WHERE key = 'reap/c'")" = lost
check "c: error says why" bash -c "test -n \"\$(psql '$DTQ_TEST_PG_DSN' -XAtq -c \"SELECT 1 FROM $DTQ_LEDGER_SCHEMA.tasks WHERE key = 'reap/c' AND error LIKE 'lease expired on the last attempt%'\")\""
check "log: resend of reap/a" grep -q 'key=reap/a.*reaper: resend' "$WL_DIR/w1.log"
check "log: requeued reap/b" grep -q 'key=reap/b.*reaper: requeued' "$WL_DIR/w1.log"
check "log: dead reap/c" grep -q 'key=reap/c.*reaper: dead' "$WL_DIR/w1.log"
check "metrics: requeued counted" test "$(wl_metric "$port" 'dtq_reaped_total{action="requeued"}')" -ge 1
check "metrics: resend counted" test "$(wl_metric "$port" 'dtq_reaped_total{action="resend"}')" -ge 1
check "metrics: dead counted" test "$(wl_metric "$port" 'dtq_reaped_total{action="dead"}')" = 1
check "metrics: two messages re-sent" test "$(wl_metric "$port" dtq_messages_resent_total)" = 2
check "no signature refused" bash -c "! grep -q 'bad_signature\|unsigned' '$WL_DIR/w1.log'"
sleep 3
check "c: not sent again (no execution, queue empty)" test "$(wl_executions reap/c)/$(depth)" = "1/0"
check "nothing re-sent twice" test "$(wl_metric "$port" dtq_messages_resent_total)" = 2

kill -TERM "$WL_PID_w1"
wl_wait_exit "$WL_PID_w1"
check "SIGTERM: exit 0 (got $WL_STATUS)" test "$WL_STATUS" = 0
wl_done
