#!/usr/bin/env bash
# worker_chaos.sh - the exactly-once promise under crashes: N dtq.exec tasks of
# random 0-2 s (CHAOS_TASKS, default 500), 3 workers of concurrency 4, a random
# worker kill -9'd and restarted every 3 s, PostgreSQL restarted once. At the end
# every task must be terminal in the ledger: 0 lost, 0 overlapping executions
# (checked live: a task holds an flock on its key while it runs, and in the
# ledger's attempts), 0 tasks with two recorded results. Prints the counts.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib/harness.sh"
. "$top/tests/lib/worker_lib.sh"
wl_setup worker-chaos

N=${CHAOS_TASKS:-500}
LIMIT=${CHAOS_LIMIT_S:-240}
export DTQ_EXEC_ALLOW=/bin/sh DTQ_RECEIVE_WAIT=1s DTQ_LEASE=3s DTQ_VISIBILITY_TIMEOUT=5s
export DTQ_KILL_GRACE=1s DTQ_RETRY_BACKOFF=1s DTQ_LOG_LEVEL=notice DTQ_LEDGER_TIMEOUT=5s
cat >"$WL_DIR/task.sh" <<'EOF'
key=$1; secs=$2; dir=$(dirname "$0")
exec 9>"$dir/locks/$(printf '%s' "$key" | tr / _)"
flock -n 9 || echo "OVERLAP $key fence=$DTQ_FENCE" >>"$dir/overlaps"
sleep "$secs"
echo "$key $DTQ_FENCE" >>"$dir/finished"
EOF
mkdir -p "$WL_DIR/locks"
: >"$WL_DIR/overlaps"
: >"$WL_DIR/finished"

declare -A pid gen
start_worker() {
	local i=$1 port
	gen[$i]=$(( ${gen[$i]:-0} + 1 ))
	port=$(harness_free_port)
	DTQ_WORKER_ID="chaos$i-$$-${gen[$i]}" DTQ_HEALTH_ADDR="127.0.0.1:$port" \
		"$DTQ_BIN" worker --concurrency 4 >>"$WL_DIR/w$i.log" 2>&1 &
	pid[$i]=$!
	wl_pids+=("${pid[$i]}")
}
for i in 0 1 2; do start_worker "$i"; done

t0=$SECONDS
wl_py send-many "$N" chaos "$WL_DIR/task.sh" --min 0 --max 2 --attempts 10 >"$WL_DIR/keys"
echo "# sent $N tasks in $((SECONDS - t0)) s"

terminal() { wl_psql "SELECT count(*) FROM tasks WHERE key LIKE 'chaos/%' AND state IN ('succeeded','failed','dead','cancelled')"; }
kills=0
pg_restarted=0
while [ $((SECONDS - t0)) -lt "$LIMIT" ]; do
	sleep 3
	done_n=$(terminal 2>/dev/null || echo 0)
	[ "${done_n:-0}" -ge "$N" ] && break
	i=$((RANDOM % 3))
	kill -KILL "${pid[$i]}" 2>/dev/null
	wait "${pid[$i]}" 2>/dev/null
	kills=$((kills + 1))
	if [ "$pg_restarted" = 0 ] && [ $((SECONDS - t0)) -ge 12 ]; then
		harness_restart_pg && pg_restarted=1
		echo "# PostgreSQL restarted at $((SECONDS - t0)) s"
	fi
	start_worker "$i"
	# a worker that started while the ledger was down exits: start it again
	for j in 0 1 2; do kill -0 "${pid[$j]}" 2>/dev/null || start_worker "$j"; done
done
elapsed=$((SECONDS - t0))
for i in 0 1 2; do kill -TERM "${pid[$i]}" 2>/dev/null; done
for i in 0 1 2; do wait "${pid[$i]}" 2>/dev/null; done

q() { wl_psql "$1"; }
total=$(q "SELECT count(*) FROM tasks WHERE key LIKE 'chaos/%'")
term=$(terminal)
succeeded=$(q "SELECT count(*) FROM tasks WHERE key LIKE 'chaos/%' AND state='succeeded'")
dead=$(q "SELECT count(*) FROM tasks WHERE key LIKE 'chaos/%' AND state='dead'")
lost=$((N - term))
overlap_ledger=$(q "SELECT count(*) FROM attempts a JOIN attempts b ON a.key=b.key AND a.fence<b.fence WHERE a.key LIKE 'chaos/%' AND (a.ended_at IS NULL OR a.ended_at > b.started_at)")
overlap_live=$(grep -c . "$WL_DIR/overlaps")
twice=$(q "SELECT count(*) FROM (SELECT key FROM attempts WHERE key LIKE 'chaos/%' AND outcome IN ('succeeded','failed','cancelled','dead') GROUP BY key HAVING count(*) > 1) x")
execs=$(q "SELECT count(*) FROM attempts WHERE key LIKE 'chaos/%'")
reruns=$(q "SELECT count(*) FROM (SELECT key FROM attempts WHERE key LIKE 'chaos/%' GROUP BY key HAVING count(*) > 1) x")
child_twice=$(awk '{print $1}' "$WL_DIR/finished" | sort | uniq -d | wc -l)
echo "# chaos: $N tasks, $elapsed s, $kills kill -9, PostgreSQL restarted $pg_restarted time(s)"
echo "# chaos: rows $total, terminal $term (succeeded $succeeded, dead $dead), lost $lost"
echo "# chaos: executions $execs, tasks run more than once $reruns (crash retries), children that finished twice $child_twice"
echo "# chaos: overlapping executions: $overlap_live live, $overlap_ledger in the ledger; tasks with two results: $twice"
check "chaos: every task has a ledger row ($total)" test "$total" = "$N"
check "chaos: 0 lost (every task terminal)" test "$lost" = 0
check "chaos: 0 overlapping executions (live)" test "$overlap_live" = 0
check "chaos: 0 overlapping executions (ledger)" test "$overlap_ledger" = 0
check "chaos: 0 tasks completed twice" test "$twice" = 0
check "chaos: workers were really killed ($kills)" test "$kills" -ge 3
check "chaos: PostgreSQL was restarted" test "$pg_restarted" = 1
wl_done
