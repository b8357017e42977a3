#!/usr/bin/env bash
# worker_drain.sh - shutdown: SIGTERM with tasks running lets them finish (exit 0,
# nothing redelivered); past shutdown_grace the tasks are stopped, their leases
# released and their messages made visible at once; a second SIGINT forces.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib/harness.sh"
. "$top/tests/lib/worker_lib.sh"
wl_setup worker-drain
WL_TIMEOUT=40

export DTQ_EXEC_ALLOW=/bin/sh,/bin/sleep DTQ_RECEIVE_WAIT=1s DTQ_LEASE=6s
export DTQ_VISIBILITY_TIMEOUT=30s DTQ_KILL_GRACE=1s
# fence 1 sleeps $2 seconds, later fences half a second
cat >"$WL_DIR/task.sh" <<'EOF'
if [ "$DTQ_FENCE" = 1 ]; then sleep "$2"; else sleep 0.5; fi
echo "ran $1 fence=$DTQ_FENCE" >>"$(dirname "$0")/ran"
EOF
running() { [ "$(wl_psql "SELECT count(*) FROM tasks WHERE state='running' AND key LIKE '$1%'")" = "$2" ]; }

# ---- graceful: three tasks finish, exit 0, nothing comes back ----
wl_start_worker w1 --concurrency 4
# long enough that all three overlap even when moto hands them out slowly under load
for i in 1 2 3; do wl_py send "drain/$i" -- /bin/sh "$WL_DIR/task.sh" "drain/$i" 8 >/dev/null; done
check "graceful: three tasks running" wl_wait running drain/ 3
kill -TERM "$WL_PID_w1"
sleep 0.3
ready=$(curl -s -w ' %{http_code}' "http://127.0.0.1:$WL_PORT_w1/readyz" | tr -d '\n')
check "graceful: readyz says draining ($ready)" bash -c "[[ '$ready' == draining*' 503' ]]"
wl_wait_exit "$WL_PID_w1"
check "graceful: exit 0 (got $WL_STATUS)" test "$WL_STATUS" = 0
check "graceful: all three succeeded" test "$(wl_psql "SELECT count(*) FROM tasks WHERE key LIKE 'drain/%' AND state='succeeded'")" = 3
check "graceful: one execution each" test "$(wl_psql "SELECT count(*) FROM attempts WHERE key LIKE 'drain/%'")" = 3
check "graceful: queue empty, nothing to redeliver" test "$(wl_py depth "$DTQ_QUEUE_URL")" = 0

# ---- past the grace: stopped, released, visible at once ----
wl_start_worker w2 --concurrency 2 --shutdown-grace 1s
wl_py send grace/1 -- /bin/sh "$WL_DIR/task.sh" grace/1 60 >/dev/null
check "grace: task running" wl_wait running grace/ 1
kill -TERM "$WL_PID_w2"
wl_wait_exit "$WL_PID_w2"
check "grace: exit 0 (got $WL_STATUS)" test "$WL_STATUS" = 0
check "grace: lease released (queued)" wl_state_is grace/1 queued
check "grace: attempt closed as released" test "$(wl_psql "SELECT outcome FROM attempts WHERE key='grace/1' AND fence=1")" = released
t0=$SECONDS
wl_start_worker w3 --concurrency 2
check "grace: another worker takes it at once and finishes" wl_wait wl_state_is grace/1 succeeded
check "grace: picked up well before the visibility timeout ($((SECONDS - t0)) s)" test $((SECONDS - t0)) -lt 15

# ---- a second SIGINT forces ----
kill -TERM "$WL_PID_w3"
wl_wait_exit "$WL_PID_w3"
wl_start_worker w4 --concurrency 2
wl_py send force/1 -- /bin/sh "$WL_DIR/task.sh" force/1 60 >/dev/null
check "force: task running" wl_wait running force/ 1
kill -INT "$WL_PID_w4"
sleep 0.5
kill -INT "$WL_PID_w4"
t0=$SECONDS
wl_wait_exit "$WL_PID_w4"
check "force: exits 1 (got $WL_STATUS)" test "$WL_STATUS" = 1
check "force: quickly ($((SECONDS - t0)) s)" test $((SECONDS - t0)) -le 6
check "force: lease released" wl_state_is force/1 queued
wl_start_worker w5 --concurrency 2
check "force: the task still finishes elsewhere" wl_wait wl_state_is force/1 succeeded
wl_done
