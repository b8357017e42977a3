#!/usr/bin/env bash
# valgrind.sh - the long-running applets are valgrind-clean: `dtq worker` under
# memcheck through a mixed workload (successes, retried failures dead-lettered, a
# timeout, a cancel, poison messages, a duplicate, a stored payload, reaper rounds,
# a ledger restart, an SQS outage, health hits, SIGTERM drain), `dtq health`
# one-shots, and `dtq executor-shim --serve` through a few hundred JSON-lines
# requests. Each must end as expected with "ERROR SUMMARY: 0 errors": no invalid
# access, no use of uninitialised memory, no definite or indirect leak (still
# reachable and possibly lost are not counted). Only the applet itself is checked
# (--trace-children=no): task children and their guard are other programs.
# Library-internal findings are in tests/valgrind.supp.
# Run it alone with `tests/run.sh valgrind.sh`; `make asan` skips it.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
: "${BUILD:=build}"
: "${DTQ_BIN:=$top/$BUILD/dtq}"

# ASan and valgrind do not mix: an ASan build reserves shadow memory valgrind cannot give.
if [[ $BUILD == *asan* ]] || nm "$DTQ_BIN" 2>/dev/null | grep -q '__asan_init' ||
	ldd "$DTQ_BIN" 2>/dev/null | grep -q libasan; then
	echo "ok - # SKIP valgrind and ASan do not mix"
	exit 0
fi
if ! command -v valgrind >/dev/null; then
	echo "not ok - valgrind is installed"
	exit 1
fi

. "$top/tests/lib/harness.sh"
. "$top/tests/lib/worker_lib.sh"
wl_setup valgrind
WL_TIMEOUT=60
t_start=$SECONDS

VG_OPTS=(--tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect
	--errors-for-leak-kinds=definite,indirect --error-exitcode=99 --track-fds=no
	--child-silent-after-fork=yes --trace-children=no --num-callers=30
	--suppressions="$top/tests/valgrind.supp")

# vg_wrapper NAME: a script that runs dtq under valgrind, logging to $WL_DIR/NAME.vg
vg_wrapper() {
	local w=$WL_DIR/vg-$1
	printf '#!/bin/sh\nexec valgrind %s --log-file=%s "%s" "$@"\n' \
		"${VG_OPTS[*]}" "$WL_DIR/$1.vg" "$DTQ_BIN" >"$w"
	chmod +x "$w"
	printf '%s' "$w"
}

# vg_check NAME WHAT: one TAP line: the valgrind log of NAME reports no error and
# no definite/indirect leak. On failure the first 60 lines of its findings follow
# (not through check, which keeps only the last 20 lines of output).
vg_check() {
	local log=$WL_DIR/$1.vg
	if grep -q 'ERROR SUMMARY: 0 errors' "$log" 2>/dev/null &&
		! grep -Eq '(definitely|indirectly) lost: [1-9]' "$log"; then
		printf 'ok - %s\n' "$2"
		return
	fi
	printf 'not ok - %s\n' "$2"
	harness_failures=$((harness_failures + 1))
	if [ ! -s "$log" ]; then
		echo "#   no valgrind log $log"
		return
	fi
	grep -v '^==[0-9]*== *$' "$log" | sed -n '/Invalid\|uninitialised\|lost in\|Syscall param\|Mismatched\|overlap\|ERROR SUMMARY/,$p' |
		head -n 60 | sed 's/^/#   /'
}

# vwait CMD...: wl_wait, but once one wait has timed out the rest wait 5 s, so
# that a broken worker fails the test in a minute instead of many.
vwait() {
	local WL_TIMEOUT=$WL_TIMEOUT
	[ -e "$WL_DIR/timed-out" ] && WL_TIMEOUT=5
	wl_wait "$@" || { touch "$WL_DIR/timed-out"; return 1; }
}

# ---- worker ---------------------------------------------------------------------
export DTQ_EXEC_ALLOW=/bin/sh,/bin/sleep,/bin/true
# valgrind is 20-50x slower: leases and visibility far longer than any stall
export DTQ_LEASE=120s DTQ_HEARTBEAT_INTERVAL=5s DTQ_VISIBILITY_TIMEOUT=300s
export DTQ_RECEIVE_WAIT=1s DTQ_RETRY_BACKOFF=0s DTQ_KILL_GRACE=1s DTQ_REAP_INTERVAL=2s
export DTQ_SIGNING_KEY="valgrind-signing-key-$$"
export DTQ_HTTP_TIMEOUT=30s

printf 'echo "ran $1"; sleep "$2"\n' >"$WL_DIR/ok.sh"
printf 'echo "failing $1" >&2; exit 3\n' >"$WL_DIR/fail.sh"

# Work for the reaper: reap/a submitted but its message lost and its row unsent
# (resend), reap/b claimed by a worker that is gone (requeue and resend).
submit() {
	printf '{"key": "%s", "task_name": "dtq.exec", "kwargs": {"argv": ["/bin/sh", "-c", "echo ran $DTQ_TASK_KEY"]}}' "$1" |
		"$DTQ_BIN" executor-shim submit 2>>"$WL_DIR/shim.err"
}
check "submit reap/a and reap/b" bash -c "$(declare -f submit); DTQ_BIN='$DTQ_BIN' WL_DIR='$WL_DIR'; submit reap/a | jq -e .created && submit reap/b | jq -e .created"
wl_py purge "$DTQ_QUEUE_URL"
wl_psql "UPDATE tasks SET sent_at = NULL, updated_at = now() - interval '2 minutes' WHERE key = 'reap/a'" >/dev/null
wl_psql "SELECT c.outcome FROM claim_task('reap/b', 'ghost-$$', 1, NULL, false, NULL, NULL, NULL, NULL) AS c" >/dev/null

# The queue first, so that the worker starts with a full batch waiting.
wl_py send-many 40 ok "$WL_DIR/ok.sh" --min 0 --max 0.2 >"$WL_DIR/ok.keys"
wl_py send-many 6 fail "$WL_DIR/fail.sh" --attempts 2 >"$WL_DIR/fail.keys"

worker_vg=$(vg_wrapper worker)
DTQ_BIN=$worker_vg wl_start_worker w1 --concurrency 4
port=$WL_PORT_w1
check "worker under valgrind becomes ready" wl_wait_ready "$port" 900

echo "# t=$((SECONDS - t_start)) s: worker ready"
wl_py send slow/1 --timeout 2 -- /bin/sleep 60 >/dev/null
wl_py send cancel/1 -- /bin/sleep 120 >/dev/null
wl_py send twice/1 -- /bin/sh -c 'echo ran >> "$0"' "$WL_DIR/twice.out" >/dev/null
printf 'garbage {{{ not json' | wl_py send-raw >/dev/null
printf '{"hello": 1}' | wl_py send-raw >/dev/null
wl_py send unknown/1 --task nosuch.task --sign "$DTQ_SIGNING_KEY" -- /bin/true >/dev/null
wl_py send forged/1 --sign not-the-key -- /bin/true >/dev/null
wl_py send denied/1 --sign "$DTQ_SIGNING_KEY" -- /bin/rm -rf /tmp/nothing-here >/dev/null
wl_py send signed/1 --sign "$DTQ_SIGNING_KEY" -- /bin/true >/dev/null

# A stored payload: the shim moves a request bigger than the queue's message size
# into the ledger, the message names it (payload_ref).
wl_py set-attr "$DTQ_QUEUE_URL" MaximumMessageSize 1024
big=$(head -c 3000 /dev/zero | tr '\0' x)
printf '{"key": "stored/1", "task_name": "dtq.exec", "kwargs": {"argv": ["/bin/sh", "-c", "echo stored ${#1}", "sh", "%s"]}}' "$big" |
	"$DTQ_BIN" executor-shim submit >"$WL_DIR/stored.json" 2>>"$WL_DIR/shim.err"
wl_py set-attr "$DTQ_QUEUE_URL" MaximumMessageSize 262144
check "stored payload submitted" jq -e '.created' "$WL_DIR/stored.json"

check "cancel: task starts" vwait wl_state_is cancel/1 running
"$DTQ_BIN" executor-shim cancel cancel/1 >"$WL_DIR/cancel.json" 2>>"$WL_DIR/shim.err"
check "cancel: executor-shim cancel flags it" jq -e '.cancel_requested' "$WL_DIR/cancel.json"

for ep in healthz readyz metrics status healthz metrics status; do
	curl -fsS -m 10 "http://127.0.0.1:$port/$ep" >>"$WL_DIR/health.out" 2>&1 || echo "curl $ep failed" >>"$WL_DIR/health.err"
done
check "health endpoints answer while busy" test ! -s "$WL_DIR/health.err"
# dtq health one-shots under valgrind: the worker's /readyz, and --deep (SQS and ledger)
"$(vg_wrapper health-ready)" health --url "http://127.0.0.1:$port/readyz" --timeout 30s --quiet 2>>"$WL_DIR/health.err"
rc=$?
check "dtq health against the worker: exit 0 (got $rc)" test "$rc" = 0
"$(vg_wrapper health-deep)" health --deep --timeout 30s --quiet 2>>"$WL_DIR/health.err"
rc=$?
check "dtq health --deep: exit 0 (got $rc)" test "$rc" = 0

all_in_state() { # all_in_state FILE STATE: every key listed in FILE is in STATE
	local n
	n=$(wl_psql "SELECT count(*) FROM tasks WHERE state = '$2' AND key IN ($(sed "s/.*/'&'/" "$1" | paste -sd,))")
	[ "$n" = "$(wc -l <"$1")" ]
}
check "40 tasks succeeded" vwait all_in_state "$WL_DIR/ok.keys" succeeded
check "6 failing tasks retried then dead" vwait all_in_state "$WL_DIR/fail.keys" dead
check "failing tasks ran twice each" test "$(wl_psql "SELECT count(*) FROM attempts WHERE key LIKE 'fail/%'")" = 12
check "timeout: recorded failed" vwait wl_state_is slow/1 failed
check "timeout: error is timeout" test "$(wl_psql "SELECT error FROM tasks WHERE key='slow/1'")" = timeout
check "cancel: recorded cancelled" vwait wl_state_is cancel/1 cancelled
check "duplicate: first copy succeeded" vwait wl_state_is twice/1 succeeded
# a producer retry of a finished task: suppressed and deleted
wl_py send twice/1 -- /bin/sh -c 'echo ran >> "$0"' "$WL_DIR/twice.out" >/dev/null
check "signed task succeeded" vwait wl_state_is signed/1 succeeded
check "stored payload: succeeded" vwait wl_state_is stored/1 succeeded
check "stored payload: the child got all of it" grep -q 'key=stored/1.*stored 3000' "$WL_DIR/w1.log"
queue_empty() { [ "$(wl_py depth "$DTQ_QUEUE_URL")" = 0 ]; }
check "the queue is empty" vwait queue_empty
check "duplicate: one execution" test "$(wl_executions twice/1)/$(wc -l <"$WL_DIR/twice.out")" = 1/1
check "duplicate: suppressed" test "$(wl_metric "$port" dtq_duplicates_suppressed_total)" -ge 1
check "reaper: reap/a re-sent and run" vwait wl_state_is reap/a succeeded
check "reaper: reap/b requeued, re-sent and run" vwait wl_state_is reap/b succeeded
check "reaper: resend and requeue counted" test "$(wl_metric "$port" 'dtq_reaped_total{action="resend"}')" -ge 1 -a \
	"$(wl_metric "$port" 'dtq_reaped_total{action="requeued"}')" -ge 1

# The ledger restarts while a task runs: the worker's reconnect and retry paths.
wl_py send pgrestart/1 -- /bin/sh -c 'sleep 3; echo after restart' >/dev/null
check "ledger restart: task starts" vwait wl_state_is pgrestart/1 running
check "ledger restarted" harness_restart_pg
wl_py send-many 5 after "$WL_DIR/ok.sh" --min 0 --max 0.1 >"$WL_DIR/after.keys"
check "ledger restart: the running task finished" vwait wl_state_is pgrestart/1 succeeded
check "ledger restart: 5 more tasks succeeded" vwait all_in_state "$WL_DIR/after.keys" succeeded
check "ledger restart: worker ready again" vwait wl_wait_ready "$port" 10

# Everything dead-lettered is read now: the SQS outage below loses moto's queues.
dlq=$(wl_py dlq)
reason_of() { printf '%s\n' "$dlq" | jq -r "select($1) | .reason"; }
check "DLQ: exhausted tasks" test "$(printf '%s\n' "$dlq" | jq -r 'select(.reason == "exhausted") | .key' | grep -c '^fail/')" = 6
check "DLQ: garbage -> malformed" test "$(reason_of '.body | startswith("garbage")')" = malformed
check "DLQ: JSON without fields -> malformed" test "$(reason_of '.body == "{\"hello\": 1}"')" = malformed
check "DLQ: unknown task" test "$(reason_of '.key == "unknown/1"')" = unknown_task
check "DLQ: forged signature" test "$(reason_of '.body | contains("forged/1")')" = bad_signature
check "DLQ: program not allowed" test "$(reason_of '.key == "denied/1"')" = not_allowed

# SQS goes away (the worker's receive, retry and error paths), comes back empty;
# the queues are made again at the same URLs and work goes on.
harness_stop_moto
sqs_errors() { test "$(wl_metric "$port" 'dtq_sqs_errors_total{action="ReceiveMessage"}')" -ge "$1"; }
check "SQS down: receive errors counted" vwait sqs_errors 2
check "SQS down: readyz says 503" vwait bash -c "curl -s -m 5 -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/readyz | grep -q 503"
harness_start_moto >/dev/null 2>&1
check "SQS back: queues made again" "$DTQ_BIN" queue create "valgrind-$$" --dlq "valgrind-$$-dlq" --max-receive 100
wl_py send after-sqs/1 -- /bin/true >/dev/null
check "SQS back: tasks run again" vwait wl_state_is after-sqs/1 succeeded
curl -fsS -m 10 "http://127.0.0.1:$port/metrics" >"$WL_DIR/metrics.out"

echo "# t=$((SECONDS - t_start)) s: all tasks done"
# SIGTERM with a task in hand: the drain lets it finish.
wl_py send drain/1 -- /bin/sh -c 'sleep 3; echo drained' >/dev/null
check "drain: task starts" vwait wl_state_is drain/1 running
kill -TERM "$WL_PID_w1"
wl_wait_exit "$WL_PID_w1" 1200
check "worker: SIGTERM drain, exit 0 under valgrind (got $WL_STATUS)" test "$WL_STATUS" = 0
check "worker: stopped after draining" grep -q 'worker stopped' "$WL_DIR/w1.log"
check "drain: the task in hand finished" wl_state_is drain/1 succeeded
vg_check worker "worker: valgrind reports 0 errors, no definite/indirect leak"
"$(vg_wrapper health-down)" health --url "http://127.0.0.1:$port/readyz" --timeout 30s 2>>"$WL_DIR/health.err"
rc=$?
check "dtq health with the worker gone: exit 1 (got $rc)" test "$rc" = 1
for h in health-ready health-deep health-down; do
	vg_check "$h" "$h: valgrind reports 0 errors, no definite/indirect leak"
done

# ---- executor-shim --serve ------------------------------------------------------
# submit, status, cancel, ping and malformed lines, then EOF (exit 0)
n_submit=0 n_bad=1 n_reuse=0
for i in $(seq 1 100); do
	printf '{"id": %d, "op": "submit", "key": "serve/%d", "task_name": "dtq.exec", "kwargs": {"argv": ["/bin/true", "%d"]}}\n' "$i" "$i" "$i"
	printf '{"id": "s%d", "op": "status", "keys": ["serve/%d", "no-such/%d", "ok/00001"]}\n' "$i" "$i" "$i"
	n_submit=$((n_submit + 1))
	case $((i % 6)) in
	0) printf '{"id": "c%d", "op": "cancel", "key": "serve/%d"}\n' "$i" "$i" ;;
	1) printf '{"id": "p%d", "op": "ping"}\n' "$i" ;;
	2) printf 'not json %d\n' "$i"; n_bad=$((n_bad + 1)) ;;
	3) printf '[1, 2, %d]\n' "$i"; n_bad=$((n_bad + 1)) ;;
	4) printf '{"id": %d, "op": "nope"}\n' "$i"; n_bad=$((n_bad + 1)) ;;
	5) printf '{"id": "r%d", "op": "submit", "key": "serve/%d", "task_name": "dtq.exec", "kwargs": {"argv": ["/bin/true", "other"]}}\n' "$i" "$((i - 1))"
		n_reuse=$((n_reuse + 1)) ;;
	esac
done >"$WL_DIR/serve.in"
printf '{"id": "last", "op": "submit", "key": "", "task_name": "rm -rf"}\n' >>"$WL_DIR/serve.in"
echo "# t=$((SECONDS - t_start)) s: shim starts"
shim_vg=$(vg_wrapper shim)
"$shim_vg" executor-shim --serve <"$WL_DIR/serve.in" >"$WL_DIR/serve.out" 2>>"$WL_DIR/shim.err"
rc=$?
check "shim --serve: exit 0 at EOF under valgrind (got $rc)" test "$rc" = 0
check "shim --serve: one answer per line ($(wc -l <"$WL_DIR/serve.in") lines)" \
	test "$(wc -l <"$WL_DIR/serve.out")" = "$(wc -l <"$WL_DIR/serve.in")"
check "shim --serve: $n_submit submits created" test "$(jq -r 'select(.result.created == true) | .id' "$WL_DIR/serve.out" | wc -l)" = "$n_submit"
check "shim --serve: errors are only the $n_bad bad requests and $n_reuse key reuses" \
	test "$(jq -r '.error.code // empty' "$WL_DIR/serve.out" | sort | uniq -c | awk '{printf "%s=%s ", $2, $1}')" = "BAD_REQUEST=$n_bad KEY_REUSE=$n_reuse "
check "shim --serve: cancels cancelled their queued task" \
	test "$(jq -r 'select((.id | tostring) | startswith("c")) | .result.state' "$WL_DIR/serve.out" | sort -u)" = cancelled
vg_check shim "shim --serve: valgrind reports 0 errors, no definite/indirect leak"

echo "# valgrind.sh took $((SECONDS - t_start)) s"
wl_done
