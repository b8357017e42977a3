"""Queue chores and message checks for tests/integration/shim.sh (boto3 on moto).

    create NAME [MAX]                make the queue (FIFO when NAME ends in .fifo; MAX its
                                     MaximumMessageSize), print its URL
    drain URL                        receive and delete every message; print them as a JSON list
    count URL                        messages in the queue (visible and in flight)
    check-message FILE KEY SIGKEY [EXPECT...]
                                     the message of KEY in a drain's FILE is a TaskIQ message,
                                     signed with SIGKEY, with the EXPECTed labels and fields
    check-tamper FILE SIGKEY         a changed body no longer verifies (and the real one does)

The signature is the envelope's (src/task.c, task_sign): labels.dtq_sig is
"v1:" + hex(HMAC-SHA256(key, B)), B being the body without labels.dtq_sig and
labels_types.dtq_sig, printed compactly in its own key order.
"""

import hashlib
import hmac
import json
import os
import re
import sys

import boto3

LT_INT, LT_STR, LT_FLOAT = 2, 3, 4


def client():
    return boto3.client(
        "sqs", endpoint_url=os.environ["DTQ_TEST_SQS_ENDPOINT"], region_name="us-east-1"
    )


def create(name, max_size=None):
    attrs = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
    if max_size:
        attrs["MaximumMessageSize"] = max_size
    print(client().create_queue(QueueName=name, Attributes=attrs)["QueueUrl"])


def drain(url):
    sqs, out, empty = client(), [], 0
    while empty < 2:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        empty = empty + 1 if not got else 0
        for m in got:
            body = json.loads(m["Body"])
            out.append(
                {
                    "message_id": m["MessageId"],
                    "body": m["Body"],
                    "labels": body.get("labels", {}),
                    "group_id": m.get("Attributes", {}).get("MessageGroupId"),
                    "dedup_id": m.get("Attributes", {}).get("MessageDeduplicationId"),
                }
            )
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    print(json.dumps(out))


def count(url):
    a = client().get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    print(int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"]))


def signed_bytes(body):
    obj = json.loads(body)
    sig = obj["labels"].pop("dtq_sig")
    if isinstance(obj.get("labels_types"), dict):
        obj["labels_types"].pop("dtq_sig", None)
    return sig, json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature_ok(body, key):
    sig, data = signed_bytes(body)
    want = "v1:" + hmac.new(key.encode(), data, hashlib.sha256).hexdigest()
    return hmac.compare_digest(sig, want)


def find(path, key):
    msgs = [m for m in json.load(open(path)) if m["labels"].get("dtq_key") == key]
    assert len(msgs) == 1, f"{len(msgs)} messages with dtq_key {key!r}"
    return msgs[0]


def check_message(path, key, sig_key, *expect):
    m = find(path, key)
    body = json.loads(m["body"])
    assert list(body) == ["task_id", "task_name", "labels", "labels_types", "args", "kwargs"], list(body)
    assert re.fullmatch(r"[0-9a-f]{32}", body["task_id"]), body["task_id"]
    assert body["task_name"] == "dagster.execute_step", body["task_name"]
    assert body["args"] == [], body["args"]
    labels, types = body["labels"], body["labels_types"]
    assert labels["dtq_key"] == key
    assert all(isinstance(v, str) for v in labels.values()), labels
    want_types = {"timeout": LT_FLOAT, "max_attempts": LT_INT}
    for name in labels:
        assert types.get(name) == want_types.get(name, LT_STR), (name, types)
    assert signature_ok(m["body"], sig_key), "bad signature"
    for e in expect:
        name, _, value = e.partition("=")
        if name == "message_id":
            assert m["message_id"] == value, (m["message_id"], value)
        elif name == "max_body":
            assert len(m["body"].encode()) <= int(value), len(m["body"].encode())
        elif name == "kwargs":
            assert body["kwargs"] == {}, list(body["kwargs"])
        elif name.startswith("kwargs."):
            assert body["kwargs"][name[7:]] == value, body["kwargs"]
        elif name == "timeout":
            assert float(labels["timeout"]) == float(value), labels["timeout"]
        elif name == "payload_ref":
            assert labels["payload_ref"] == value, labels
            assert re.fullmatch(r"[0-9a-f]{64}", labels["payload_sha256"]), labels
        else:
            assert labels.get(name) == value, (name, labels.get(name), value)


def check_tamper(path, sig_key):
    m = json.load(open(path))[0]
    assert signature_ok(m["body"], sig_key), "the real message does not verify"
    body = json.loads(m["body"])
    body["kwargs"] = {"execute_step_args": "ZXZpbA=="}
    assert not signature_ok(json.dumps(body), sig_key), "a changed payload still verifies"
    assert not signature_ok(m["body"], sig_key + "x"), "another key verifies"


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    {
        "create": create,
        "drain": drain,
        "count": count,
        "check-message": check_message,
        "check-tamper": check_tamper,
    }[cmd](*args)


if __name__ == "__main__":
    main()
