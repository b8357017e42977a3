#!/usr/bin/env bash
# worker_poison.sh - messages that cannot run go to the DLQ with their reason
# (message attribute dtq_reason), are recorded in the ledger when their key can be
# trusted, and the worker stays ready.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib/harness.sh"
. "$top/tests/lib/worker_lib.sh"
wl_setup worker-poison
WL_TIMEOUT=30

export DTQ_EXEC_ALLOW=/bin/true DTQ_RECEIVE_WAIT=1s DTQ_LEASE=5s DTQ_VISIBILITY_TIMEOUT=20s
export DTQ_SIGNING_KEY=the-real-signing-key
wl_start_worker w1 --concurrency 2

printf '\xc3\xbf\xc3\xbe garbage {{{ not json' | wl_py send-raw >/dev/null
printf '{"hello": 1}' | wl_py send-raw >/dev/null
wl_py send unknown/1 --task nosuch.task --sign "$DTQ_SIGNING_KEY" -- /bin/true >/dev/null
wl_py send forged/1 --sign not-the-key -- /bin/true >/dev/null
wl_py send denied/1 --sign "$DTQ_SIGNING_KEY" -- /bin/rm -rf /tmp/nothing-here >/dev/null
wl_py send fine/1 --sign "$DTQ_SIGNING_KEY" -- /bin/true >/dev/null
wl_py send unsigned-ok/1 -- /bin/true >/dev/null

check "a signed good task still runs" wl_wait wl_state_is fine/1 succeeded
check "unsigned runs while require_signature is off" wl_wait wl_state_is unsigned-ok/1 succeeded
queue_empty() { [ "$(wl_py depth "$DTQ_QUEUE_URL")" = 0 ]; }
check "every poison message left the queue" wl_wait queue_empty
check "worker stays ready" bash -c "curl -fsS http://127.0.0.1:$WL_PORT_w1/readyz | grep -q ^ready"

kill -TERM "$WL_PID_w1"
wl_wait_exit "$WL_PID_w1"
DTQ_REQUIRE_SIGNATURE=true wl_start_worker w2 --concurrency 2
wl_py send unsigned/1 -- /bin/true >/dev/null
check "require_signature: unsigned message refused" wl_wait grep -q 'refused message .*unsigned' "$WL_DIR/w2.log"
check "require_signature: worker ready" bash -c "curl -fsS http://127.0.0.1:$WL_PORT_w2/readyz | grep -q ^ready"

dlq=$(wl_py dlq)
reason_of() { printf '%s\n' "$dlq" | jq -r "select($1) | .reason"; }
check "garbage bytes -> malformed" test "$(reason_of '.body | startswith("ÿþ garbage")')" = malformed
check "JSON without fields -> malformed" test "$(reason_of '.body == "{\"hello\": 1}"')" = malformed
check "unknown task -> unknown_task" test "$(reason_of '.key == "unknown/1"')" = unknown_task
check "forged signature -> bad_signature" test "$(reason_of '.body | contains("forged/1")')" = bad_signature
check "program not allowed -> not_allowed" test "$(reason_of '.key == "denied/1"')" = not_allowed
check "unsigned with require_signature -> unsigned" test "$(reason_of '.body | contains("unsigned/1")')" = unsigned
check "the reason's detail travels along" test -n "$(printf '%s\n' "$dlq" | jq -r 'select(.key == "denied/1") | .detail' | grep '/bin/rm')"
check "six messages in the DLQ" test "$(printf '%s\n' "$dlq" | grep -c .)" = 6

check "ledger: not_allowed recorded dead" test "$(wl_psql "SELECT state||' '||error FROM tasks WHERE key='denied/1'" | cut -c1-16)" = "dead not_allowed"
check "ledger: signed unknown task recorded dead" wl_state_is unknown/1 dead
check "ledger: forged key never touches the ledger" test -z "$(wl_state forged/1)"
check "ledger: unsigned key never touches the ledger" test -z "$(wl_state unsigned/1)"
check "ledger: nothing ran for them" test "$(wl_psql "SELECT count(*) FROM attempts WHERE key IN ('denied/1','unknown/1','forged/1','unsigned/1')")" = 0
check "metrics: dead-lettered by reason" test "$(wl_metric "$WL_PORT_w2" 'dtq_dead_lettered_total{reason="unsigned"}')" = 1
wl_done
