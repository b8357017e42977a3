#!/usr/bin/env bash
# tests/bench/sqs_bench.sh [MESSAGES] - SQS client throughput, dtq vs boto3.
#
# Against one local moto_server (tests/lib/harness.sh), each client runs
# MESSAGES/10 cycles (MESSAGES default 1000, or DTQ_BENCH_MESSAGES) of: send a
# batch of 10, receive up to 10, delete them in one batch; on its own queue:
#   dtq blocking   build/bench/sqs_bench (the blocking client, one call at a time)
#   dtq async      the same cycles on the libev/curl-multi client, 4 pipelines at once
#   boto3          tests/bench/sqs_bench_boto3.py, the same calls as dtq blocking
# It prints messages/s, client CPU seconds per 1,000 messages (work only, after
# start-up) and peak RSS of each, and dtq blocking / boto3 ratios. moto does
# most of the work: throughput is bounded by the emulator, CPU and RSS are the
# clients' own. Not part of `make test`; `make bench` runs it.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
BUILD=${BUILD:-build}
n=${1:-${DTQ_BENCH_MESSAGES:-1000}}
make -s "$BUILD/bench/sqs_bench"
. tests/lib/harness.sh
harness_init
harness_start_moto
export DTQ_LOG_LEVEL=warn
out=$DTQ_TEST_TMP/bench.jsonl
: >"$out"
tag=bench-$$
echo "# $n messages per client against $DTQ_TEST_SQS_ENDPOINT ($(nproc) CPUs)" >&2
"$BUILD/bench/sqs_bench" --endpoint "$DTQ_TEST_SQS_ENDPOINT" --queue "$tag-dtq" --messages "$n" >>"$out"
"$BUILD/bench/sqs_bench" --endpoint "$DTQ_TEST_SQS_ENDPOINT" --queue "$tag-async" --messages "$n" \
	--concurrency 4 >>"$out"
harness_python tests/bench/sqs_bench_boto3.py "$DTQ_TEST_SQS_ENDPOINT" "$tag-boto3" "$n" >>"$out"
harness_python - "$out" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print("%-14s %10s %12s %20s %14s" % ("client", "messages", "messages/s", "CPU s / 1000 msgs",
                                      "peak RSS MiB"))
stats = {}
for r in rows:
    rate = r["messages"] / r["seconds"]
    cpu = r["cpu_seconds"] * 1000.0 / r["messages"]
    rss = r["max_rss_kib"] / 1024.0
    stats[r["client"]] = (rate, cpu, rss)
    print("%-14s %10d %12.1f %20.3f %14.1f" % (r["client"], r["messages"], rate, cpu, rss))
d, b = stats["dtq blocking"], stats["boto3"]
print("dtq blocking / boto3: throughput x%.2f, CPU per message x%.3f (boto3 uses %.1fx the CPU), "
      "peak RSS x%.3f (boto3 uses %.1fx the memory)"
      % (d[0] / b[0], d[1] / b[1], b[1] / d[1], d[2] / b[2], b[2] / d[2]))
PY
