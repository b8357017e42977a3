#!/usr/bin/env bash
# tests/bench/dagster_bench.sh - dtq_executor against Dagster's multiprocess_executor, side by
# side on one machine: the 20-op fan-out job of tests/bench/dagster_bench_jobs.py (ops of
# OP_SECONDS), RUNS runs of each, alternated.
#
#   tests/bench/dagster_bench.sh [RUNS]          (default 5)
#
# One stack for all runs (python/tests/e2e/dtq_stack.py): PostgreSQL and moto_server from
# tests/lib/harness.sh, the ledger, one queue, WORKERS `dtq worker`s of worker_concurrency 1,
# and one DagsterInstance with Postgres storage that both executors use. Every run is
# `execute_job` in the driver's process (the orchestrator) on that instance; the multiprocess
# executor gets max_concurrent MAX_CONCURRENT. See tests/bench/dagster_bench.py for what is
# measured, and docs/dagster.md ("Performance") for results.
#
# Environment: RUNS (5), WARMUP (1 round, not counted), OP_SECONDS (0.5), WORKERS (4),
# MAX_CONCURRENT (4), VARIANTS (dtq,multiprocess; e.g. add dtq:sleep=0.1), OUT (build/bench),
# PLOT (1: draw build/bench/dagster_bench.png with matplotlib from a throw-away venv, if it
# installs within PLOT_TIMEOUT seconds, default 180; 0: no plot).
# Writes OUT/dagster_bench.txt (the table), dagster_bench_runs.csv, dagster_bench_steps.csv,
# dagster_bench.log (the driver's stderr: Dagster's and the harness's logs).
# The stack's directory (worker logs, DAGSTER_HOME) is removed after a run without failures
# unless KEEP=1.
# Not part of `make test`: it takes minutes (about 2 x RUNS+WARMUP runs of 20-60 s each).
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
RUNS=${1:-${RUNS:-5}}
OUT=${OUT:-$top/build/bench}
export DTQ_VENV=${DTQ_VENV:-$top/.venv}
export DTQ_BIN=${DTQ_BIN:-$top/build/dtq}

make -s -j2 all
mkdir -p "$OUT"
py=$DTQ_VENV/bin/python
plot_venv=
trap '[ -z "$plot_venv" ] || rm -rf "$plot_venv"' EXIT

echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) cores; uptime before: $(uptime)"
rc=0
"$py" tests/bench/dagster_bench.py run --runs "$RUNS" --out "$OUT" 2>"$OUT/dagster_bench.log" || rc=$?
echo "# uptime after: $(uptime)"
if [ "$rc" -ne 0 ]; then
	echo "# the driver exited $rc; its log: $OUT/dagster_bench.log" >&2
	tail -n 30 "$OUT/dagster_bench.log" >&2
fi

if [ "${PLOT:-1}" != 0 ] && [ -s "$OUT/dagster_bench_runs.csv" ]; then
	plot_venv=$(mktemp -d /tmp/dtq-bench-plot.XXXXXX)
	if timeout "${PLOT_TIMEOUT:-180}" python3 -m venv "$plot_venv" >/dev/null 2>&1 &&
		timeout "${PLOT_TIMEOUT:-180}" "$plot_venv/bin/pip" install -q matplotlib >/dev/null 2>&1; then
		"$plot_venv/bin/python" tests/bench/dagster_bench.py plot \
			"$OUT/dagster_bench_steps.csv" "$OUT/dagster_bench_runs.csv" "$OUT/dagster_bench.png" ||
			echo "# the plot failed; the CSVs are there"
	else
		echo "# matplotlib did not install within ${PLOT_TIMEOUT:-180}s: no plot"
	fi
fi
exit "$rc"
