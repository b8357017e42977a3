"""End to end: runs of the example jobs with dtq_executor, each step attempt executed by a
real `dtq worker` as `dagster api execute_step`, with real Dagster + dagster-postgres,
PostgreSQL and moto_server. The run worker is `dagster api execute_run` in a subprocess, as
Dagster's code server starts it."""

import signal
import time

import boto3
import pytest
from conftest import executor_config
from dagster import DagsterRunStatus
from dagster._core.events import DagsterEventType
from dtq_stack import iter_events, kill_group, metadata_text, pid_alive, wait_until

from dtq_examples.jobs import FAILURE_TEXT

pytestmark = pytest.mark.e2e

ET = DagsterEventType


def key(run, step, attempt=0):
    return f"{run.run_id}/{step}/{attempt}"


def settled_rows(stack, keys, timeout=30):
    """Ledger rows once none is queued or running: the run can finish (Dagster saw the last
    step event) a moment before the worker records the step process's exit."""

    def settled():
        rows = stack.status(keys)
        return rows if all(r.get("state") not in ("queued", "running") for r in rows) else None

    return wait_until(settled, timeout, what=f"ledger rows of {keys} to settle")


def assert_executed_once(stack, run, steps):
    """Every step: one ledger row, succeeded (the child exited 0), one execution."""
    rows = settled_rows(stack, [key(run, s) for s in steps])
    for step, row in zip(steps, rows, strict=True):
        assert row["found"] and row["state"] == "succeeded", (step, row)
        assert row["attempts"] == 1, (step, row)
        assert stack.attempt_rows(row["key"]) == 1, step


def test_single_op(stack, runs, batch):
    run = batch.wait("single_op")
    assert run.status == DagsterRunStatus.SUCCESS, runs.diagnose(run.run_id)
    assert_executed_once(stack, run, ["one"])

    # The launch event names the task and its queue.
    [starting] = list(iter_events(runs.instance, run.run_id, [ET.STEP_WORKER_STARTING]))
    assert metadata_text(starting, "dtq key") == key(run, "one")
    assert stack.queue_url in starting.message

    # The step shows which dtq worker ran it, as engine-event metadata in the UI.
    worker_events = [
        e
        for e in iter_events(runs.instance, run.run_id, [ET.ENGINE_EVENT])
        if (e.message or "").startswith("dtq worker")
    ]
    assert len(worker_events) == 1 and worker_events[0].step_key == "one"
    [worker_id] = stack.attempt_workers(key(run, "one"))
    assert metadata_text(worker_events[0], "dtq worker id") == worker_id
    assert worker_id in {w.name for w in stack.workers}
    by_name = {w.name: w for w in stack.workers}
    assert int(metadata_text(worker_events[0], "dtq worker pid")) == by_name[worker_id].proc.pid
    assert metadata_text(worker_events[0], "dtq worker host")


def test_serial_chain(stack, runs, batch):
    run = batch.wait("serial_chain")
    assert run.status == DagsterRunStatus.SUCCESS, runs.diagnose(run.run_id)
    steps = runs.step_keys(run.run_id, ET.STEP_SUCCESS)
    assert sorted(steps) == sorted(["one", "add_one", "add_one_2", "add_one_3", "expect_four"])
    assert_executed_once(stack, run, steps)


def test_diamond(stack, runs, batch):
    run = batch.wait("diamond")
    assert run.status == DagsterRunStatus.SUCCESS, runs.diagnose(run.run_id)
    assert_executed_once(stack, run, ["one", "split", "double", "triple", "join"])


def test_ten_way_fan_out_runs_in_parallel(stack, runs, batch):
    run = batch.wait("fan_out_10")
    assert run.status == DagsterRunStatus.SUCCESS, runs.diagnose(run.run_id)
    leaves = [f"leaf_{i}" for i in range(10)]
    assert_executed_once(stack, run, [*leaves, "collect"])
    rows = stack.status([key(run, s) for s in leaves])
    # Parallel: some leaf started before another one finished, on more than one worker.
    spans = sorted((r["started_at"], r["finished_at"]) for r in rows)
    overlapping = max(sum(1 for s, f in spans if s <= t < f) for t, _ in spans)
    assert overlapping >= 2, spans
    workers = {w for s in leaves for w in stack.attempt_workers(key(run, s))}
    assert len(workers) >= 2, workers


def test_several_and_optional_outputs(stack, runs, batch):
    run = batch.wait("optional_outputs")
    assert run.status == DagsterRunStatus.SUCCESS, runs.diagnose(run.run_id)
    assert_executed_once(stack, run, ["several_outputs", "use_always", "use_also"])
    assert "use_never" in runs.step_keys(run.run_id, ET.STEP_SKIPPED)
    [never] = stack.status([key(run, "use_never")])
    assert never == {"key": key(run, "use_never"), "found": False}


def test_op_that_raises_fails_the_run_and_skips_downstream(stack, runs, batch):
    run = batch.wait("op_raises")
    assert run.status == DagsterRunStatus.FAILURE
    [failure] = [
        e
        for e in iter_events(runs.instance, run.run_id, [ET.STEP_FAILURE])
        if e.step_key == "explode"
    ]
    assert FAILURE_TEXT in failure.step_failure_data.error.to_string()
    assert "after_explode" not in runs.step_keys(run.run_id, ET.STEP_START)
    assert stack.status([key(run, "after_explode")])[0]["found"] is False
    # User-code failure is Dagster's outcome: the step process itself exited 0, once.
    assert_executed_once(stack, run, ["one", "explode"])


def test_retry_policy_fails_twice_then_succeeds(stack, runs, batch):
    run = batch.wait("retry_policy")
    assert run.status == DagsterRunStatus.SUCCESS, runs.diagnose(run.run_id)
    assert runs.step_keys(run.run_id, ET.STEP_UP_FOR_RETRY) == ["flaky", "flaky"]
    # Three attempts, three ledger keys, each executed once; no fourth.
    rows = settled_rows(stack, [key(run, "flaky", attempt) for attempt in range(3)])
    for row in rows:
        assert row["state"] == "succeeded" and stack.attempt_rows(row["key"]) == 1
    assert stack.status([key(run, "flaky", 3)])[0]["found"] is False
    counter = stack.counter_dir / f"{run.run_id}.flaky"
    assert counter.read_text() == "3"


def test_retry_requested(stack, runs, batch):
    run = batch.wait("retry_requested")
    assert run.status == DagsterRunStatus.SUCCESS, runs.diagnose(run.run_id)
    assert len(runs.step_keys(run.run_id, ET.STEP_UP_FOR_RETRY)) == 2
    rows = settled_rows(stack, [key(run, "asks_for_retry", a) for a in range(3)])
    assert [r["state"] for r in rows] == ["succeeded"] * 3


def test_run_config_and_resources(stack, runs, batch):
    run = batch.wait("config_and_resources")
    assert run.status == DagsterRunStatus.SUCCESS, runs.diagnose(run.run_id)
    [output] = [
        e for e in iter_events(runs.instance, run.run_id, [ET.STEP_OUTPUT]) if e.step_key == "greet"
    ]
    assert output.step_output_data.metadata["words"].value == 12  # "hello dtq" x 6


def test_termination_stops_the_step_and_cancels_the_run(stack, runs):
    config = executor_config()
    config["ops"] = {"long_step": {"config": {"seconds": 300}}}
    run = runs.create("long_running", config)
    proc = runs.start_run_worker(run)
    pid = runs.step_pid(run.run_id, "long_step")
    runs.wait_for_step_event(run.run_id, "long_step", ET.STEP_START)
    # What Dagster's terminate does for a run of a code server: mark it CANCELING and
    # interrupt its run worker, whose executor then terminates the running steps.
    started = time.monotonic()
    runs.instance.report_run_canceling(runs.instance.get_run_by_id(run.run_id))
    proc.send_signal(signal.SIGINT)
    finished = runs.wait(run.run_id, timeout=60)
    assert finished.status == DagsterRunStatus.CANCELED, runs.diagnose(run.run_id)
    # The worker stops the child within a heartbeat (2 s) plus the grace period (5 s).
    wait_until(lambda: not pid_alive(pid), 30, what=f"step process {pid} to stop")
    assert time.monotonic() - started < 30
    row = wait_until(
        lambda: (r := stack.status([key(run, "long_step")])[0])["state"] == "cancelled" and r,
        30,
        what="the ledger to say cancelled",
    )
    assert row["cancel_requested"] is True
    assert "after_long" not in runs.step_keys(run.run_id, ET.STEP_START)


def kill_worker_running(stack, runs, run, step):
    """kill -9 the dtq worker that runs the step, and the step process with it (a container
    that dies takes both). Returns the killed worker's id."""
    pid = runs.step_pid(run.run_id, step)
    runs.wait_for_step_event(run.run_id, step, ET.STEP_START)
    [row] = stack.status([key(run, step)])
    victim = next(w for w in stack.workers if w.name == row["worker"]["id"])
    kill_group(victim.proc.pid)
    victim.proc.wait(timeout=10)
    kill_group(pid)
    return victim.name


def test_worker_killed_step_is_retried_by_its_retry_policy(stack, runs):
    config = executor_config()
    config["ops"] = {"slow_once": {"config": {"counter_dir": str(stack.counter_dir)}}}
    run = runs.create("slow_once_with_retry", config)
    runs.start_run_worker(run)
    killed = kill_worker_running(stack, runs, run, "slow_once")
    # Lease (6 s) + health check (2 s) -> STEP_UP_FOR_RETRY -> attempt 1 on another worker.
    finished = runs.wait(run.run_id, timeout=90)
    assert finished.status == DagsterRunStatus.SUCCESS, runs.diagnose(run.run_id)
    [retry] = [
        e
        for e in iter_events(runs.instance, run.run_id, [ET.STEP_UP_FOR_RETRY])
        if e.step_key == "slow_once"
    ]
    assert "failed health check" in retry.step_retry_data.error.message
    first, second = stack.status([key(run, "slow_once", 0), key(run, "slow_once", 1)])
    # The lost attempt is cancelled in the ledger (Dagster gave up on it), or, when dtq
    # re-claimed its expired lease first, Dagster's verify_step refused the re-run. Either
    # way the op started at most once per attempt (attempt 0 may die before STEP_START).
    assert first["cancel_requested"] or first["state"] in ("cancelled", "dead", "succeeded"), first
    starts = [
        e
        for e in iter_events(runs.instance, run.run_id, [ET.STEP_START])
        if e.step_key == "slow_once"
    ]
    assert 1 <= len(starts) <= 2, starts
    [second] = settled_rows(stack, [second["key"]])
    assert second["state"] == "succeeded"
    assert stack.attempt_workers(key(run, "slow_once", 1)) != [killed]


def test_worker_killed_step_without_retry_policy_fails_the_run(stack, runs):
    config = executor_config()
    config["ops"] = {"long_step": {"config": {"seconds": 300}}}
    run = runs.create("long_running", config)
    runs.start_run_worker(run)
    kill_worker_running(stack, runs, run, "long_step")
    finished = runs.wait(run.run_id, timeout=90)  # never hangs
    assert finished.status == DagsterRunStatus.FAILURE, runs.diagnose(run.run_id)
    [failure] = [
        e
        for e in iter_events(runs.instance, run.run_id, [ET.STEP_FAILURE])
        if e.step_key == "long_step"
    ]
    assert "failed health check" in failure.step_failure_data.error.message


def test_duplicate_delivery_of_a_step_message_executes_once(stack, runs):
    queue_url, dlq_url = stack.create_queue(f"dup-{stack.suffix}")
    sqs = boto3.client(
        "sqs", endpoint_url=stack.env["AWS_ENDPOINT_URL"], region_name=stack.env["AWS_REGION"]
    )
    run = runs.create("single_op", executor_config(queue_url=queue_url))
    runs.start_run_worker(run)
    k = key(run, "one")
    wait_until(lambda: stack.status([k])[0]["found"], 60, what="the step to be submitted")
    # Deliver the step's message twice: receive it and send the same body again.
    got = wait_until(
        lambda: sqs.receive_message(
            QueueUrl=queue_url, VisibilityTimeout=0, MessageAttributeNames=["All"]
        ).get("Messages"),
        30,
        what="the step message",
    )
    body = got[0]["Body"]
    assert k in body
    extra = (
        {"MessageAttributes": got[0]["MessageAttributes"]}
        if got[0].get("MessageAttributes")
        else {}
    )
    sqs.send_message(QueueUrl=queue_url, MessageBody=body, **extra)
    workers = stack.start_workers(2, DTQ_QUEUE_URL=queue_url, DTQ_DLQ_URL=dlq_url)
    try:
        finished = runs.wait(run.run_id, timeout=90)
        assert finished.status == DagsterRunStatus.SUCCESS, runs.diagnose(run.run_id)

        def drained():
            attrs = sqs.get_queue_attributes(
                QueueUrl=queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            return all(v == "0" for v in attrs.values())

        wait_until(drained, 60, what="both copies to be consumed")
        assert stack.attempt_rows(k) == 1
        assert runs.step_keys(run.run_id, ET.STEP_START).count("one") == 1
    finally:
        stack.stop_workers(workers)


def test_resumed_run_worker_checks_steps_of_its_predecessor(stack, runs):
    """No state in memory: a new run worker (resume_run) health-checks the step the dead one
    launched, through the ledger, and waits for it instead of launching it again."""
    config = executor_config()
    config["ops"] = {"long_step": {"config": {"seconds": 15}}}
    run = runs.create("long_running", config)
    first = runs.start_run_worker(run)
    runs.wait_for_step_event(run.run_id, "long_step", ET.STEP_START)
    kill_group(first.pid)  # the run worker dies; its step goes on on its dtq worker
    first.wait(timeout=10)
    runs.start_run_worker(runs.instance.get_run_by_id(run.run_id), resume=True)
    finished = runs.wait(run.run_id, timeout=120)
    assert finished.status == DagsterRunStatus.SUCCESS, runs.diagnose(run.run_id)
    assert stack.attempt_rows(key(run, "long_step")) == 1
    assert stack.status([key(run, "long_step", 1)])[0]["found"] is False
    assert runs.step_keys(run.run_id, ET.STEP_START).count("long_step") == 1
