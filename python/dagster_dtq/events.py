"""What the plugin reads from, and writes to, Dagster's event log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import DagsterInstance, MetadataValue
from dagster._core.events import DagsterEventType

from dagster_dtq.health import queue_wait_seconds

# Metadata label of the task key on the STEP_WORKER_STARTING and worker engine events.
KEY_LABEL = "dtq key"
WORKER_EVENT_PREFIX = "dtq worker"

STEP_TERMINAL_EVENTS = frozenset(
    {
        DagsterEventType.STEP_SUCCESS,
        DagsterEventType.STEP_FAILURE,
        DagsterEventType.STEP_UP_FOR_RETRY,
    }
)


def count_terminal_step_events(instance: DagsterInstance, run_id: str, step_key: str) -> int:
    """STEP_SUCCESS + STEP_FAILURE + STEP_UP_FOR_RETRY events of one step: one per ended attempt."""
    records = instance.get_records_for_run(run_id, of_type=set(STEP_TERMINAL_EVENTS)).records
    return sum(
        1
        for record in records
        if record.event_log_entry.dagster_event is not None
        and record.event_log_entry.dagster_event.step_key == step_key
    )


def _metadata_text(metadata: Mapping[str, Any], label: str) -> str | None:
    value = metadata.get(label)
    if value is None:
        return None
    text = getattr(value, "value", value)
    return str(text) if text is not None else None


def launched_task_keys(instance: DagsterInstance, run_id: str) -> list[str]:
    """Keys of every step task launched for a run, from its STEP_WORKER_STARTING events."""
    keys: list[str] = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_WORKER_STARTING):
        event = entry.dagster_event
        if event is None:
            continue
        key = _metadata_text(event.engine_event_data.metadata or {}, KEY_LABEL)
        if key and key not in keys:
            keys.append(key)
    return keys


def reported_worker_keys(instance: DagsterInstance, run_id: str) -> set[str]:
    """Keys whose worker engine event is already in the log (a resumed run replays events)."""
    keys: set[str] = set()
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        if event is None or not (event.message or "").startswith(WORKER_EVENT_PREFIX):
            continue
        key = _metadata_text(event.engine_event_data.metadata or {}, KEY_LABEL)
        if key:
            keys.add(key)
    return keys


def worker_metadata(task: Mapping[str, Any]) -> dict[str, MetadataValue]:
    """Engine-event metadata that shows in the Dagster UI which worker runs a task."""
    worker = task.get("worker") or {}
    meta: dict[str, MetadataValue] = {KEY_LABEL: MetadataValue.text(str(task.get("key")))}
    if worker.get("id") is not None:
        meta["dtq worker id"] = MetadataValue.text(str(worker["id"]))
    if worker.get("host") is not None:
        meta["dtq worker host"] = MetadataValue.text(str(worker["host"]))
    if worker.get("pid") is not None:
        meta["dtq worker pid"] = MetadataValue.int(int(worker["pid"]))
    if task.get("fence") is not None:
        meta["dtq fence"] = MetadataValue.int(int(task["fence"]))
    if task.get("attempts") is not None:
        meta["dtq executions"] = MetadataValue.text(
            f"{task.get('attempts')} of {task.get('max_attempts')}"
        )
    wait = queue_wait_seconds(task)
    if wait is not None:
        meta["queue wait (s)"] = MetadataValue.float(round(wait, 3))
    return meta
