#!/usr/bin/env python3
"""worker_tool.py - producer and inspector for the dtq worker tests.

Talks to the SQS emulator with boto3 (endpoint from DTQ_TEST_SQS_ENDPOINT, queue URLs
from DTQ_QUEUE_URL / DTQ_DLQ_URL). Messages are TaskIQ TaskiqMessage JSON, as Python
TaskIQ producers send them; signing follows docs/wire-format.md ("For other
producers"): HMAC-SHA256 over the compact JSON without labels.dtq_sig.

  send KEY [--timeout S] [--max-attempts N] [--sign KEY] [--task NAME]
           [--payload-ref] [--group ID] [--dedup ID] -- ARGV...
                           --payload-ref: the message names a stored payload
                           (labels payload_ref, payload_sha256) instead of
                           carrying it; --group/--dedup: FIFO ids (defaults
                           "default" and the task_id on a .fifo queue)
  send-raw                 body from stdin, as is
  send-many N PREFIX SCRIPT [--min S --max S] [--attempts N]
                           N dtq.exec tasks running /bin/sh SCRIPT <key> <seconds>
  dlq                      drain the DLQ; one JSON line per message: reason, key,
                           detail, body, FIFO group
  depth QUEUE_URL          visible + in flight + delayed messages
  set-attr QUEUE_URL NAME VALUE   SetQueueAttributes (e.g. MaximumMessageSize)
  purge QUEUE_URL          PurgeQueue: every message is gone (lost, as to a DLQ)
"""
import argparse
import hashlib
import hmac
import json
import os
import random
import sys
import uuid

import boto3


def client():
    return boto3.client(
        "sqs",
        endpoint_url=os.environ["DTQ_TEST_SQS_ENDPOINT"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )


def envelope(key, argv, task="dtq.exec", timeout=None, max_attempts=None):
    labels, types = {}, {}
    if key:
        labels["dtq_key"] = key
        types["dtq_key"] = 3
    if timeout is not None:
        labels["timeout"] = str(timeout)
        types["timeout"] = 4
    if max_attempts is not None:
        labels["max_attempts"] = str(max_attempts)
        types["max_attempts"] = 2
    return {
        "task_id": uuid.uuid4().hex,
        "task_name": task,
        "labels": labels,
        "labels_types": types,
        "args": [],
        "kwargs": {"argv": list(argv)},
    }


def refer_payload(msg):
    """Moves args/kwargs out, as task_build() does for a payload kept in the
    ledger: the message names it by key and its SHA-256."""
    stored = json.dumps({"args": msg["args"], "kwargs": msg["kwargs"]},
                        separators=(",", ":"), ensure_ascii=False).encode()
    key = msg["labels"].get("dtq_key", msg["task_id"])
    msg["labels"]["payload_ref"] = key
    msg["labels"]["payload_sha256"] = hashlib.sha256(stored).hexdigest()
    msg["labels_types"].update({"payload_ref": 3, "payload_sha256": 3})
    msg["args"], msg["kwargs"] = [], {}
    return msg


def sign(msg, key):
    msg["labels"].pop("dtq_sig", None)
    msg.get("labels_types", {}).pop("dtq_sig", None)
    signed = json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode()
    msg["labels"]["dtq_sig"] = "v1:" + hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()
    msg.setdefault("labels_types", {})["dtq_sig"] = 3
    return msg


def send_body(sqs, body, group=None, dedup=None):
    url = os.environ["DTQ_QUEUE_URL"]
    extra = {}
    if url.endswith(".fifo"):
        extra["MessageGroupId"] = group or "default"
        extra["MessageDeduplicationId"] = dedup or uuid.uuid4().hex
    return sqs.send_message(QueueUrl=url, MessageBody=body, **extra)["MessageId"]


def cmd_send(a):
    msg = envelope(a.key, a.argv, a.task, a.timeout, a.max_attempts)
    if a.payload_ref:
        msg = refer_payload(msg)
    if a.sign:
        msg = sign(msg, a.sign)
    print(send_body(client(), json.dumps(msg, separators=(",", ":")), a.group, a.dedup))


def cmd_send_raw(a):
    print(send_body(client(), sys.stdin.buffer.read().decode("utf-8", "surrogateescape")))


def cmd_send_many(a):
    sqs, rnd = client(), random.Random(a.seed)
    entries = []
    for i in range(a.n):
        key = "%s/%05d" % (a.prefix, i)
        secs = "%.2f" % rnd.uniform(a.min, a.max)
        msg = envelope(key, ["/bin/sh", a.script, key, secs], max_attempts=a.attempts)
        entries.append({"Id": str(len(entries)), "MessageBody": json.dumps(msg)})
        if len(entries) == 10:
            sqs.send_message_batch(QueueUrl=os.environ["DTQ_QUEUE_URL"], Entries=entries)
            entries = []
        print(key)
    if entries:
        sqs.send_message_batch(QueueUrl=os.environ["DTQ_QUEUE_URL"], Entries=entries)


def cmd_dlq(a):
    sqs, url, empty = client(), os.environ["DTQ_DLQ_URL"], 0
    while empty < 2:
        r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                MessageAttributeNames=["All"],
                                MessageSystemAttributeNames=["MessageGroupId"])
        msgs = r.get("Messages", [])
        if not msgs:
            empty += 1
            continue
        for m in msgs:
            attrs = m.get("MessageAttributes", {})
            get = lambda n: attrs.get(n, {}).get("StringValue")  # noqa: E731
            print(json.dumps({"reason": get("dtq_reason"), "key": get("dtq_key"),
                              "detail": get("dtq_detail"), "body": m["Body"][:200],
                              "group": m.get("Attributes", {}).get("MessageGroupId")}))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def cmd_depth(a):
    r = client().get_queue_attributes(QueueUrl=a.url, AttributeNames=["All"])["Attributes"]
    print(sum(int(r.get(k, 0)) for k in ("ApproximateNumberOfMessages",
                                           "ApproximateNumberOfMessagesNotVisible",
                                           "ApproximateNumberOfMessagesDelayed")))


def cmd_set_attr(a):
    client().set_queue_attributes(QueueUrl=a.url, Attributes={a.name: a.value})


def cmd_purge(a):
    client().purge_queue(QueueUrl=a.url)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("key")
    s.add_argument("--timeout", type=float)
    s.add_argument("--max-attempts", type=int)
    s.add_argument("--sign")
    s.add_argument("--task", default="dtq.exec")
    s.add_argument("--payload-ref", action="store_true")
    s.add_argument("--group")
    s.add_argument("--dedup")
    s.add_argument("argv", nargs="+")
    s.set_defaults(fn=cmd_send)
    s = sub.add_parser("send-raw")
    s.set_defaults(fn=cmd_send_raw)
    s = sub.add_parser("send-many")
    s.add_argument("n", type=int)
    s.add_argument("prefix")
    s.add_argument("script")
    s.add_argument("--min", type=float, default=0.0)
    s.add_argument("--max", type=float, default=2.0)
    s.add_argument("--attempts", type=int, default=5)
    s.add_argument("--seed", type=int, default=1)
    s.set_defaults(fn=cmd_send_many)
    s = sub.add_parser("dlq")
    s.set_defaults(fn=cmd_dlq)
    s = sub.add_parser("depth")
    s.add_argument("url")
    s.set_defaults(fn=cmd_depth)
    s = sub.add_parser("purge")
    s.add_argument("url")
    s.set_defaults(fn=cmd_purge)
    s = sub.add_parser("set-attr")
    s.add_argument("url")
    s.add_argument("name")
    s.add_argument("value")
    s.set_defaults(fn=cmd_set_attr)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
