#!/usr/bin/env bash
# `dtq queue` end to end against the harness's moto_server: create (FIFO +
# DLQ, idempotent), send, stats, peek, a message landing in the DLQ after
# maxReceiveCount receives, redrive bringing it back, purge, exit codes.
set -uo pipefail
. "$(dirname "$0")/../lib/harness.sh"
harness_init
harness_start_moto >/dev/null || exit 1
dtq=${DTQ_BIN:-build/dtq}
tmp=$DTQ_TEST_TMP/queue.$$
mkdir -p "$tmp"
export AWS_ENDPOINT_URL=$DTQ_TEST_SQS_ENDPOINT DTQ_LOG_LEVEL=warn DTQ_HTTP_RETRY_BASE=50ms
unset DTQ_QUEUE_URL DTQ_DLQ_URL
q=dtqq-$$-$RANDOM

expect_exit() { # expect_exit CODE command...: output in $tmp/out
	local want=$1
	shift
	"$@" >"$tmp/out" 2>&1
	local rc=$?
	[ "$rc" -eq "$want" ] || { echo "exit $rc, wanted $want"; cat "$tmp/out"; return 1; }
}
has() { grep -qF -- "$1" "$tmp/out" || { echo "output lacks: $1"; cat "$tmp/out"; return 1; }; }
json() { # json EXPR: evaluates a Python expression on the JSON output `j`
	harness_python -c "import json,sys; j=json.load(open('$tmp/out')); sys.exit(0 if ($1) else 1)" ||
		{ echo "not true: $1"; cat "$tmp/out"; return 1; }
}

for sub in create stats send peek redrive purge; do
	check "dtq queue --help documents $sub" bash -c "$dtq queue --help | grep -q '^       dtq queue $sub\|^usage: dtq queue $sub'"
done
check "--help documents the exit codes" bash -c "$dtq queue --help | grep -q '4 the queue or its DLQ does not exist'"
check "no subcommand exits 2" expect_exit 2 "$dtq" queue
check "unknown subcommand exits 2" expect_exit 2 "$dtq" queue frobnicate

check "create a FIFO queue with a DLQ" expect_exit 0 \
	"$dtq" queue create "$q" --fifo --dlq "$q-dlq" --max-receive 2 --visibility 30s --json
check "... prints both URLs" json "j['queue_url'].endswith('/$q.fifo') and j['dlq_url'].endswith('/$q-dlq.fifo')"
cp "$tmp/out" "$tmp/first"
check "create again is idempotent" expect_exit 0 \
	"$dtq" queue create "$q" --fifo --dlq "$q-dlq" --max-receive 2 --visibility 30s --json
check "... with the same URLs" cmp "$tmp/first" "$tmp/out"
check "create with other attributes exits 1" expect_exit 1 \
	"$dtq" queue create "$q" --fifo --visibility 5m
check "... saying so" has "already exists with other attributes"
check "--max-receive without --dlq exits 2" expect_exit 2 "$dtq" queue create x --max-receive 3

seq 1 25 | sed 's/^/{"task_id": "t/; s/$/"}/' >"$tmp/lines"
printf '\n' >>"$tmp/lines"
check "send 25 lines (batched)" expect_exit 0 "$dtq" queue send "$q.fifo" --group-id g1 --json <"$tmp/lines"
check "... all sent, the empty line skipped" json "j['sent'] == 25 and j['failed'] == 0 and j['skipped_empty'] == 1"
check "the same lines again are deduplicated (FIFO)" expect_exit 0 "$dtq" queue send "$q.fifo" --group-id g1 <"$tmp/lines"
check "stats shows 25 visible" expect_exit 0 "$dtq" queue stats "$q.fifo" --json
check "... and an empty DLQ" json "j['visible'] == 25 and j['in_flight'] == 0 and j['dlq_visible'] == 0"
check "stats in text" expect_exit 0 "$dtq" queue stats "$q.fifo"
check "... names the DLQ" has "dlq        $DTQ_TEST_SQS_ENDPOINT/123456789012/$q-dlq.fifo"

check "peek 3" expect_exit 0 "$dtq" queue peek "$q.fifo" --max 3 --json
check "... returns 3 messages in order, received once" \
	json "[m['body'] for m in j['messages']] == ['{\"task_id\": \"t1\"}', '{\"task_id\": \"t2\"}', '{\"task_id\": \"t3\"}'] and all(m['receive_count'] == 1 for m in j['messages'])"
check "... and makes them visible again" bash -c "$dtq queue stats $q.fifo --json | grep -q '\"visible\":25,\"in_flight\":0'"

# maxReceiveCount 2: the second peek was the last receive; a third moves
# the group's messages to the DLQ.
check "peek a second time" expect_exit 0 "$dtq" queue peek "$q.fifo" --max 3
check "... text shows receive counts" has "receives 2"
check "a third receive moves them to the DLQ" expect_exit 0 "$dtq" queue peek "$q.fifo" --max 3
check "the DLQ now holds 3" bash -c "$dtq queue stats $q.fifo --json | grep -q '\"dlq_visible\":3'"
check "redrive --max 2" expect_exit 0 "$dtq" queue redrive "$q.fifo" --max 2 --json
check "... moved 2" json "j['moved'] == 2 and j['failed'] == 0"
check "redrive the rest" expect_exit 0 "$dtq" queue redrive "$q.fifo"
check "... moved 1" has "moved 1 message from"
check "the DLQ is empty and the queue whole again" expect_exit 0 "$dtq" queue stats "$q.fifo" --json
check "... 25 visible, 0 in the DLQ" json "j['visible'] + j['in_flight'] == 25 and j['dlq_visible'] == 0"
check "redrive with nothing to move" expect_exit 0 "$dtq" queue redrive "$q.fifo"
check "... moved 0" has "moved 0 messages"

check "a queue URL from the setting" expect_exit 0 env DTQ_QUEUE_URL="$DTQ_TEST_SQS_ENDPOINT/123456789012/$q.fifo" "$dtq" queue stats
check "purge without --yes exits 2" expect_exit 2 "$dtq" queue purge "$q.fifo"
check "... and says why" has "repeat with --yes"
check "purge --yes" expect_exit 0 "$dtq" queue purge "$q.fifo" --yes
check "... empties the queue" bash -c "$dtq queue stats $q.fifo --json | grep -q '\"visible\":0,\"in_flight\":0'"

check "a standard queue without DLQ" expect_exit 0 "$dtq" queue create "$q-std"
printf 'a\nb\n' >"$tmp/two"
check "send with --delay" expect_exit 0 "$dtq" queue send "$q-std" --delay 60 <"$tmp/two"
check "... counts as delayed" bash -c "$dtq queue stats $q-std --json | grep -q '\"delayed\":2'"
check "stats shows no DLQ" expect_exit 0 "$dtq" queue stats "$q-std"
check "... as none" has "dlq        none"
check "redrive without a DLQ exits 2" expect_exit 2 "$dtq" queue redrive "$q-std"
check "--delay on a FIFO queue exits 2" expect_exit 2 "$dtq" queue send "$q.fifo" --delay 5 <"$tmp/two"
check "a missing queue exits 4" expect_exit 4 "$dtq" queue stats "$q-missing"
check "... with the AWS code" has "AWS.SimpleQueueService.NonExistentQueue"
check "no queue at all exits 2" expect_exit 2 "$dtq" queue stats
[ "$harness_failures" -eq 0 ]
