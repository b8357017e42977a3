#!/usr/bin/env bash
# `dtq migrate` and `dtq ledger` as an operator uses them, against the
# harness's PostgreSQL, in a schema of their own.
set -uo pipefail
. "$(dirname "$0")/../lib/harness.sh"
harness_init
harness_start_pg || { echo "not ok - PostgreSQL starts"; exit 1; }
dtq=${DTQ_BIN:-build/dtq}
tmp=$(mktemp -d)
schema="cli_$$_$RANDOM"
export DTQ_LEDGER_DSN=$DTQ_TEST_PG_DSN DTQ_LEDGER_SCHEMA=$schema DTQ_LOG_LEVEL=warn
cleanup() {
	psql "$DTQ_TEST_PG_DSN" -XqAtc "DROP SCHEMA IF EXISTS \"$schema\" CASCADE" >/dev/null 2>&1
	rm -rf "$tmp"
}
trap 'cleanup; harness_cleanup' EXIT

sql() { psql "$DTQ_TEST_PG_DSN" -XqAt -v ON_ERROR_STOP=1 -c "SET search_path TO \"$schema\"" -c "$1"; }
expect_exit() { # expect_exit CODE command...
	local want=$1
	shift
	"$@" >"$tmp/out" 2>&1
	local rc=$?
	[ "$rc" -eq "$want" ] || { echo "exit $rc, wanted $want"; cat "$tmp/out"; return 1; }
}
output_has() { grep -qF -- "$1" "$tmp/out" || { echo "output lacks: $1"; cat "$tmp/out"; return 1; }; }
output_lacks() { ! grep -qF -- "$1" "$tmp/out" || { echo "output has: $1"; cat "$tmp/out"; return 1; }; }
json() { # json PYTHON-EXPR: evaluated with j = the JSON in $tmp/out
	python3 -c "import json,sys; j=json.load(open('$tmp/out')); sys.exit(0 if ($1) else 1)" ||
		{ echo "JSON check failed: $1"; cat "$tmp/out"; return 1; }
}

check "dtq migrate --help documents --dry-run, --status and the exit codes" bash -c "
	$dtq migrate --help | grep -q -- '--dry-run' && $dtq migrate --help | grep -q -- '--status' &&
	$dtq migrate --help | grep -q 'Exit codes'"
check "dtq ledger --help documents every command" bash -c "
	h=\$($dtq ledger --help) && for c in 'status KEY' 'list \[--state' stats 'cancel KEY' 'reap \[--dry-run' -- --json; do
		grep -q -- \"\$c\" <<<\"\$h\" || { echo \"missing \$c\"; exit 1; }; done"
check "dtq --help lists migrate and ledger" bash -c "$dtq --help | grep -q '^  migrate ' && $dtq --help | grep -q '^  ledger '"

# the newest migration this dtq knows (the checks below hold for any)
latest=$("$dtq" migrate --status --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["latest"])')

check "dtq ledger on an unmigrated schema exits 1" expect_exit 1 "$dtq" ledger stats
check "... and says to run dtq migrate" output_has "run \`dtq migrate\`"
check "dtq migrate --status before: exit 3, pending" expect_exit 3 "$dtq" migrate --status
check "... lists the pending migration" output_has "pending: 1"
check "dtq migrate --dry-run shows the SQL" expect_exit 0 "$dtq" migrate --dry-run
check "... of migration 1" output_has "would apply migration 1"
check "dtq migrate creates the schema" expect_exit 0 "$dtq" migrate
check "... from version 0 to $latest" output_has "migrated from version 0 to $latest"
check "dtq migrate again is a no-op" expect_exit 0 "$dtq" migrate
check "... up to date" output_has "up to date at version $latest"
check "dtq migrate --status --json" expect_exit 0 "$dtq" migrate --status --json
check "... says version $latest, nothing pending" json "j['version'] == $latest and j['pending'] == []"
check "dtq migrate rejects an unknown flag with exit 2" expect_exit 2 "$dtq" migrate --frobnicate

sql "INSERT INTO tasks (key, task_name, state, created_at, updated_at)
       VALUES ('q1', 'dtq.exec', 'queued', now() - interval '5 minutes', now() - interval '5 minutes');
     INSERT INTO tasks (key, task_name, state, fence, attempts, owner, lease_until, started_at)
       VALUES ('r-old', 'dagster.execute_step', 'running', 1, 1, 'w-a', now() + interval '1 minute', now() - interval '20 minutes'),
              ('r-new', 'dagster.execute_step', 'running', 1, 1, 'w-a', now() + interval '1 minute', now()),
              ('r-expired', 'dtq.exec', 'running', 1, 1, 'w-dead', now() - interval '1 second', now() - interval '2 minutes');
     INSERT INTO tasks (key, task_name, state, fence, attempts, exit_code, finished_at, labels)
       VALUES ('done', 'dtq.exec', 'succeeded', 1, 1, 0, now(), '{\"run_id\": \"r-1\"}');
     INSERT INTO tasks (key, task_name) VALUES (E'odd''key\nwith newline', 'dtq.exec');
     INSERT INTO attempts (key, fence, worker) VALUES ('r-expired', 1, 'w-dead');"

check "ledger status KEY" expect_exit 0 "$dtq" ledger status done
check "... shows state, exit code and labels" bash -c "grep -Eq '^state +succeeded' $tmp/out &&
	grep -Eq '^exit_code +0' $tmp/out && grep -q 'run_id' $tmp/out"
check "ledger status of an unknown key exits 1" expect_exit 1 "$dtq" ledger status done nope
check "... naming it" output_has "unknown key: nope"
check "ledger --json status KEY KEY" expect_exit 0 "$dtq" ledger --json status q1 r-old
check "... is an array of both tasks" json "[t['key'] for t in j] == ['q1', 'r-old'] and j[1]['owner'] == 'w-a' and j[0]['state'] == 'queued'"
check "ledger status escapes control characters in text" expect_exit 0 "$dtq" ledger status "odd'key
with newline"
check "... as \\x0a" output_has "odd'key\\x0awith newline"
check "ledger status --json keeps the key exact" bash -c "
	$dtq ledger status --json \"odd'key
with newline\" | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)[0][\"key\"] == \"odd\\x27key\\nwith newline\" else 1)'"

check "ledger list --state running --older-than 10m" expect_exit 0 "$dtq" ledger list --state running --older-than 10m
check "... lists the old running task" output_has "r-old"
check "... and not the new one" output_lacks "r-new"
check "ledger list --json --state queued" expect_exit 0 "$dtq" ledger list --json --state queued
check "... returns the queued tasks" json "sorted(t['key'] for t in j) == ['odd\\'key\\nwith newline', 'q1']"
check "ledger list --state bogus exits 2" expect_exit 2 "$dtq" ledger list --state bogus
check "ledger list --older-than nonsense exits 2" expect_exit 2 "$dtq" ledger list --older-than soon

check "ledger stats" expect_exit 0 "$dtq" ledger stats
check "... counts running and expired leases" bash -c "grep -Eq '^running +3\$' $tmp/out && grep -Eq '^expired_leases +1\$' $tmp/out"
check "ledger --json stats" expect_exit 0 "$dtq" ledger --json stats
check "... counts per state and the oldest queued" json "j['states'] == {'queued': 2, 'running': 3, 'succeeded': 1, 'failed': 0, 'dead': 0, 'cancelled': 0} and j['oldest_queued_ms'] >= 299000"

check "ledger reap --dry-run" expect_exit 0 "$dtq" ledger reap --dry-run
check "... would requeue the expired lease" output_has "(dry run) requeued  1/3 r-expired"
check "... and changed nothing" bash -c "[ \"\$(psql '$DTQ_TEST_PG_DSN' -XAtc \"SELECT state FROM \\\"$schema\\\".tasks WHERE key = 'r-expired'\")\" = running ]"
check "ledger --json reap" expect_exit 0 "$dtq" ledger --json reap
check "... requeued the expired lease only" json "[(t['key'], t['action']) for t in j['tasks'] if t['action'] != 'resend'] == [('r-expired', 'requeued')] and not j['dry_run']"
check "... the row is queued, lease cleared, attempt closed" bash -c "
	[ \"\$(psql '$DTQ_TEST_PG_DSN' -XAtc \"SELECT state, owner IS NULL, lease_until IS NULL FROM \\\"$schema\\\".tasks WHERE key = 'r-expired'\")\" = 'queued|t|t' ] &&
	[ \"\$(psql '$DTQ_TEST_PG_DSN' -XAtc \"SELECT outcome FROM \\\"$schema\\\".attempts WHERE key = 'r-expired'\")\" = lost ]"
check "ledger reap --resend-after 1m lists unsent queued tasks" expect_exit 0 "$dtq" ledger reap --resend-after 1m
check "... q1 (5 minutes old, never sent)" output_has "resend    0/3 q1"

check "ledger cancel of a queued task" expect_exit 0 "$dtq" ledger cancel q1
check "... cancels it" output_has "q1: cancelled"
check "ledger cancel of a running task" expect_exit 0 "$dtq" ledger cancel r-new
check "... flags it" output_has "r-new: cancel requested"
check "ledger --json cancel of a finished and an unknown task exits 1" expect_exit 1 "$dtq" ledger --json cancel done nope
check "... with their outcomes" json "[(o['key'], o['outcome']) for o in j] == [('done', 'ALREADY_DONE'), ('nope', 'UNKNOWN_KEY')]"
check "ledger with no command exits 2" expect_exit 2 "$dtq" ledger
check "ledger with an unknown command exits 2" expect_exit 2 "$dtq" ledger frob

exit 0
