#!/usr/bin/env bash
# SigV4 checked by the emulator: a moto_server of our own with signature
# verification on (INITIAL_NO_AUTH_ACTION_COUNT) and IAM keys created in it.
# dtq's requests with the right keys pass; a wrong secret, an unknown key or
# a bad session token fail with the AWS code, unretried.
set -uo pipefail
. "$(dirname "$0")/../lib/harness.sh"
harness_init
dtq=${DTQ_BIN:-build/dtq}
tmp=$DTQ_TEST_TMP/sigv4.$$
mkdir -p "$tmp"
port=$(harness_free_port)
moto=${DTQ_VENV}/bin/moto_server
[ -x "$moto" ] || moto=moto_server
# The first 5 requests (the IAM set-up below) go unchecked, every later one
# must be signed by a key that IAM knows.
INITIAL_NO_AUTH_ACTION_COUNT=5 "$moto" -H 127.0.0.1 -p "$port" >"$tmp/moto.log" 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null; wait $moto_pid 2>/dev/null; harness_cleanup' EXIT
harness_wait_port "$port" moto_server 300 || exit 1
ep=http://127.0.0.1:$port

harness_python - "$ep" >"$tmp/keys" <<'PY' || { echo "not ok - IAM set-up"; exit 1; }
import json, sys, boto3
ep = sys.argv[1]
iam = boto3.client("iam", endpoint_url=ep, region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
pol = json.dumps({"Version": "2012-10-17",
                  "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
iam.create_user(UserName="dtq")
key = iam.create_access_key(UserName="dtq")["AccessKey"]
iam.put_user_policy(UserName="dtq", PolicyName="all", PolicyDocument=pol)
role = iam.create_role(RoleName="dtq-task", AssumeRolePolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
                                             "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
iam.put_role_policy(RoleName="dtq-task", PolicyName="all", PolicyDocument=pol)
# From here on every request is checked: this one is signed by the new key.
sts = boto3.client("sts", endpoint_url=ep, region_name="us-east-1",
                   aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
tmpc = sts.assume_role(RoleArn=role, RoleSessionName="dtq-test")["Credentials"]
print(key["AccessKeyId"], key["SecretAccessKey"], tmpc["AccessKeyId"], tmpc["SecretAccessKey"],
      tmpc["SessionToken"])
PY
read -r akid secret tmp_akid tmp_secret tmp_token <"$tmp/keys"

run() { # run AKID SECRET [TOKEN] -- dtq args...
	local a=$1 s=$2 t=$3
	shift 3
	env -u AWS_SESSION_TOKEN -u DTQ_AWS_SESSION_TOKEN AWS_ACCESS_KEY_ID="$a" \
		AWS_SECRET_ACCESS_KEY="$s" ${t:+AWS_SESSION_TOKEN="$t"} AWS_ENDPOINT_URL="$ep" \
		AWS_REGION=us-east-1 DTQ_LOG_LEVEL=warn DTQ_HTTP_RETRY_BASE=10ms "$dtq" "$@" \
		>"$tmp/out" 2>&1
}
expect() { # expect CODE TEXT run-args...
	local want=$1 text=$2 rc
	shift 2
	run "$@"
	rc=$?
	[ "$rc" -eq "$want" ] || { echo "exit $rc, wanted $want"; cat "$tmp/out"; return 1; }
	[ -z "$text" ] || grep -qF -- "$text" "$tmp/out" || { echo "lacks: $text"; cat "$tmp/out"; return 1; }
}

check "signed with the IAM key: create" expect 0 "/authq" "$akid" "$secret" "" queue create authq
printf 'one\ntwo\n' >"$tmp/lines"
send_two() { expect 0 "sent 2 messages" "$akid" "$secret" "" queue send authq <"$tmp/lines"; }
check "signed with the IAM key: send (a batch)" send_two
check "signed with the IAM key: stats" expect 0 "visible    2" "$akid" "$secret" "" queue stats authq
check "temporary (assumed-role) credentials with a session token" expect 0 "visible    2" \
	"$tmp_akid" "$tmp_secret" "$tmp_token" queue stats authq
check "a wrong secret is refused: SignatureDoesNotMatch" expect 1 "SignatureDoesNotMatch" \
	"$akid" "not-the-secret" "" queue stats authq
check "... and not retried" bash -c "! grep -q retry $tmp/out"
check "an unknown key is refused: InvalidClientTokenId" expect 1 "InvalidClientTokenId" \
	AKIAUNKNOWNKEY000000 "$secret" "" queue stats authq
check "a bad session token is refused" expect 1 "(HTTP 403)" \
	"$tmp_akid" "$tmp_secret" "bogus-token" queue stats authq
[ "$harness_failures" -eq 0 ]
