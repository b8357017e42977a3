"""boto3 doing exactly what tests/bench/sqs_bench.c does with dtq's blocking
client: N/10 cycles of send a batch of 10, receive up to 10 (1 s long poll),
delete what came in one batch, until N messages are deleted. Prints the same JSON line; CPU and
wall time cover the work only (after imports and client set-up).

usage: sqs_bench_boto3.py ENDPOINT QUEUE N
"""
import json
import resource
import sys
import time

import boto3

endpoint, queue, n = sys.argv[1], sys.argv[2], (int(sys.argv[3]) + 9) // 10 * 10
sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
url = sqs.create_queue(QueueName=queue)["QueueUrl"]


def cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


t0, c0 = time.monotonic(), cpu()
sent = deleted = 0
while deleted < n:
    if sent < n:
        entries = [{"Id": str(i), "MessageBody": json.dumps(
            {"task_id": "%032d" % (sent + i), "task_name": "dtq.exec", "labels": {},
             "args": [], "kwargs": {}})} for i in range(10)]
        r = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        if r.get("Failed"):
            sys.exit("send failed: %s" % r["Failed"])
        sent += 10
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                               VisibilityTimeout=60, MessageSystemAttributeNames=["All"],
                               MessageAttributeNames=["All"]).get("Messages", [])
    if msgs:
        r = sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
        deleted += len(r.get("Successful", []))
t1, c1 = time.monotonic(), cpu()
print(json.dumps({"client": "boto3", "messages": deleted, "seconds": round(t1 - t0, 3),
                  "cpu_seconds": round(c1 - c0, 3),
                  "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
