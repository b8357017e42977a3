#!/usr/bin/env python3
"""A plain TaskIQ producer (taskiq + taskiq-aio-sqs) that knows nothing of dtq.

It declares a task named "dtq.exec" (the name dtq's worker runs) and kicks it twice
onto the queue named by DTQ_QUEUE_URL: once with TaskIQ's own `timeout` label set
to 1 second around a 30-second sleep, once a quick echo. It prints
"<task_id> <what>" per message; the worker keys such tasks by task_id.
"""
import asyncio
import os

from taskiq_aio_sqs import SQSBroker


async def main():
    broker = SQSBroker(
        os.environ["DTQ_QUEUE_URL"].rsplit("/", 1)[1],
        endpoint_url=os.environ["DTQ_TEST_SQS_ENDPOINT"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )

    @broker.task(task_name="dtq.exec")
    async def dtq_exec(*argv: str) -> None:  # runs in dtq, never here
        raise NotImplementedError

    await broker.startup()
    slow = await dtq_exec.kicker().with_labels(timeout=1).kiq("/bin/sleep", "30")
    print(slow.task_id, "slow")
    quick = await dtq_exec.kiq("/bin/sh", "-c", "echo hello from taskiq")
    print(quick.task_id, "quick")
    await broker.shutdown()


asyncio.run(main())
