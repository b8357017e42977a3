#!/usr/bin/env bash
# compose/local/status.sh - what runs in the local stack: each process, PostgreSQL, the
# queue's depth, and where the Dagster UI is. Exit 0 when everything runs, 1 otherwise.
set -uo pipefail

# shellcheck source=compose/local/lib.sh
. "$(dirname "$0")/lib.sh"

[ -f "$state/env" ] || { echo "no local stack in $state (compose/local/up.sh starts one)"; exit 1; }
load_env
rc=0
show() { printf '  %-10s %s\n' "$1" "$2"; }
echo "local stack in $state"
for f in "$state"/pids/*.pid; do
	[ -e "$f" ] || continue
	name=$(basename "$f" .pid)
	if alive "$name"; then show "$name" "running (pid $(cat "$f"))"; else show "$name" "STOPPED"; rc=1; fi
done
if harness_as_pg_owner "$(harness_pg_bin)/pg_ctl" -D "$state/pg" status >/dev/null 2>&1; then
	show postgres "running (port $(cat "$state/pg.port"))"
else
	show postgres "STOPPED"
	rc=1
fi
if "$dtq" queue stats >/dev/null 2>&1; then
	echo "queue $DTQ_QUEUE_URL"
	"$dtq" queue stats | sed 's/^/  /'
fi
echo "Dagster UI: $DTQ_DEMO_UI"
exit $rc
