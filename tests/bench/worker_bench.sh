#!/usr/bin/env bash
# tests/bench/worker_bench.sh - dtq worker against a Python TaskIQ worker and the
# emulator's ceiling, side by side on one moto_server and one PostgreSQL.
#
#   tests/bench/worker_bench.sh [N] [CONCURRENCY]     (defaults 2000 and 16)
#
# Each system gets its own queue, preloaded with N tasks that run /bin/true as a
# child process, while the consumer is paused (SIGSTOP after start-up, so that
# Python's import time is not counted); then the clock starts (SIGCONT) and stops
# when N tasks are done:
#   (a) dtq worker --concurrency C (ledger claim, spawn, record, delete);
#   (b) taskiq worker (taskiq-aio-sqs, 1 process, --max-async-tasks C, acks when
#       executed) whose task runs /bin/true with asyncio's subprocess;
#   (c) the ceiling: tests/bench/sqs_ceiling.c, receive + delete, no work, with
#       the worker's call pattern and limit (at most C messages asked for or in
#       hand, receives of 10, one DeleteMessageBatch per receive);
#   (d) the same without the slot limit (C/10 polls of 10 always out), for
#       reference.
# Reported: tasks/s, the consumer's own CPU seconds per 1,000 tasks (children
# excluded), its peak RSS (VmHWM, summed over its processes), and enqueue ->
# child-start latency p50/p99 measured separately with LAT_N tasks (default
# 200) sent at LAT_RATE per second (default 20) to the running consumer.
# Not part of `make test`.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
N=${1:-2000}
C=${2:-16}
LAT_N=${LAT_N:-200}
LAT_RATE=${LAT_RATE:-20}
BUILD=${BUILD:-build}
export DTQ_VENV=${DTQ_VENV:-$top/.venv}

make -s -j2 all
mkdir -p "$BUILD/bench"
# shellcheck disable=SC2046
cc -std=c11 -O2 -g -Wall -Wextra -Iinclude -D_GNU_SOURCE $(pkg-config --cflags libpq libcjson) \
	-o "$BUILD/bench/sqs_ceiling" tests/bench/sqs_ceiling.c "$BUILD/libdtq.a" \
	$(pkg-config --libs libcurl libcjson libpq) -lmbedcrypto -lev -lm
DTQ_BIN=$top/$BUILD/dtq

. tests/lib/harness.sh
harness_init
harness_start_pg >/dev/null
harness_start_moto >/dev/null
export DTQ_LEDGER_DSN=$DTQ_TEST_PG_DSN DTQ_LEDGER_SCHEMA=dtq_bench_$$
export DTQ_AWS_ENDPOINT_URL=$DTQ_TEST_SQS_ENDPOINT
"$DTQ_BIN" migrate >/dev/null 2>&1
py=$DTQ_VENV/bin/python
tasks_py=$top/tests/bench/worker_bench_tasks.py
dir=$DTQ_TEST_TMP/bench
mkdir -p "$dir"
pids=()
trap 'for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; harness_cleanup' EXIT

new_queue() {
	local urls
	urls=$("$DTQ_BIN" queue create "bench-$1-$$" --dlq "bench-$1-$$-dlq" --json 2>/dev/null)
	DTQ_QUEUE_URL=$(printf '%s' "$urls" | jq -r .queue_url)
	DTQ_DLQ_URL=$(printf '%s' "$urls" | jq -r .dlq_url)
	export DTQ_QUEUE_URL DTQ_DLQ_URL
}
produce() { "$py" "$tasks_py" produce "$@"; }
now() { date +%s.%N; }
# the process and its descendants, except short-lived /bin/true children
tree() { echo "$1"; pgrep -P "$1" | while read -r c; do [ "$(cat /proc/"$c"/comm 2>/dev/null)" = true ] || tree "$c"; done; }
cpu_of() { # utime + stime of the tree, seconds
	local tck s=0 p
	tck=$(getconf CLK_TCK)
	for p in $(tree "$1"); do
		s=$(awk -v s="$s" -v t="$tck" '{print s + ($14 + $15) / t}' "/proc/$p/stat" 2>/dev/null || echo "$s")
	done
	echo "$s"
}
rss_of() { # VmHWM summed over the tree, MiB
	local kb=0 p v
	for p in $(tree "$1"); do
		v=$(awk '/^VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
		kb=$((kb + ${v:-0}))
	done
	awk -v k="$kb" 'BEGIN {printf "%.1f", k / 1024}'
}
percentiles() { sort -n | awk '{v[NR] = $1} END {i = int(NR * 0.99); if (i < 1) i = 1; if (NR) printf "%.0f %.0f\n", v[int(NR * 0.5) + 1], v[i]; else print "- -"}'; }
wait_count() { # wait_count N CMD...: until CMD prints >= N
	local n=$1
	shift
	until [ "$("$@")" -ge "$n" ]; do sleep 0.2; done
}

declare -A rate cpu rss p50 p99

# ---- (c) the ceiling, and (d) the unconstrained ceiling ----
ceiling() { # ceiling KEY N ARGS...: run sqs_ceiling on a fresh preloaded queue
	local key=$1 n=$2 out
	shift 2
	new_queue "$key"
	produce dtq "$n" c >/dev/null
	out=$("$BUILD/bench/sqs_ceiling" "$n" "$@")
	echo "# $key: $out"
	rate[$key]=$(sed 's/.*rate=\([^ ]*\).*/\1/' <<<"$out")
	cpu[$key]=$(sed 's/.*cpu_s=\([^ ]*\).*/\1/' <<<"$out")
	rss[$key]=$(sed 's/.*maxrss_kb=\([^ ]*\).*/\1/' <<<"$out" | awk '{printf "%.1f", $1 / 1024}')
	"$BUILD/bench/sqs_ceiling" "$LAT_N" "$@" >"$dir/$key.lat" &
	cl=$!
	sleep 0.5
	produce dtq "$LAT_N" cl --rate "$LAT_RATE" >/dev/null
	wait "$cl"
	p50[$key]=$(sed 's/.*p50_ms=\([^ ]*\).*/\1/' "$dir/$key.lat")
	p99[$key]=$(sed 's/.*p99_ms=\([^ ]*\).*/\1/' "$dir/$key.lat")
}
ceiling c "$N" --polls $(((C + 9) / 10)) --slots "$C"
ceiling d "$N" --polls $(((C + 9) / 10))

# ---- (a) dtq worker ----
new_queue dtq
port=$(harness_free_port)
DTQ_EXEC_ALLOW=/bin/true DTQ_RECEIVE_WAIT=1s DTQ_LEDGER_POOL_SIZE=4 DTQ_HEALTH_ADDR=127.0.0.1:$port \
	DTQ_WORKER_ID=bench "$DTQ_BIN" worker --concurrency "$C" 2>"$dir/dtq.log" &
wp=$!
pids+=("$wp")
until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.1; done
kill -STOP "$wp"
produce dtq "$N" tp >/dev/null
done_dtq() { psql "$DTQ_TEST_PG_DSN" -XAtq -c "SELECT count(*) FROM $DTQ_LEDGER_SCHEMA.tasks WHERE state='succeeded' AND key LIKE '$1/%'"; }
c0=$(cpu_of "$wp")
t0=$(now)
kill -CONT "$wp"
wait_count "$N" done_dtq tp
t1=$(now)
c1=$(cpu_of "$wp")
rate[a]=$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", n / (b - a)}')
cpu[a]=$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f", b - a}')
produce dtq "$LAT_N" lat --rate "$LAT_RATE" >/dev/null
wait_count "$LAT_N" done_dtq lat
read -r p50[a] p99[a] < <(grep 'key=lat/.*started pid' "$dir/dtq.log" | sed 's/.*queued \([0-9]*\) ms.*/\1/' | percentiles)
rss[a]=$(rss_of "$wp")
kill -TERM "$wp"
wait "$wp" || true
echo "# dtq done"

# ---- (b) taskiq worker ----
new_queue taskiq
export BENCH_LOG=$dir/taskiq.lat
: >"$BENCH_LOG"
(cd "$top/tests/bench" && exec "$DTQ_VENV/bin/taskiq" worker worker_bench_tasks:broker --workers 1 \
	--max-async-tasks "$C" --ack-type when_executed --log-level WARNING) 2>"$dir/taskiq.log" &
tp=$!
pids+=("$tp")
sleep 1
until [ -n "$(pgrep -P "$tp")" ]; do sleep 0.2; done
sleep 3 # imports done, listening
# shellcheck disable=SC2046
kill -STOP $(tree "$tp")
produce taskiq "$N" tp >/dev/null
lines() { wc -l <"$BENCH_LOG"; }
c0=$(cpu_of "$tp")
t0=$(now)
# shellcheck disable=SC2046
kill -CONT $(tree "$tp")
wait_count "$N" lines
t1=$(now)
c1=$(cpu_of "$tp")
rate[b]=$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", n / (b - a)}')
cpu[b]=$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f", b - a}')
produce taskiq "$LAT_N" lat --rate "$LAT_RATE" >/dev/null
wait_count $((N + LAT_N)) lines
read -r p50[b] p99[b] < <(tail -n "$LAT_N" "$BENCH_LOG" | percentiles)
rss[b]=$(rss_of "$tp")
kill -TERM "$tp"
wait "$tp" || true
echo "# taskiq done"

per_k() { awk -v c="$1" -v n="$N" 'BEGIN {printf "%.2f", c * 1000 / n}'; }
echo
echo "worker_bench: N=$N tasks of /bin/true, concurrency $C, $(nproc) CPUs, moto_server $("$py" -c 'import moto; print(moto.__version__)'), latency: $LAT_N tasks at $LAT_RATE/s"
printf '%-26s %10s %16s %14s %12s %12s\n' system tasks/s "CPU s/1k tasks" "peak RSS MiB" "p50 ms" "p99 ms"
printf '%-26s %10s %16s %14s %12s %12s\n' "(a) dtq worker" "${rate[a]}" "$(per_k "${cpu[a]}")" "${rss[a]}" "${p50[a]}" "${p99[a]}"
printf '%-26s %10s %16s %14s %12s %12s\n' "(b) taskiq worker" "${rate[b]}" "$(per_k "${cpu[b]}")" "${rss[b]}" "${p50[b]}" "${p99[b]}"
printf '%-26s %10s %16s %14s %12s %12s\n' "(c) ceiling, C slots" "${rate[c]}" "$(per_k "${cpu[c]}")" "${rss[c]}" "${p50[c]}" "${p99[c]}"
printf '%-26s %10s %16s %14s %12s %12s\n' "(d) ceiling, no slot limit" "${rate[d]}" "$(per_k "${cpu[d]}")" "${rss[d]}" "${p50[d]}" "${p99[d]}"
awk -v a="${rate[a]}" -v b="${rate[b]}" -v c="${rate[c]}" -v d="${rate[d]}" -v ra="${rss[a]}" -v rb="${rss[b]}" 'BEGIN {
	printf "ratios: dtq/ceiling %.2f (goal >= 0.90; %.2f of the unconstrained one), dtq/taskiq %.2f (goal >= 3), RSS dtq/taskiq %.3f (goal < 0.10)\n",
		a / c, a / d, a / b, ra / rb }'
