"""Event-log helpers (dagster_dtq.events) against a real, temporary Dagster instance."""

from dagster import DagsterInstance, MetadataValue
from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
from dagster._core.test_utils import instance_for_test

from dagster_dtq.events import (
    count_terminal_step_events,
    launched_task_keys,
    reported_worker_keys,
    worker_metadata,
)
from dtq_examples.jobs import single_op


def report(instance: DagsterInstance, run, event_type, step_key, message, metadata=None):
    event = DagsterEvent(
        event_type.value,
        job_name=run.job_name,
        step_key=step_key,
        message=message,
        event_specific_data=EngineEventData(metadata=metadata or {}),
    )
    instance.report_dagster_event(event, run_id=run.run_id)


def test_keys_and_counts_from_the_event_log():
    with instance_for_test() as instance:
        run = instance.create_run_for_job(single_op)
        key0, key1 = f"{run.run_id}/one/0", f"{run.run_id}/one/1"
        for key in (key0, key1, key0):
            report(
                instance,
                run,
                DagsterEventType.STEP_WORKER_STARTING,
                "one",
                "starting",
                {"dtq key": MetadataValue.text(key)},
            )
        report(
            instance,
            run,
            DagsterEventType.ENGINE_EVENT,
            "one",
            "dtq worker w1 runs step one",
            {"dtq key": MetadataValue.text(key0)},
        )
        report(
            instance,
            run,
            DagsterEventType.ENGINE_EVENT,
            "one",
            "something else",
            {"dtq key": MetadataValue.text(key1)},
        )
        assert launched_task_keys(instance, run.run_id) == [key0, key1]
        assert reported_worker_keys(instance, run.run_id) == {key0}
        assert count_terminal_step_events(instance, run.run_id, "one") == 0


def test_worker_metadata():
    meta = worker_metadata(
        {
            "key": "r/s/0",
            "fence": 2,
            "attempts": 2,
            "max_attempts": 3,
            "worker": {"id": "w1", "host": "h1", "pid": 42, "alive": True},
            "created_at": "2026-11-22T08:00:00.000Z",
            "started_at": "2026-11-22T08:00:01.500Z",
        }
    )
    assert meta["dtq key"].value == "r/s/0"
    assert meta["dtq worker id"].value == "w1"
    assert meta["dtq worker host"].value == "h1"
    assert meta["dtq worker pid"].value == 42
    assert meta["dtq fence"].value == 2
    assert meta["queue wait (s)"].value == 1.5
