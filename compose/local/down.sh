#!/usr/bin/env bash
# compose/local/down.sh - stop the local stack started by up.sh: the dtq workers first (they
# let running steps finish within their shutdown grace, then stop them and hand their tasks
# back), then Dagster's daemon and webserver, moto_server and PostgreSQL.
#
#   compose/local/down.sh [--purge]     --purge also deletes .demo/ (data, logs, settings)
set -euo pipefail

# shellcheck source=compose/local/lib.sh
. "$(dirname "$0")/lib.sh"

purge=false
case ${1:-} in
--purge) purge=true ;;
"") ;;
-h | --help) sed -n '2,6p' "$0"; exit 0 ;;
*) die "unknown option $1 (see --help)" ;;
esac

if [ -d "$state/pids" ]; then
	for f in "$state"/pids/worker*.pid; do
		[ -e "$f" ] || continue
		stop_process "$(basename "$f" .pid)" 60 &
	done
	wait
	for name in daemon webserver moto; do
		stop_process "$name" 30
	done
fi
if [ -f "$state/pg/postmaster.pid" ]; then
	pg_bin=$(harness_pg_bin)
	harness_as_pg_owner "$pg_bin/pg_ctl" -D "$state/pg" -m fast -w stop >/dev/null || true
fi
if $purge; then
	rm -rf "$state"
	say "stopped; $state removed"
else
	say "stopped (data kept in $state; --purge removes it)"
fi
