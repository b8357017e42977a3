#!/usr/bin/env bash
# tests/bench/ledger_bench.sh - ledger cycles/s, async client vs naive blocking.
#
#   tests/bench/ledger_bench.sh [ledger_bench options...]
#
# Builds build/libdtq.a and build/bench/ledger_bench, starts a private
# PostgreSQL (initdb in a temp dir, unix socket only, stopped on exit), and
# runs the benchmark against it. Not part of `make test`.
#
# Server settings: fsync on, synchronous_commit off by default (commits do not
# wait for the WAL flush; the WAL writer flushes within 200 ms), as a queue
# would usually be run. BENCH_SYNCHRONOUS_COMMIT=on measures the fully
# durable setting instead. Options go to ledger_bench (see its --help line):
# --keys N (per async run, default 20000), --naive-keys N (5000),
# --conns 1,4,16, --depths 1,8, --concurrency 64, --seconds 5 (cap per ledger
# run), --raw-seconds 2 (per raw-client run; 0 skips them). The server's CPU
# time per cycle (postmaster and all its processes, from /proc) is printed
# next to the client's: on a shared machine it is steadier than cycles/s.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
BUILD=${BUILD:-build}

make -s -j2 "$BUILD/libdtq.a"
mkdir -p "$BUILD/bench"
cflags=$(pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
libs=$(pkg-config --libs libcurl libcjson libpq 2>/dev/null || echo -lcurl -lcjson -lpq)
# shellcheck disable=SC2086
cc -std=c11 -O2 -g -Wall -Wextra -Iinclude -D_GNU_SOURCE $cflags \
	-o "$BUILD/bench/ledger_bench" tests/bench/ledger_bench.c "$BUILD/libdtq.a" \
	$libs -lmbedcrypto -lev -lm

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$pgbin" ] || { echo "ledger_bench: no PostgreSQL under /usr/lib/postgresql" >&2; exit 1; }
tmp=$(mktemp -d /tmp/dtq-bench.XXXXXX)
chmod 755 "$tmp"
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
	as_owner "$pgbin/pg_ctl" -D "$tmp/pg" -m fast -w stop >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir "$tmp/pg"
[ "$(id -u)" -ne 0 ] || chown postgres "$tmp/pg"
as_owner "$pgbin/initdb" -D "$tmp/pg" -A trust -U postgres -E UTF8 --no-sync >"$tmp/initdb.log" 2>&1 ||
	{ cat "$tmp/initdb.log" >&2; exit 1; }
port=54329
as_owner "$pgbin/pg_ctl" -D "$tmp/pg" -w -l "$tmp/pg/server.log" \
	-o "-k $tmp/pg -p $port -c listen_addresses='' -c max_connections=100 \
	    -c synchronous_commit=${BENCH_SYNCHRONOUS_COMMIT:-off} -c shared_buffers=256MB" \
	start >/dev/null || { tail -n 20 "$tmp/pg/server.log" >&2; exit 1; }

echo "# PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}'), $(nproc) CPUs," \
	"synchronous_commit=${BENCH_SYNCHRONOUS_COMMIT:-off}, fsync=on, unix socket," \
	"load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/bench/ledger_bench" --dsn "host=$tmp/pg port=$port user=postgres dbname=postgres" \
	--server-pid "$(head -n 1 "$tmp/pg/postmaster.pid")" "$@"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
