#!/usr/bin/env bash
# shim.sh - dtq executor-shim against a real PostgreSQL ledger and moto_server:
# submit (ledger row, TaskIQ message, signature, FIFO ids, payload_ref),
# idempotency and KEY_REUSE, status, cancel, --serve framing and throughput,
# and what happens when the ledger, the schema or SQS is missing.
#
# Signatures are checked the way the envelope defines them (src/task.c,
# task_sign): labels.dtq_sig = "v1:" + hex(HMAC-SHA256(signing key, B)), where
# B is the body without labels.dtq_sig and labels_types.dtq_sig, printed
# compactly in its own key order (cJSON's unformatted print, which is
# Python's json.dumps(separators=(",", ":"), ensure_ascii=False) in UTF-8).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
# shellcheck source=tests/lib/harness.sh
. tests/lib/harness.sh
harness_init
harness_start_pg || { echo "not ok - PostgreSQL starts"; exit 1; }
harness_start_moto || { echo "not ok - moto_server starts"; exit 1; }

DTQ_BIN=${DTQ_BIN:-$top/build/dtq}
T=$DTQ_TEST_TMP/shim.$$
mkdir -p "$T"
schema=shim_$$
signing_key="shim-test-signing-key-$$"

export DTQ_LEDGER_DSN=$DTQ_TEST_PG_DSN DTQ_LEDGER_SCHEMA=$schema
export DTQ_AWS_ENDPOINT_URL=$DTQ_TEST_SQS_ENDPOINT DTQ_SIGNING_KEY=$signing_key
export DTQ_HTTP_MAX_RETRIES=1 DTQ_HTTP_RETRY_BASE=20ms DTQ_HTTP_CONNECT_TIMEOUT=1s
export DTQ_HTTP_TIMEOUT=5s DTQ_LOG_LEVEL=warn
unset DTQ_QUEUE_URL

shim() { "$DTQ_BIN" executor-shim "$@" 2>>"$T/shim.err"; }
sql() { psql "$DTQ_TEST_PG_DSN" -XAtqc "$1"; }

# jtest JSON EXPR: the Python expression over r (the parsed JSON) is true.
jtest() {
	printf '%s' "$1" | harness_python -c '
import json, sys
r = json.load(sys.stdin)
ok = eval("(" + sys.argv[1].strip() + "\n)")
if not ok:
    print("got:", json.dumps(r)[:2000])
sys.exit(0 if ok else 1)' "$2"
}

# sqs_tool CMD ARGS: queue chores in boto3 (tests/integration/shim_sqs.py).
sqs_tool() { harness_python "$top/tests/integration/shim_sqs.py" "$@"; }

# ---- set-up ------------------------------------------------------------------
check "dtq migrate creates the ledger schema" "$DTQ_BIN" migrate
queue=$(sqs_tool create "shim-$$") || { echo "not ok - create the test queue"; exit 1; }
fifo=$(sqs_tool create "shim-$$.fifo") || { echo "not ok - create the FIFO queue"; exit 1; }
bulk=$(sqs_tool create "shim-bulk-$$") || { echo "not ok - create the bulk queue"; exit 1; }
export DTQ_QUEUE_URL=$queue

task() { # task KEY ARGS [extra JSON fields [extra kwargs]]
	printf '{"key": "%s", "task_name": "dagster.execute_step", "kwargs": {"execute_step_args": "%s"%s}, "labels": {"run_id": "run-%s", "step_key": "step_a", "attempt": "0"}%s}' \
		"$1" "$2" "${4:-}" "$$" "${3:-}"
}
k1="run-$$/step_a/0"

# ---- submit ------------------------------------------------------------------
out=$(task "$k1" eJwLAAAAAAE= ', "max_attempts": 4, "timeout": 90' ', "note": "kept"' | shim submit)
rc=$?
check "submit exits 0" test "$rc" -eq 0
check "submit answers created, queued and a message id" jtest "$out" \
	'r["key"] == "'"$k1"'" and r["created"] is True and r["state"] == "queued" and len(r["message_id"]) > 8'
mid=$(printf '%s' "$out" | harness_python -c 'import json,sys; print(json.load(sys.stdin)["message_id"])')
check "the ledger row is queued, marked sent with the message id, max_attempts 4" \
	test "$(sql "select state, sent_at is not null, message_id, max_attempts, payload is not null from $schema.tasks where key = '$k1'")" = "queued|t|$mid|4|t"
sqs_tool drain "$queue" >"$T/msgs1.json"
check "the message is a TaskIQ message with dtq's labels and the request's" \
	harness_python "$top/tests/integration/shim_sqs.py" check-message "$T/msgs1.json" "$k1" \
	"$signing_key" run_id=run-$$ step_key=step_a attempt=0 timeout=90 max_attempts=4 \
	kwargs.execute_step_args=eJwLAAAAAAE= kwargs.note=kept message_id="$mid"
check "a tampered message fails the same signature check" \
	harness_python "$top/tests/integration/shim_sqs.py" check-tamper "$T/msgs1.json" "$signing_key"

out=$(task "$k1" eJwLAAAAAAE= ', "max_attempts": 4, "timeout": 90' ', "note": "kept"' | shim submit)
rc=$?
check "the same key and payload again: exit 0, created false, still queued" jtest "$out" \
	'r["created"] is False and r["state"] == "queued" and r["message_id"] == "'"$mid"'" and '"$rc"' == 0'
check "... and no second message (the first was sent)" \
	test "$(sqs_tool drain "$queue" | harness_python -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 0
out=$(task "$k1" eJwLAAAAAAF= | shim submit)
rc=$?
check "the same key with another payload: KEY_REUSE, exit 1" jtest "$out" \
	'r["error"]["code"] == "KEY_REUSE" and r["error"]["retryable"] is False and '"$rc"' == 1'
out=$(printf '{"key": "k", "task_name": "rm -rf"}' | shim submit)
rc=$?
check "a bad submit: BAD_REQUEST, exit 1" jtest "$out" 'r["error"]["code"] == "BAD_REQUEST" and '"$rc"' == 1'
out=$(printf 'not json' | shim submit)
rc=$?
check "submit of a stdin that is not JSON: BAD_REQUEST, exit 1" jtest "$out" \
	'r["error"]["code"] == "BAD_REQUEST" and '"$rc"' == 1'

# ---- status ------------------------------------------------------------------
out=$(shim status "$k1" "no-such-key" "$k1")
rc=$?
check "status of known and unknown keys, in the order asked" jtest "$out" '
	[t["key"] for t in r["tasks"]] == ["'"$k1"'", "no-such-key", "'"$k1"'"] and '"$rc"' == 0 and
	r["tasks"][1] == {"key": "no-such-key", "found": False} and
	all(r["tasks"][0][f] == v for f, v in [("found", True), ("state", "queued"),
	    ("attempts", 0), ("max_attempts", 4), ("fence", 0), ("cancel_requested", False),
	    ("lease_expired", False), ("worker", None), ("exit_code", None), ("error", None),
	    ("started_at", None), ("finished_at", None)]) and
	r["tasks"][0]["created_at"].endswith("Z") and len(r["tasks"][0]["created_at"]) == 24'

# A worker claims a task (the ledger's own claim, as the worker calls it).
k2="run-$$/step_b/0"
task "$k2" eJwLAAAAAAI= | shim submit >/dev/null
sql "insert into $schema.workers (id, host, pid) values ('w-$$', 'host-a', 4242)
     on conflict (id) do update set heartbeat_at = now(), state = 'running'" >/dev/null
claim=$(sql "select c.outcome from $schema.claim_task('$k2', 'w-$$', 60000, NULL, false, NULL, NULL, NULL, NULL) as c")
check "the ledger's claim takes the second task" test "$claim" = CLAIMED
out=$(shim status "$k2")
check "status of a running task names its live worker" jtest "$out" '
	(lambda t: t["state"] == "running" and t["attempts"] == 1 and t["fence"] == 1 and
	 t["lease_expired"] is False and t["started_at"] is not None and
	 t["worker"] == {"id": "w-'"$$"'", "host": "host-a", "pid": 4242, "alive": True})(r["tasks"][0])'
sql "update $schema.tasks set lease_until = now() - interval '1 second' where key = '$k2';
     update $schema.workers set heartbeat_at = now() - interval '1 hour' where id = 'w-$$'" >/dev/null
out=$(shim status "$k2")
check "status of a running task whose lease ran out: lease_expired, worker not alive" jtest "$out" '
	r["tasks"][0]["lease_expired"] is True and r["tasks"][0]["worker"]["alive"] is False'
# A new process under the same worker id (a container restarted with its hostname and pid)
# heartbeats; the lost claim is still not alive.
sql "update $schema.workers set started_at = now(), heartbeat_at = now() where id = 'w-$$'" >/dev/null
out=$(shim status "$k2")
check "a worker id re-registered after the claim does not keep the lost claim alive" jtest "$out" '
	r["tasks"][0]["lease_expired"] is True and r["tasks"][0]["worker"]["alive"] is False'
sql "update $schema.tasks set lease_until = now() + interval '1 minute' where key = '$k2'" >/dev/null

# ---- cancel ------------------------------------------------------------------
out=$(shim cancel "$k2")
check "cancel of a running task: flagged, still running" jtest "$out" \
	'r == {"key": "'"$k2"'", "state": "running", "cancel_requested": True}'
out=$(shim cancel "$k1")
rc=$?
check "cancel of a queued task: cancelled at once, exit 0" jtest "$out" \
	'r == {"key": "'"$k1"'", "state": "cancelled", "cancel_requested": True} and '"$rc"' == 0'
check "... and the ledger row is cancelled" \
	test "$(sql "select state from $schema.tasks where key = '$k1'")" = cancelled
out=$(shim cancel "$k1")
check "cancel of a finished task leaves it as it is" jtest "$out" \
	'r["state"] == "cancelled" and r["key"] == "'"$k1"'"'
out=$(shim cancel "no-such-key")
rc=$?
check "cancel of an unknown key: NOT_FOUND, exit 1" jtest "$out" \
	'r["error"]["code"] == "NOT_FOUND" and r["error"]["retryable"] is False and '"$rc"' == 1'
out=$(shim ping)
latest=$("$DTQ_BIN" migrate --status --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["latest"])')
check "ping answers the version and the schema version" jtest "$out" \
	'r["version"].startswith("dtq ") and r["schema_version"] == '"$latest"
shim status 2>/dev/null
check "status without a key is a usage error (exit 2)" test $? -eq 2
"$DTQ_BIN" executor-shim frobnicate >/dev/null 2>&1
check "an unknown subcommand is a usage error (exit 2)" test $? -eq 2
DTQ_QUEUE_URL= "$DTQ_BIN" executor-shim --serve </dev/null >/dev/null 2>&1
check "--serve without queue_url is a configuration error (exit 2)" test $? -eq 2

# ---- FIFO --------------------------------------------------------------------
long_step=$(printf 's%.0s' $(seq 1 150))
kf1="run-$$/step_f/0" kf2="run-$$/$long_step/0"
task "$kf1" eJwLAAAAAAM= | DTQ_QUEUE_URL=$fifo shim submit >/dev/null
task "$kf2" eJwLAAAAAAM= | DTQ_QUEUE_URL=$fifo shim submit >/dev/null
sqs_tool drain "$fifo" >"$T/fifo.json"
check "FIFO: a key is its own message group and deduplication id" jtest "$(cat "$T/fifo.json")" '
	{m["labels"]["dtq_key"]: (m["group_id"], m["dedup_id"]) for m in r}["'"$kf1"'"] == ("'"$kf1"'", "'"$kf1"'")'
kf2_id="sha256:$(printf '%s' "$kf2" | sha256sum | cut -d' ' -f1)"
check "FIFO: a key over 128 characters is replaced by sha256:<hex> in both ids" jtest "$(cat "$T/fifo.json")" '
	{m["labels"]["dtq_key"]: (m["group_id"], m["dedup_id"]) for m in r}["'"$kf2"'"] == ("'"$kf2_id"'", "'"$kf2_id"'")'

# ---- payload_ref ---------------------------------------------------------------
# The envelope caps execute_step_args at 128 KiB (Linux's limit on one
# environment string, which is how the worker hands it to Dagster), so a
# message over SQS's 1 MiB cannot happen with the default queue size; a queue
# whose MaximumMessageSize is 64 KiB makes a 100 KiB payload go to the ledger.
small=$(sqs_tool create "shim-small-$$" 65536) || echo "not ok - create the 64 KiB queue"
make_big() { # make_big KEY RAW_BYTES: a submit whose payload has RAW_BYTES * 4/3 bytes
	harness_python - "$1" "$2" "$$" <<'PY'
import base64, json, os, sys
args = base64.b64encode(os.urandom(int(sys.argv[2]))).decode()
print(json.dumps({"key": sys.argv[1], "task_name": "dagster.execute_step",
                  "kwargs": {"execute_step_args": args},
                  "labels": {"run_id": "run-" + sys.argv[3], "step_key": "step_big"}}))
PY
}
kbig="run-$$/step_big/0"
make_big "$kbig" $((75 * 1024)) >"$T/big.json"
out=$(DTQ_QUEUE_URL=$small shim submit <"$T/big.json")
check "a payload larger than the queue's message size is submitted" jtest "$out" 'r["created"] is True'
sqs_tool drain "$small" >"$T/big_msg.json"
check "its message carries payload_ref and payload_sha256 instead of the payload, fits, is signed" \
	harness_python "$top/tests/integration/shim_sqs.py" check-message "$T/big_msg.json" "$kbig" \
	"$signing_key" payload_ref="$kbig" kwargs= max_body=65536
sha=$(harness_python -c '
import json, sys
print([m for m in json.load(open(sys.argv[1])) if m["labels"]["dtq_key"] == sys.argv[2]][0]["labels"]["payload_sha256"])' "$T/big_msg.json" "$kbig")
check "the ledger keeps the payload, whose SHA-256 is the message's payload_sha256" \
	test "$(sql "select octet_length(payload) > 100000, encode(sha256(payload), 'hex') from $schema.tasks where key = '$kbig'")" = "t|$sha"
check "the stored payload is {args, kwargs} with the request's execute_step_args" \
	bash -c "psql '$DTQ_TEST_PG_DSN' -XAtqc \"select convert_from(payload, 'UTF8') from $schema.tasks where key = '$kbig'\" |
		'$DTQ_VENV/bin/python' -c 'import json,sys; p=json.load(sys.stdin); r=json.load(open(\"$T/big.json\"));
assert p == {\"args\": [], \"kwargs\": r[\"kwargs\"]}, list(p)'"
make_big "run-$$/step_huge/0" $((900 * 1024)) >"$T/huge.json"
out=$(shim submit <"$T/huge.json")
rc=$?
check "a payload over 1 MiB is refused (BAD_REQUEST, exit 1)" jtest "$out" \
	'r["error"]["code"] == "BAD_REQUEST" and "oversize" in r["error"]["message"] and '"$rc"' == 1'
make_big "run-$$/step_200k/0" $((150 * 1024)) >"$T/200k.json"
out=$(shim submit <"$T/200k.json")
rc=$?
check "execute_step_args over 128 KiB is refused: no child could receive it" jtest "$out" \
	'r["error"]["code"] == "BAD_REQUEST" and "131072" in r["error"]["message"] and '"$rc"' == 1'
check "... and neither leaves a ledger row" \
	test "$(sql "select count(*) from $schema.tasks where key in ('run-$$/step_huge/0', 'run-$$/step_200k/0')")" = 0

# ---- --serve: framing and throughput -------------------------------------------
printf '%s\n' '{"id": 1, "op": "ping"}' 'garbage' '' '[1, 2]' '{"id": 5, "op": "nope"}' \
	'{"id": "six", "op": "status", "keys": ["'"$k1"'"]}' '{"id": 7, "op": "cancel"}' >"$T/bad.in"
shim --serve <"$T/bad.in" >"$T/bad.out"
rc=$?
check "--serve answers every line, bad ones included, and exits 0 at EOF" test "$rc" -eq 0 -a \
	"$(wc -l <"$T/bad.out")" -eq 7
check "--serve: unparseable lines get BAD_REQUEST with id null, the rest their id" \
	jtest "[$(paste -sd, "$T/bad.out")]" '
	[(x["id"], x["ok"], x.get("error", {}).get("code")) for x in r] == [
	 (1, True, None), (None, False, "BAD_REQUEST"), (None, False, "BAD_REQUEST"),
	 (None, False, "BAD_REQUEST"), (5, False, "BAD_REQUEST"), ("six", True, None),
	 (7, False, "BAD_REQUEST")] and r[5]["result"]["tasks"][0]["state"] == "cancelled"'

# timed_serve IN OUT: runs one --serve over IN; sets rc and figures (wall-clock
# requests/s, and the shim's own CPU time per request, which the shared test
# machine's load does not inflate).
timed_serve() {
	local t0 t1 cpu n
	n=$(wc -l <"$1")
	t0=$(date +%s%N)
	cpu=$( { TIMEFORMAT='%3U %3S'; time shim --serve <"$1" >"$2"; } 2>&1)
	rc=$?
	t1=$(date +%s%N)
	figures=$(awk -v n="$n" -v ns="$((t1 - t0))" -v cpu="$cpu" 'BEGIN {
		split(cpu, c, " ");
		printf "%d requests in %.0f ms, %.0f requests/s; shim CPU %.0f us/request",
			n, ns / 1e6, n * 1e9 / ns, (c[1] + c[2]) * 1e6 / n }')
}
for i in $(seq 1 1000); do
	printf '{"id": %d, "op": "status", "keys": ["%s"]}\n' "$i" "$k2"
done >"$T/status.in"
timed_serve "$T/status.in" "$T/status.out"
echo "# --serve status: $figures (one process, one ledger connection)"
check "--serve: 1000 status requests in one process, 1000 answers in order, exit 0" \
	harness_python -c '
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1000, len(lines)
for i, line in enumerate(lines, 1):
    x = json.loads(line)
    assert x["id"] == i and x["ok"] and x["result"]["tasks"][0]["state"] == "running", line
assert sys.argv[2] == "0"' "$T/status.out" "$rc"

for i in $(seq 1 1000); do
	printf '{"id": %d, "op": "submit", "key": "bulk-%d/step/%d", "task_name": "dagster.execute_step", "kwargs": {"execute_step_args": "eJwLAAAAAAE%d"}, "labels": {"run_id": "bulk-%d"}}\n' \
		"$i" "$$" "$i" "$i" "$$"
done >"$T/submit.in"
DTQ_QUEUE_URL=$bulk timed_serve "$T/submit.in" "$T/submit.out"
echo "# --serve submit: $figures (each: ledger insert, SendMessage to moto, mark_sent)"
check "--serve: 1000 submits in one process, all created, exit 0" harness_python -c '
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1000, len(lines)
for i, line in enumerate(lines, 1):
    x = json.loads(line)
    assert x["id"] == i and x["ok"] and x["result"]["created"], line
assert sys.argv[2] == "0"' "$T/submit.out" "$rc"
check "... 1000 rows queued and sent, 1000 messages in the queue" test \
	"$(sql "select count(*) filter (where sent_at is not null) from $schema.tasks where key like 'bulk-$$/%'")/$(sqs_tool count "$bulk")" = "1000/1000"

# ---- --serve as a co-process: the ledger goes away and comes back ----------------
coproc SHIM { exec "$DTQ_BIN" executor-shim --serve 2>>"$T/shim.err"; }
shim_pid=$SHIM_PID
shim_in=${SHIM[1]} shim_out=${SHIM[0]}
ask() { printf '%s\n' "$1" >&"$shim_in" && IFS= read -r -t 60 reply <&"$shim_out" && printf '%s' "$reply"; }
check "co-process: ping" jtest "$(ask '{"id": 1, "op": "ping"}')" 'r["ok"] is True'
harness_stop_pg
out=$(ask '{"id": 2, "op": "status", "keys": ["'"$k2"'"]}')
check "ledger stopped: status answers LEDGER_UNAVAILABLE, retryable" jtest "$out" \
	'r["id"] == 2 and r["error"]["code"] == "LEDGER_UNAVAILABLE" and r["error"]["retryable"] is True'
out=$(ask "$(task "run-$$/step_c/0" eJwLAAAAAAQ= ', "id": 3, "op": "submit"')")
check "ledger stopped: submit answers LEDGER_UNAVAILABLE, retryable" jtest "$out" \
	'r["id"] == 3 and r["error"]["code"] == "LEDGER_UNAVAILABLE" and r["error"]["retryable"] is True'
harness_start_pg >/dev/null 2>&1
out=$(ask '{"id": 4, "op": "status", "keys": ["'"$k2"'"]}')
check "ledger back: the same shim process answers again" jtest "$out" \
	'r["id"] == 4 and r["ok"] is True and r["result"]["tasks"][0]["state"] == "running"'
out=$(ask "$(task "run-$$/step_c/0" eJwLAAAAAAQ= ', "id": 5, "op": "submit"')")
check "ledger back: submit works" jtest "$out" 'r["id"] == 5 and r["result"]["created"] is True'
harness_restart_pg
out=$(ask '{"id": 6, "op": "status", "keys": ["'"$k2"'"]}')
check "after a ledger restart while idle, the next request reconnects at once" jtest "$out" \
	'r["id"] == 6 and r["ok"] is True'
check "the co-process is still the one started first" kill -0 "$shim_pid"

# ---- the same co-process: SQS goes away ------------------------------------------
harness_stop_moto
kq="run-$$/step_q/0"
out=$(ask "$(task "$kq" eJwLAAAAAAU= ', "id": 7, "op": "submit"')")
check "SQS stopped: submit answers QUEUE_UNAVAILABLE, retryable" jtest "$out" \
	'r["id"] == 7 and r["error"]["code"] == "QUEUE_UNAVAILABLE" and r["error"]["retryable"] is True'
check "SQS stopped: the row is registered, queued and unsent" \
	test "$(sql "select state, sent_at is null from $schema.tasks where key = '$kq'")" = "queued|t"
harness_start_moto >/dev/null 2>&1
check "moto back (empty): the queue is made again at the same URL" \
	test "$(sqs_tool create "shim-$$")" = "$queue"
out=$(ask "$(task "$kq" eJwLAAAAAAU= ', "id": 8, "op": "submit"')")
check "SQS back: submitting again sends the unsent row's message (created false)" jtest "$out" \
	'r["id"] == 8 and r["result"]["created"] is False and r["result"]["state"] == "queued" and r["result"]["message_id"]'
check "... the row is now marked sent, and the message is in the queue" \
	test "$(sql "select sent_at is not null from $schema.tasks where key = '$kq'")/$(sqs_tool count "$queue")" = "t/1"
exec {shim_in}>&-
wait "$shim_pid"
check "the co-process exits 0 at the end of its input" test $? -eq 0

# ---- schema not migrated ---------------------------------------------------------
out=$(DTQ_LEDGER_SCHEMA=unmigrated_$$ shim status "$k1")
rc=$?
check "an unmigrated schema: SCHEMA_OUTDATED (not retryable), exit 1" jtest "$out" \
	'r["error"]["code"] == "SCHEMA_OUTDATED" and r["error"]["retryable"] is False and "dtq migrate" in r["error"]["message"] and '"$rc"' == 1'
out=$(printf '%s\n' '{"id": 1, "op": "ping"}' | DTQ_LEDGER_SCHEMA=unmigrated_$$ shim --serve)
check "an unmigrated schema: --serve answers SCHEMA_OUTDATED and goes on" jtest "$out" \
	'r["id"] == 1 and r["error"]["code"] == "SCHEMA_OUTDATED"'

check "no secret in the shim's logs" bash -c "! grep -q -- '$signing_key' '$T/shim.err'"
sql "drop schema $schema cascade" >/dev/null 2>&1
exit 0
