#!/usr/bin/env bash
# The container credentials provider against a real local HTTP server (Python
# http.server on loopback, free port) standing in for the ECS/EKS endpoint.
# build/tests/creds_cli calls the provider at chosen points of a simulated
# clock; the server hands out credentials that expire 20 minutes after the
# previous ones (the n-th answer of a path expires at BASE + n*20 min) and
# logs every request with its Authorization header.
set -uo pipefail
. "$(dirname "$0")/../lib/harness.sh"
BUILD=${BUILD:-build}
cli=$BUILD/tests/creds_cli
tmp=$(mktemp -d)
server_pid=
stop_server() {
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap stop_server EXIT

if [ ! -x "$cli" ]; then
	echo "not ok - $cli is built (run make unit-bins)"
	exit 1
fi

base_ms=$(( $(date +%s) * 1000 ))
cat >"$tmp/server.py" <<'PY'
# /MODE/CASE: MODE ok (always answers), fail-after-1 (answers once, then 500),
# flaky (500 first, then answers). Counters are per path.
import datetime, http.server, json, sys, threading

base_ms, port_file, log_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
seen, served = {}, {}

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with lock:
            n = seen[self.path] = seen.get(self.path, 0) + 1
            with open(log_file, "a") as f:
                f.write(f"{self.path} auth={self.headers.get('Authorization', '-')} "
                        f"accept={self.headers.get('Accept', '-')}\n")
            mode = self.path.split("/")[1]
            fail = (mode == "fail-after-1" and n > 1) or (mode == "flaky" and n == 1)
            if not fail:
                k = served[self.path] = served.get(self.path, 0) + 1
        if fail:
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b'{"message":"try later"}')
            return
        exp = datetime.datetime.fromtimestamp(base_ms / 1000 + k * 1200, datetime.timezone.utc)
        body = json.dumps({"AccessKeyId": f"ASIATEST{k}", "SecretAccessKey": f"secret{k}",
                           "Token": f"token{k}", "RoleArn": "arn:aws:iam::123456789012:role/t",
                           "Expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os; os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
PY
py=${DTQ_VENV:-.venv}/bin/python
[ -x "$py" ] || py=python3
# started directly (not through a shell function) so that $! is python itself
"$py" "$tmp/server.py" "$base_ms" "$tmp/port" "$tmp/requests.log" &
server_pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
if [ ! -s "$tmp/port" ]; then
	echo "not ok - the credentials server started"
	exit 1
fi
url=http://127.0.0.1:$(cat "$tmp/port")

# run_cli OUT ENV... -- ARGS...: creds_cli with only the given AWS_CONTAINER_* set
run_cli() {
	local out=$1
	shift
	local envs=()
	while [ "$1" != -- ]; do envs+=("$1"); shift; done
	shift
	env -u AWS_CONTAINER_CREDENTIALS_RELATIVE_URI -u AWS_CONTAINER_CREDENTIALS_FULL_URI \
		-u AWS_CONTAINER_AUTHORIZATION_TOKEN -u AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \
		AWS_SHARED_CREDENTIALS_FILE=/nonexistent "${envs[@]}" \
		"$cli" --base-ms "$base_ms" "$@" >"$tmp/$out" 2>"$tmp/$out.err"
}
line_has() { # FILE AT WORD...: the line of call AT holds every WORD
	local file=$tmp/$1 at=$2 line w
	shift 2
	line=$(grep "^at=$at " "$file") || { echo "no line at=$at"; cat "$file" "$file.err"; return 1; }
	for w in "$@"; do
		[[ " $line " == *" $w "* ]] || { echo "line lacks '$w': $line"; cat "$file.err"; return 1; }
	done
}
requests() { grep -c "^$1 " "$tmp/requests.log"; }

# 1. Refresh ahead of expiry: the first answer expires at +20 min, so at +4 min
# (16 left) nothing is fetched and at +6 min (14 left) the provider fetches again.
printf 'file-token\n' >"$tmp/token"
run_cli refresh AWS_CONTAINER_CREDENTIALS_FULL_URI="$url/ok/refresh" \
	AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="$tmp/token" -- 0 240 360 420
check "first call fetches from the container endpoint" \
	line_has refresh 0 rc=0 akid=ASIATEST1 token=token1 "source=container endpoint" fetches=1
check "16 min before expiry: no fetch" line_has refresh 240 rc=0 akid=ASIATEST1 fetches=1
check "14 min before expiry: fetched again and got the new keys" \
	line_has refresh 360 rc=0 akid=ASIATEST2 token=token2 fetches=2
check "the new keys last: no fetch a minute later" line_has refresh 420 akid=ASIATEST2 fetches=2
check "the server saw exactly two requests" test "$(requests /ok/refresh)" -eq 2
check "full URI + token file: Authorization header sent (trailing newline dropped)" \
	bash -c "[ \$(grep -c '^/ok/refresh auth=file-token accept=application/json\$' '$tmp/requests.log') -eq 2 ]"

# 2. Token from the variable; the file wins when both are set.
run_cli envtok AWS_CONTAINER_CREDENTIALS_FULL_URI="$url/ok/envtoken" \
	AWS_CONTAINER_AUTHORIZATION_TOKEN=env-token -- 0
check "full URI + AWS_CONTAINER_AUTHORIZATION_TOKEN: header sent" \
	grep -q '^/ok/envtoken auth=env-token ' "$tmp/requests.log"
run_cli both AWS_CONTAINER_CREDENTIALS_FULL_URI="$url/ok/both" \
	AWS_CONTAINER_AUTHORIZATION_TOKEN=env-token AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="$tmp/token" -- 0
check "the token file wins over the variable" grep -q '^/ok/both auth=file-token ' "$tmp/requests.log"
run_cli notok AWS_CONTAINER_CREDENTIALS_FULL_URI="$url/ok/notoken" -- 0
check "no token configured: no Authorization header" grep -q '^/ok/notoken auth=- ' "$tmp/requests.log"

# 3. A failing refresh keeps the old keys until the mandatory window (10 min
# before expiry), retries at most every 30 s, then fails.
run_cli keep AWS_CONTAINER_CREDENTIALS_FULL_URI="$url/fail-after-1/keep" -- \
	--attempts 2 --pause-ms 10 0 360 370 660
check "refresh fails at 14 min left: old keys still served" \
	line_has keep 360 rc=0 akid=ASIATEST1 fetches=3
check "... and not asked again 10 s later" line_has keep 370 rc=0 akid=ASIATEST1 fetches=3
check "9 min left and the endpoint still fails: an error naming the endpoint" \
	bash -c "grep -q '^at=660 rc=-4 akid=- .*fetches=5 err=AWS credentials from the container endpoint: GET $url/fail-after-1/keep: HTTP 500' '$tmp/keep'"
check "the failed refresh was logged as a warning" grep -q 'level=warn.*refresh failed' "$tmp/keep.err"

# 4. One failed attempt inside a fetch is retried.
run_cli flaky AWS_CONTAINER_CREDENTIALS_FULL_URI="$url/flaky/retry" -- --attempts 3 --pause-ms 10 0
check "a 500 then a 200: the retry inside one fetch succeeds" \
	line_has flaky 0 rc=0 akid=ASIATEST1 fetches=2

# 5. Nothing secret in the logs.
check "no secret key or token in the provider's log lines" \
	bash -c "! grep -h -e 'secret[0-9]' -e 'token[0-9]' -e file-token '$tmp'/*.err"
exit $((harness_failures > 0))
