#!/usr/bin/env bash
# worker_payload.sh - payloads kept in the ledger (payload_ref), end to end: the
# executor-shim stores a payload too big for the queue's messages, a real worker
# loads it and the child gets every byte of its argv; a message whose payload_ref
# names no stored payload, a stored payload that no longer matches the message's
# payload_sha256, and a stored argv whose program is not allowed go to the DLQ
# with their reason, and nothing runs for them.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib/harness.sh"
. "$top/tests/lib/worker_lib.sh"
wl_setup worker-payload
WL_TIMEOUT=30

export DTQ_EXEC_ALLOW=/bin/sh DTQ_LEASE=5s DTQ_VISIBILITY_TIMEOUT=20s DTQ_RECEIVE_WAIT=1s
export DTQ_SIGNING_KEY=payload-test-signing-key DTQ_MAX_ATTEMPTS=1
# moto's queues default to SQS's 1 MiB; queues made before 2025 have 256 KiB,
# the size that makes the shim move a payload into the ledger here.
wl_py set-attr "$DTQ_QUEUE_URL" MaximumMessageSize 262144

# make_task KEY OUTFILE PROGRAM: a dtq.exec submit of about 300 KiB. Its argv
# (4 arguments of 30000 bytes: 120000 of the 131072 an argv may have) holds
# every kind of character a shell or JSON could mangle; the child writes the
# SHA-256 of its arguments, each followed by a newline, to OUTFILE. A further
# 180 KiB kwargs member travels along (the worker ignores it). Prints the
# request; KEY.sha256 gets the expected hash of the arguments.
make_task() {
	harness_python - "$1" "$2" "$3" "$WL_DIR" <<'PY'
import hashlib, json, random, sys
key, out, prog, d = sys.argv[1:5]
rnd = random.Random(key)
alphabet = "abcXYZ019 \t\n\"'\\$`!*?%&;|<>(){}[]~#=\u00e9\u00df\u20ac\u4e2d\U0001f600/.-_,:@"
args = []
for i in range(4):
    s = "".join(rnd.choice(alphabet) for _ in range(30000))
    args.append(s.encode()[:30000].decode(errors="ignore"))  # a cut character is dropped
script = 'for a; do printf "%s\\n" "$a"; done | sha256sum | cut -d" " -f1 > "$0.out"'
argv = [prog, "-c", script, out] + args
digest = hashlib.sha256(b"".join(a.encode() + b"\n" for a in args)).hexdigest()
open("%s/%s.sha256" % (d, key.replace("/", "_")), "w").write(digest + "\n")
print(json.dumps({"key": key, "task_name": "dtq.exec",
                  "kwargs": {"argv": argv, "ballast": "b" * (180 * 1024)},
                  "labels": {"run_id": "payload", "step_key": key}}))
PY
}
submit() { "$DTQ_BIN" executor-shim submit <"$1" 2>>"$WL_DIR/shim.err"; }
error_of() { wl_psql "SELECT error FROM tasks WHERE key = '$1'"; }
matches() { [[ $1 == $2 ]] || { echo "got: $1"; false; }; }
stored_sha() { wl_psql "SELECT encode(sha256(payload), 'hex') FROM tasks WHERE key = '$1'"; }

make_task big/1 "$WL_DIR/big_1" /bin/sh >"$WL_DIR/big_1.json"
check "the request is over 256 KiB" test "$(wc -c <"$WL_DIR/big_1.json")" -gt 300000
out=$(submit "$WL_DIR/big_1.json")
check "shim: the big task is submitted" jq -e '.created == true' <<<"$out"
# one peek before any worker runs: the message names the payload and is small
"$DTQ_BIN" queue peek --json >"$WL_DIR/peek.json" 2>/dev/null
check "its message carries payload_ref, not the payload" jq -e '.messages[0].body | fromjson
	| .labels.dtq_key == "big/1" and .labels.payload_ref == "big/1" and .kwargs == {} and .args == []' \
	"$WL_DIR/peek.json"
check "its message is small" jq -e '.messages[0].body | length < 4096' "$WL_DIR/peek.json"
check "the ledger holds the whole payload" test "$(wl_psql "SELECT octet_length(payload) FROM tasks WHERE key = 'big/1'")" -gt 300000

# A stored payload that changed after the message was signed: the hash in the
# message no longer matches, so it must not run (its program would write).
make_task tampered/1 "$WL_DIR/tampered_1" /bin/sh >"$WL_DIR/tampered_1.json"
submit "$WL_DIR/tampered_1.json" >/dev/null
# (only the ballast changes: its argv would still run if nothing checked the hash)
wl_psql "UPDATE tasks SET payload = convert_to(replace(convert_from(payload, 'UTF8'), 'bbbb', 'bbbc'), 'UTF8') WHERE key = 'tampered/1'"
# A stored argv whose program is not on exec_allow: the intake could not see it.
make_task notallowed/1 "$WL_DIR/notallowed_1" /bin/bash >"$WL_DIR/notallowed_1.json"
submit "$WL_DIR/notallowed_1.json" >/dev/null
# A message (signed, as a producer with the key would send it) whose
# payload_ref names a payload nobody stored.
wl_py send ghost/1 --payload-ref --sign "$DTQ_SIGNING_KEY" -- /bin/sh -c 'echo x > "$0.out"' "$WL_DIR/ghost_1" >/dev/null
check "the ghost has no ledger row before the worker sees it" test -z "$(wl_state ghost/1)"

wl_start_worker w1 --concurrency 2
check "big: succeeded" wl_wait wl_state_is big/1 succeeded
check "big: the child got every byte of its argv" test "$(cat "$WL_DIR/big_1.out" 2>&1)" = "$(cat "$WL_DIR/big_1.sha256")"
check "big: one execution" test "$(wl_executions big/1)" = 1
check "big: the stored payload is unchanged" test "$(stored_sha big/1)" = \
	"$(harness_python -c 'import hashlib, json, sys; r = json.load(open(sys.argv[1]))
print(hashlib.sha256(json.dumps({"args": [], "kwargs": r["kwargs"]}, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest())' "$WL_DIR/big_1.json")"

check "ghost: recorded failed" wl_wait wl_state_is ghost/1 failed
check "ghost: the error says bad_payload" matches "$(error_of ghost/1)" 'bad_payload:*no stored payload*'
check "tampered: recorded failed" wl_wait wl_state_is tampered/1 failed
check "tampered: the error says the hash differs" matches "$(error_of tampered/1)" 'bad_payload:*does not match payload_sha256*'
check "not allowed: recorded dead" wl_wait wl_state_is notallowed/1 dead
check "not allowed: the error says not_allowed" matches "$(error_of notallowed/1)" "not_allowed: program /bin/bash is not on exec_allow"
check "not allowed: its execution is closed" test "$(wl_psql "SELECT outcome FROM attempts WHERE key = 'notallowed/1'")" = dead
queue_empty() { [ "$(wl_py depth "$DTQ_QUEUE_URL")" = 0 ]; }
check "every message left the queue" wl_wait queue_empty
check "nothing ran for the refused ones" bash -c "! ls '$WL_DIR'/{ghost_1,tampered_1,notallowed_1}.out 2>/dev/null | grep -q ."
check "no child started for them" bash -c "! grep -E 'key=(ghost|tampered|notallowed)/1.*started pid' '$WL_DIR/w1.log'"

dlq=$(wl_py dlq)
reason_of() { printf '%s\n' "$dlq" | jq -r "select(.key == \"$1\") | .reason"; }
check "DLQ: ghost -> bad_payload" test "$(reason_of ghost/1)" = bad_payload
check "DLQ: tampered -> bad_payload" test "$(reason_of tampered/1)" = bad_payload
check "DLQ: not allowed -> not_allowed" test "$(reason_of notallowed/1)" = not_allowed
check "DLQ: the big task is not there" test -z "$(reason_of big/1)"
check "DLQ: three messages, each once" test "$(printf '%s\n' "$dlq" | grep -c .)" = 3
check "metrics: bad_payload dead-lettered twice" test "$(wl_metric "$WL_PORT_w1" 'dtq_dead_lettered_total{reason="bad_payload"}')" = 2
check "metrics: four payloads loaded" test "$(wl_metric "$WL_PORT_w1" 'dtq_ledger_requests_total{op="payload"}')" = 4
wl_done
