#!/usr/bin/env python3
"""worker_bench_tasks.py - the Python side of tests/bench/worker_bench.sh.

As a module it is the TaskIQ application that `taskiq worker` runs: one task,
"bench.true", that runs /bin/true as a child process (asyncio subprocess) and
appends "<enqueue-to-start ms>" to $BENCH_LOG.

As a script it produces messages (boto3, to $DTQ_QUEUE_URL):
  produce dtq|taskiq N PREFIX [--rate R]
N messages; without --rate as fast as possible in batches of 10 (preloading the
queue), with --rate one message every 1/R s. Each carries its send time (ms) so
that the consumer can measure enqueue -> child start.
"""
import asyncio
import json
import os
import sys
import time
import uuid

from taskiq_aio_sqs import SQSBroker

QUEUE_URL = os.environ.get("DTQ_QUEUE_URL", "http://localhost/000000000000/none")

broker = SQSBroker(
    QUEUE_URL.rsplit("/", 1)[1],
    endpoint_url=os.environ.get("DTQ_TEST_SQS_ENDPOINT"),
    region_name=os.environ.get("AWS_REGION", "us-east-1"),
    aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
    aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    max_number_of_messages=10,
    wait_time_seconds=1,
)


@broker.task(task_name="bench.true")
async def run_true(sent_ms: int) -> None:
    start_ms = time.time() * 1000.0
    proc = await asyncio.create_subprocess_exec("/bin/true")
    await proc.wait()
    with open(os.environ["BENCH_LOG"], "a") as f:
        f.write("%.1f\n" % (start_ms - sent_ms))


def body(kind, key, sent_ms):
    if kind == "dtq":
        msg = {"task_id": uuid.uuid4().hex, "task_name": "dtq.exec",
               "labels": {"dtq_key": key}, "labels_types": {"dtq_key": 3},
               "args": [], "kwargs": {"argv": ["/bin/true", str(sent_ms)]}}
    else:
        msg = {"task_id": uuid.uuid4().hex, "task_name": "bench.true",
               "labels": {}, "labels_types": {}, "args": [sent_ms], "kwargs": {}}
    return json.dumps(msg)


def produce(kind, n, prefix, rate):
    import boto3
    sqs = boto3.client("sqs", endpoint_url=os.environ["DTQ_TEST_SQS_ENDPOINT"],
                       region_name=os.environ.get("AWS_REGION", "us-east-1"),
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    if rate:
        t0 = time.time()
        for i in range(n):
            delay = t0 + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            sqs.send_message(QueueUrl=QUEUE_URL,
                             MessageBody=body(kind, "%s/%05d" % (prefix, i), int(time.time() * 1000)))
        return
    entries = []
    for i in range(n):
        entries.append({"Id": str(len(entries)),
                        "MessageBody": body(kind, "%s/%05d" % (prefix, i), int(time.time() * 1000))})
        if len(entries) == 10 or i == n - 1:
            sqs.send_message_batch(QueueUrl=QUEUE_URL, Entries=entries)
            entries = []


if __name__ == "__main__":
    rate = 0.0
    if "--rate" in sys.argv:
        i = sys.argv.index("--rate")
        rate = float(sys.argv[i + 1])
        del sys.argv[i:i + 2]
    produce(sys.argv[2], int(sys.argv[3]), sys.argv[4], rate)
