"""Captures real AWS responses from moto (in-process, through boto3) as seeds
for the parser fuzzers: tests/fuzz/corpus/{sqs,aws_error,ecs}/moto_*.

Usage: $DTQ_VENV/bin/python tests/fuzz/capture_corpus.py [CORPUS_DIR]

Each seed is "HEADER\\nBODY", BODY exactly as the wire carried it:
- sqs:       "<Operation> <entries>" and the 2xx JSON body (fuzz_sqs.c);
- aws_error: "<status> <x-amzn-query-error or ->" and the error body;
- ecs:       "<Operation>" and the 2xx JSON body (fuzz_ecs.c).
Run it again after a moto or botocore upgrade; the files it writes are
deterministic apart from ids and timestamps.
"""
import json
import os
import sys

import boto3
from moto import mock_aws
from moto.ec2 import utils as ec2_utils

top = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(top, "corpus")
KW = dict(region_name="us-east-1", aws_access_key_id="testing",
          aws_secret_access_key="testing")
seen = {}


def write(kind, name, header, body):
    d = os.path.join(out, kind)
    os.makedirs(d, exist_ok=True)
    n = seen[(kind, name)] = seen.get((kind, name), 0) + 1
    path = os.path.join(d, f"moto_{name}{'_' + str(n) if n > 1 else ''}")
    with open(path, "wb") as f:
        f.write(header.encode() + b"\n" + body)


# The operations dtq parses; RunTask answers in DescribeTasks' shape.
PARSED = {"sqs": {"SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessage",
                  "DeleteMessageBatch", "ChangeMessageVisibility",
                  "ChangeMessageVisibilityBatch", "GetQueueAttributes", "GetQueueUrl",
                  "CreateQueue", "PurgeQueue"},
          "ecs": {"DescribeServices", "UpdateService", "ListTasks", "DescribeTasks"}}
SAME_SHAPE = {"RunTask": "DescribeTasks", "CreateService": "UpdateService"}


def hook(kind, entries):
    """An after-call handler that files each answer as a seed."""
    def after_call(http_response, model, **_):
        op = model.name
        body = http_response.content
        if http_response.status_code >= 300:
            qe = http_response.headers.get("x-amzn-query-error", "-")
            write("aws_error", f"{kind}_{op}", f"{http_response.status_code} {qe}", body)
            return
        op = SAME_SHAPE.get(op, op)
        if op not in PARSED[kind]:
            return
        if kind == "sqs":
            write("sqs", op, f"{op} {entries.get(op, 0)}", body)
        else:
            write("ecs", op, op, body)
    return after_call


def call(fn, **params):
    try:
        return fn(**params)
    except Exception as e:  # the error answer is what we want
        return e


def capture_sqs():
    entries = {}
    sqs = boto3.client("sqs", **KW)
    sqs.meta.events.register("after-call.sqs", hook("sqs", entries))
    std = sqs.create_queue(QueueName="dtq-fuzz")["QueueUrl"]
    dlq = sqs.create_queue(QueueName="dtq-fuzz-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
    sqs.set_queue_attributes(QueueUrl=std, Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": arn["Attributes"]["QueueArn"], "maxReceiveCount": "3"})})
    fifo = sqs.create_queue(QueueName="dtq-fuzz.fifo",
                            Attributes={"FifoQueue": "true"})["QueueUrl"]
    sqs.get_queue_url(QueueName="dtq-fuzz")
    sqs.get_queue_attributes(QueueUrl=std, AttributeNames=["All"])
    sqs.receive_message(QueueUrl=std, WaitTimeSeconds=0)  # empty
    sqs.send_message(QueueUrl=std, MessageBody=json.dumps(
        {"task_id": "k1", "task_name": "dtq.exec", "labels": {}, "args": [],
         "kwargs": {"argv": ["true"]}}),
        MessageAttributes={"reason": {"DataType": "String", "StringValue": "ok"},
                           "n": {"DataType": "Number", "StringValue": "42"},
                           "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}})
    sqs.send_message(QueueUrl=fifo, MessageBody="fifo body \u00e9", MessageGroupId="g",
                     MessageDeduplicationId="d1")
    entries["SendMessageBatch"] = 3
    sqs.send_message_batch(QueueUrl=std, Entries=[
        {"Id": str(i), "MessageBody": f"body {i}"} for i in range(3)])
    entries["SendMessageBatch"] = 2
    sqs.send_message_batch(QueueUrl=fifo, Entries=[
        {"Id": "0", "MessageBody": "a", "MessageGroupId": "g", "MessageDeduplicationId": "a"},
        {"Id": "1", "MessageBody": "b", "MessageGroupId": "g", "MessageDeduplicationId": "b"}])
    entries["ReceiveMessage"] = 0
    got = sqs.receive_message(QueueUrl=std, MaxNumberOfMessages=10, VisibilityTimeout=30,
                              AttributeNames=["All"], MessageAttributeNames=["All"])
    sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=10, AttributeNames=["All"],
                        MessageAttributeNames=["All"])
    handles = [m["ReceiptHandle"] for m in got.get("Messages", [])]
    sqs.change_message_visibility(QueueUrl=std, ReceiptHandle=handles[0], VisibilityTimeout=60)
    entries["ChangeMessageVisibilityBatch"] = 2
    sqs.change_message_visibility_batch(QueueUrl=std, Entries=[
        {"Id": "0", "ReceiptHandle": handles[1], "VisibilityTimeout": 0},
        {"Id": "1", "ReceiptHandle": "not-a-handle", "VisibilityTimeout": 0}])
    sqs.delete_message(QueueUrl=std, ReceiptHandle=handles[0])
    entries["DeleteMessageBatch"] = len(handles[1:]) + 1
    sqs.delete_message_batch(QueueUrl=std, Entries=[
        {"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles[1:] + ["bogus"])])
    sqs.purge_queue(QueueUrl=fifo)
    # error answers
    call(sqs.get_queue_url, QueueName="no-such-queue")
    call(sqs.send_message, QueueUrl=fifo, MessageBody="x")
    call(sqs.receive_message, QueueUrl=std, MaxNumberOfMessages=11)
    call(sqs.change_message_visibility, QueueUrl=std, ReceiptHandle="bogus",
         VisibilityTimeout=10)
    call(sqs.create_queue, QueueName="bad name!")
    call(sqs.send_message_batch, QueueUrl=std, Entries=[])
    call(sqs.get_queue_attributes, QueueUrl=std + "-gone", AttributeNames=["All"])


def capture_ecs():
    ec2 = boto3.resource("ec2", **KW)
    ecs = boto3.client("ecs", **KW)
    ecs.meta.events.register("after-call.ecs", hook("ecs", {}))
    ecs.create_cluster(clusterName="dtq")
    instance = ec2.create_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)[0]
    ecs.register_container_instance(
        cluster="dtq", instanceIdentityDocument=json.dumps(
            ec2_utils.generate_instance_identity_document(instance)))
    ecs.register_task_definition(family="worker", containerDefinitions=[
        {"name": "worker", "image": "dtq:test", "cpu": 10, "memory": 64}])
    ecs.create_service(cluster="dtq", serviceName="worker", taskDefinition="worker",
                       desiredCount=1)
    tasks = ecs.run_task(cluster="dtq", taskDefinition="worker", count=2,
                         startedBy="dtq-test")["tasks"]
    ecs.describe_services(cluster="dtq", services=["worker", "missing"])
    ecs.update_service(cluster="dtq", service="worker", desiredCount=3)
    ecs.list_tasks(cluster="dtq", desiredStatus="RUNNING")
    ecs.list_tasks(cluster="dtq", maxResults=1)
    ecs.describe_tasks(cluster="dtq", tasks=[t["taskArn"] for t in tasks] +
                       ["arn:aws:ecs:us-east-1:123456789012:task/dtq/0000"])
    call(ecs.describe_services, cluster="nowhere", services=["worker"])
    call(ecs.update_service, cluster="dtq", service="missing", desiredCount=1)


with mock_aws():
    capture_sqs()
    capture_ecs()
print(f"{sum(seen.values())} seeds in {out}")
