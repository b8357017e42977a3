#!/usr/bin/env bash
# SigV4 cross-check: the same SQS requests signed by botocore's SigV4Auth (from
# the project virtualenv) and by dtq (build/tests/sigv4_cli) at a fixed date
# must carry the same Authorization header.
#
# Cases: SendMessage signed directly by SigV4Auth with a raw UTF-8 body full of
# quotes and a session token; and SendMessage / ReceiveMessage built by a real
# botocore SQS client (serializer, User-Agent, x-amzn-query-mode, an endpoint
# on a non-default port), captured just before sending, so dtq sees exactly
# the headers botocore sent, including the ones it must not sign.
set -uo pipefail
. "$(dirname "$0")/../lib/harness.sh"
BUILD=${BUILD:-build}
cli=$BUILD/tests/sigv4_cli
py=${DTQ_VENV:-.venv}/bin/python
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ ! -x "$cli" ]; then
	echo "not ok - $cli is built (run make unit-bins)"
	exit 1
fi
if ! "$py" -c 'import botocore' 2>/dev/null; then
	echo "not ok - botocore importable from $py (set DTQ_VENV)"
	exit 1
fi

# Writes, per case, NAME.url NAME.region NAME.headers NAME.body NAME.authz.
"$py" - "$tmp" <<'PY'
import datetime, json, os, sys
from unittest import mock

import botocore.auth
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials

out = sys.argv[1]
FIXED = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
CREDS = Credentials("ASIAEXAMPLEDTQ", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                    "FwoGZXIvYXdzEDTQ//////////sessiontoken+/=")

def dump(name, url, region, headers, body):
    with open(os.path.join(out, name + ".url"), "w") as f:
        f.write(url)
    with open(os.path.join(out, name + ".region"), "w") as f:
        f.write(region)
    with open(os.path.join(out, name + ".headers"), "w") as f:
        for k, v in headers.items():
            v = v.decode() if isinstance(v, bytes) else v
            f.write(f"{k}: {v}\n")
    with open(os.path.join(out, name + ".body"), "wb") as f:
        f.write(body if isinstance(body, bytes) else (body or "").encode())
    with open(os.path.join(out, name + ".authz"), "w") as f:
        a = headers["Authorization"]
        f.write(a.decode() if isinstance(a, bytes) else a)

with mock.patch.object(botocore.auth, "get_current_datetime", return_value=FIXED):
    # 1) SigV4Auth on a hand-built SendMessage with a raw UTF-8 body
    body = json.dumps({
        "QueueUrl": "https://sqs.eu-west-1.amazonaws.com/123456789012/dtq-tasks",
        "MessageBody": json.dumps({"task_name": "dagster.execute_step",
                                   "kwargs": {"note": "Grüße, «quotes» \"here\" and 'there' — 日本語 ✓"}},
                                  ensure_ascii=False),
    }, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    url = "https://sqs.eu-west-1.amazonaws.com/"
    req = AWSRequest(method="POST", url=url, data=body, headers={
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "AmazonSQS.SendMessage",
    })
    SigV4Auth(CREDS, "sqs", "eu-west-1").add_auth(req)
    dump("sigv4auth-sendmessage", url, "eu-west-1", dict(req.headers.items()), body)

    # 2) and 3) a real client, captured before sending (no network). Headers
    # botocore adds after signing (amz-sdk-*, Content-Length) are dropped:
    # they were never part of what it signed.
    captured = {}
    def note_signing_headers(request, **kwargs):
        captured["at_sign"] = {k.lower() for k in request.headers.keys()}
    def signed_time_headers(request):
        keep = captured["at_sign"] | {"x-amz-date", "x-amz-security-token", "authorization"}
        return {k: v for k, v in request.headers.items() if k.lower() in keep}
    def capture(request, **kwargs):
        captured["req"] = request
        resp = AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.0"}, None)
        resp._content = b'{"MessageId":"x","MD5OfMessageBody":"y","Messages":[]}'
        return resp
    session = botocore.session.get_session()
    endpoint = "http://127.0.0.1:45123"
    client = session.create_client("sqs", region_name="eu-west-1", endpoint_url=endpoint,
                                   aws_access_key_id=CREDS.access_key,
                                   aws_secret_access_key=CREDS.secret_key,
                                   aws_session_token=CREDS.token)
    client.meta.events.register("before-sign.sqs.*", note_signing_headers)
    client.meta.events.register("before-send.sqs.*", capture)
    qurl = endpoint + "/123456789012/dtq-tasks"
    client.send_message(QueueUrl=qurl,
                        MessageBody='{"say": "naïve \\"café\\" — ✓", "n": 1}',
                        MessageAttributes={"dtq_reason": {"DataType": "String",
                                                          "StringValue": "über \"bad\" sig"}})
    r = captured["req"]
    dump("client-sendmessage", r.url, "eu-west-1", signed_time_headers(r), r.body)
    client.receive_message(QueueUrl=qurl, MaxNumberOfMessages=10, WaitTimeSeconds=20,
                           MessageSystemAttributeNames=["ApproximateReceiveCount"])
    r = captured["req"]
    dump("client-receivemessage", r.url, "eu-west-1", signed_time_headers(r), r.body)
PY
if [ $? -ne 0 ]; then
	echo "not ok - botocore produced the reference requests"
	exit 1
fi

dtq_authz() { # NAME
	"$cli" --url "$(cat "$tmp/$1.url")" --method POST --region "$(cat "$tmp/$1.region")" \
		--service sqs --date 20260102T030405Z --akid ASIAEXAMPLEDTQ \
		--secret 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' \
		--headers-file "$tmp/$1.headers" --body-file "$tmp/$1.body"
}

same_authz() { # NAME
	local want got
	want=$(cat "$tmp/$1.authz")
	got=$(dtq_authz "$1") || return 1
	if [ "$got" != "$want" ]; then
		printf 'botocore: %s\ndtq:      %s\nheaders:\n' "$want" "$got"
		cat "$tmp/$1.headers"
		return 1
	fi
}

check "SendMessage (UTF-8 body, quotes, session token) via SigV4Auth: same Authorization" \
	same_authz sigv4auth-sendmessage
check "... and botocore signed the raw UTF-8 bytes and the token" \
	bash -c "grep -q 'x-amz-security-token' '$tmp/sigv4auth-sendmessage.authz' &&
		 grep -q 'Grüße' '$tmp/sigv4auth-sendmessage.body'"
check "SendMessage from a botocore SQS client (port 45123, User-Agent, query mode): same Authorization" \
	same_authz client-sendmessage
check "... where botocore sent headers that must stay unsigned" \
	bash -c "grep -qi '^User-Agent:' '$tmp/client-sendmessage.headers' &&
		 ! grep -qi 'user-agent' '$tmp/client-sendmessage.authz'"
check "ReceiveMessage from a botocore SQS client: same Authorization" \
	same_authz client-receivemessage
# The comparison must be able to fail: a changed body changes dtq's signature.
check "a one-byte change in the body gives a different signature" bash -c "
	sed 's/dtq-tasks/dtq-taskz/' '$tmp/client-sendmessage.body' > '$tmp/tampered.body' &&
	got=\$('$cli' --url \"\$(cat '$tmp/client-sendmessage.url')\" --region eu-west-1 --service sqs \
		--date 20260102T030405Z --akid ASIAEXAMPLEDTQ \
		--secret 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' \
		--headers-file '$tmp/client-sendmessage.headers' --body-file '$tmp/tampered.body') &&
	[ \"\$got\" != \"\$(cat '$tmp/client-sendmessage.authz')\" ]"
exit $((harness_failures > 0))
