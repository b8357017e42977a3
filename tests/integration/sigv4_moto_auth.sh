#!/usr/bin/env bash
# The server side checks dtq's signatures: a private moto_server with
# signature verification on (INITIAL_NO_AUTH_ACTION_COUNT) receives SQS
# requests signed by dtq (build/tests/sigv4_cli) and sent by the curl command
# line client with its own Host, User-Agent, Accept and Content-Length. The
# message must arrive byte for byte; a wrong secret must be refused.
set -uo pipefail
. "$(dirname "$0")/../lib/harness.sh"
BUILD=${BUILD:-build}
cli=$BUILD/tests/sigv4_cli
py=${DTQ_VENV:-.venv}/bin/python
tmp=$(mktemp -d)
moto_pid=
stop_moto() {
	[ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null && wait "$moto_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap stop_moto EXIT

if [ ! -x "$cli" ] || [ ! -x "${DTQ_VENV:-.venv}/bin/moto_server" ]; then
	echo "not ok - $cli and moto_server (in \$DTQ_VENV) are available"
	exit 1
fi

port=$(harness_free_port)
# Three unauthenticated actions: create the user, its policy and its key.
INITIAL_NO_AUTH_ACTION_COUNT=3 "${DTQ_VENV:-.venv}/bin/moto_server" -H 127.0.0.1 -p "$port" \
	>"$tmp/moto.log" 2>&1 &
moto_pid=$!
if ! harness_wait_port "$port" moto_server 300; then
	echo "not ok - moto_server with signature checks started"
	tail -n 20 "$tmp/moto.log" | sed 's/^/#   /'
	exit 1
fi
endpoint=http://127.0.0.1:$port

# IAM user with an allow-all policy and an access key; a queue made with it.
if ! "$py" - "$endpoint" "$tmp" <<'PY'
import json, sys, boto3
endpoint, out = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="eu-west-1",
          aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="dtq")
iam.put_user_policy(UserName="dtq", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="dtq")["AccessKey"]
kw.update(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
url = boto3.client("sqs", **kw).create_queue(QueueName="dtq-sig")["QueueUrl"]
for name, value in (("akid", key["AccessKeyId"]), ("secret", key["SecretAccessKey"]), ("queue", url)):
    with open(f"{out}/{name}", "w") as f:
        f.write(value)
PY
then
	echo "not ok - IAM user, access key and queue created in moto"
	exit 1
fi

# send TARGET BODYFILE SECRET OUT: sign with dtq, POST with curl; prints the HTTP status
send() {
	local target=$1 body=$2 secret=$3 out=$4 date authz
	date=$(date -u +%Y%m%dT%H%M%SZ)
	printf 'Content-Type: application/x-amz-json-1.0\nX-Amz-Target: %s\nX-Amz-Date: %s\n' \
		"$target" "$date" >"$tmp/headers"
	authz=$("$cli" --url "$endpoint/" --region eu-west-1 --service sqs --date "$date" \
		--akid "$(cat "$tmp/akid")" --secret "$secret" \
		--headers-file "$tmp/headers" --body-file "$body") || return 1
	curl -sS -o "$out" -w '%{http_code}' -X POST "$endpoint/" -H 'Expect:' \
		-H 'Content-Type: application/x-amz-json-1.0' -H "X-Amz-Target: $target" \
		-H "X-Amz-Date: $date" -H "Authorization: $authz" --data-binary "@$body"
}

"$py" - "$(cat "$tmp/queue")" >"$tmp/send.json" <<'PY'
import json, sys
body = json.dumps({"task_name": "dtq.exec", "note": "naïve “quotes” \"here\" — 日本語 ✓"},
                  ensure_ascii=False)
print(json.dumps({"QueueUrl": sys.argv[1], "MessageBody": body}, ensure_ascii=False), end="")
PY

status=$(send AmazonSQS.SendMessage "$tmp/send.json" "$(cat "$tmp/secret")" "$tmp/send.out")
check "SendMessage signed by dtq is accepted by moto's signature check (HTTP $status)" \
	bash -c "[ '$status' = 200 ] && grep -q MessageId '$tmp/send.out' || { cat '$tmp/send.out'; false; }"

printf '{"QueueUrl":"%s","MaxNumberOfMessages":1,"WaitTimeSeconds":1}' "$(cat "$tmp/queue")" >"$tmp/recv.json"
status=$(send AmazonSQS.ReceiveMessage "$tmp/recv.json" "$(cat "$tmp/secret")" "$tmp/recv.out")
check "ReceiveMessage signed by dtq is accepted (HTTP $status)" test "$status" = 200
check "... and the UTF-8 body arrived byte for byte" "$py" -c "
import json, sys
sent = json.load(open('$tmp/send.json', encoding='utf-8'))['MessageBody']
got = json.load(open('$tmp/recv.out', encoding='utf-8'))['Messages'][0]['Body']
sys.exit(0 if got == sent else 1)"

status=$(send AmazonSQS.SendMessage "$tmp/send.json" "not-the-secret" "$tmp/bad.out")
check "a wrong secret is refused (HTTP $status, SignatureDoesNotMatch)" \
	bash -c "[ '$status' = 403 ] && grep -q SignatureDoesNotMatch '$tmp/bad.out' || { cat '$tmp/bad.out'; false; }"
exit $((harness_failures > 0))
