#!/usr/bin/env bash
# dtq health: the URL probe against servers that answer well, badly or not
# at all, and --deep against the real queue and ledger.
set -uo pipefail
. "$(dirname "$0")/../lib/harness.sh"
harness_init
harness_start_pg || exit 1
harness_start_moto || exit 1
dtq=${DTQ_BIN:-build/dtq}
tmp=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$tmp"' EXIT

# A probe target: answers every GET with the given status and body, or
# (mode "hang") accepts and never answers.
serve() { # serve PORT STATUS BODY|hang
	harness_python - "$@" <<'PY' &
import http.server, socket, sys, time
port, status, body = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if body == "hang":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(8)
    conns = []
    while True:
        conns.append(s.accept()[0])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(status); self.end_headers(); self.wfile.write(body.encode())
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
	pids+=($!)
	harness_wait_port "$1" probe-target
}

p_ok=$(harness_free_port); serve "$p_ok" 200 "ready: 1/4 slots busy"
p_bad=$(harness_free_port); serve "$p_bad" 503 "draining"
p_hang=$(harness_free_port); serve "$p_hang" 0 hang
p_closed=$(harness_free_port)

check "a 200 /readyz is healthy (exit 0) and says so" bash -c "
	$dtq health --url http://127.0.0.1:$p_ok/readyz | grep -q 'answered HTTP 200: ready: 1/4 slots busy'"
check "health_addr picks the default URL" bash -c "
	DTQ_HEALTH_ADDR=127.0.0.1:$p_ok $dtq health --quiet && [ -z \"\$($dtq health --quiet --url http://127.0.0.1:$p_ok/)\" ]"
check "a 503 is unhealthy (exit 1) with the worker's reason on stderr" bash -c "
	$dtq health --url http://127.0.0.1:$p_bad/readyz 2>$tmp/err; [ \$? -eq 1 ] &&
	grep -q 'answered HTTP 503: draining' $tmp/err"
check "a closed port is unhealthy" bash -c "
	$dtq health --url http://127.0.0.1:$p_closed/readyz 2>/dev/null; [ \$? -eq 1 ]"
check "a server that never answers is unhealthy within --timeout" bash -c "
	start=\$(date +%s%N); $dtq health --timeout 300ms --url http://127.0.0.1:$p_hang/ 2>$tmp/err
	rc=\$?; ms=\$(( (\$(date +%s%N) - start) / 1000000 ))
	[ \$rc -eq 1 ] && [ \$ms -lt 2000 ] && grep -q 'did not answer within 300 ms' $tmp/err"
check "a bad --timeout is a usage error (exit 2)" bash -c "
	$dtq health --timeout 0 2>/dev/null; [ \$? -eq 2 ]"
check "an unknown argument is a usage error (exit 2)" bash -c "
	$dtq health --bogus 2>/dev/null; [ \$? -eq 2 ]"

export DTQ_LEDGER_DSN=$DTQ_TEST_PG_DSN DTQ_LEDGER_SCHEMA=health_$$ AWS_ENDPOINT_URL=$DTQ_TEST_SQS_ENDPOINT
queue_url=$($dtq queue create "health-$$" --json | harness_python -c 'import json,sys; print(json.load(sys.stdin)["queue_url"])')
export DTQ_QUEUE_URL=$queue_url
check "--deep without queue_url is a configuration error naming it" bash -c "
	DTQ_QUEUE_URL= $dtq health --deep 2>$tmp/err; [ \$? -eq 2 ] && grep -q 'queue_url is not set' $tmp/err"
check "--deep on an unmigrated ledger is unhealthy and names dtq migrate" bash -c "
	$dtq health --deep 2>$tmp/err; [ \$? -eq 1 ] && grep -q 'dtq migrate' $tmp/err"
$dtq migrate >/dev/null 2>&1
check "--deep with SQS and a migrated ledger is healthy" bash -c "
	$dtq health --deep | grep -q 'SQS: 0 visible, 0 in flight; ledger: schema health_$$ at version'"
check "--deep on a queue that does not exist is unhealthy" bash -c "
	DTQ_QUEUE_URL=\${DTQ_QUEUE_URL%/*}/no-such-queue $dtq health --deep 2>$tmp/err; [ \$? -eq 1 ] &&
	grep -qi 'not exist' $tmp/err"
check "--deep with the ledger down is unhealthy within the timeout" bash -c "
	DTQ_LEDGER_DSN='host=127.0.0.1 port=$(harness_free_port) user=x dbname=x' $dtq health --deep --timeout 2s 2>$tmp/err
	[ \$? -eq 1 ] && grep -qi 'connect' $tmp/err"
exit 0
