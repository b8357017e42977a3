"""Health decisions from a ledger row (a TASK object of `executor-shim status`).

Pure functions, so every branch is unit-tested without a ledger. The rule that shapes them:
Dagster turns an *unhealthy* step into STEP_FAILURE / STEP_UP_FOR_RETRY and a FAILED run
worker into a resumed or failed run, so "unhealthy" is said only when the execution is
definitely gone. Anything uncertain (a row we cannot read, a state we do not know) raises,
and Dagster asks again later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from dagster._core.launcher import WorkerStatus

TERMINAL_STATES = frozenset({"succeeded", "failed", "dead", "cancelled"})
KNOWN_STATES = TERMINAL_STATES | {"queued", "running"}

# After the child exits, its terminal event must already be in Dagster's storage (the child
# writes it before exiting). The grace covers clock skew between the ledger's database and
# this host, and event-log replicas that lag.
DEFAULT_EXIT_GRACE_SECONDS = 10.0


class LedgerAnswerError(ValueError):
    """The ledger's answer cannot be judged (unknown state, missing fields)."""


@dataclass(frozen=True)
class StepVerdict:
    healthy: bool
    reason: str | None = None
    # The execution is gone but its row is not terminal (an expired lease): cancel it so
    # that dtq does not run this attempt again after Dagster has moved on.
    cancel_row: bool = False


@dataclass(frozen=True)
class RunVerdict:
    status: WorkerStatus
    message: str
    cancel_row: bool = False


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp of the shim ('2026-11-22T08:41:38.123Z'), or None."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def task_state(task: Mapping[str, Any]) -> str:
    """The row's state; raises LedgerAnswerError for an answer that is not a known row."""
    if task.get("found") is False:
        return "missing"
    state = task.get("state")
    if state not in KNOWN_STATES:
        raise LedgerAnswerError(f"ledger row {task.get('key')!r} has unknown state {state!r}")
    return str(state)


def describe_worker(task: Mapping[str, Any]) -> str:
    worker = task.get("worker") or {}
    if not isinstance(worker, Mapping) or not worker:
        return "no worker"
    parts = [str(worker.get("id") or "?")]
    if worker.get("host"):
        parts.append(f"host {worker['host']}")
    if worker.get("pid") is not None:
        parts.append(f"pid {worker['pid']}")
    return ", ".join(parts)


def describe_outcome(task: Mapping[str, Any]) -> str:
    bits = [f"state {task.get('state')}"]
    if task.get("exit_code") is not None:
        bits.append(f"exit code {task['exit_code']}")
    if task.get("error"):
        bits.append(f"error: {task['error']}")
    bits.append(f"attempts {task.get('attempts')}/{task.get('max_attempts')}")
    return ", ".join(bits)


def lease_gone(task: Mapping[str, Any]) -> bool:
    """A running row whose lease ran out and whose worker stopped heartbeating."""
    worker = task.get("worker") or {}
    alive = bool(worker.get("alive")) if isinstance(worker, Mapping) else False
    return bool(task.get("lease_expired")) and not alive


def _seconds_since(when: datetime | None, now: datetime) -> float | None:
    if when is None:
        return None
    return (now - when).total_seconds()


def decide_step_health(
    task: Mapping[str, Any],
    attempt: int,
    terminal_events: int | None,
    now: datetime,
    grace_seconds: float = DEFAULT_EXIT_GRACE_SECONDS,
) -> StepVerdict:
    """Whether the execution of `attempt` (0-based) of a step is still alive or accounted for.

    terminal_events is the number of STEP_SUCCESS / STEP_FAILURE / STEP_UP_FOR_RETRY events
    Dagster has for the step: attempt k ended in Dagster's eyes iff there are more than k.
    It is only looked at for terminal rows; None means "not looked up".
    """
    state = task_state(task)
    key = task.get("key")
    if state == "missing":
        # launch_step registers the row before it returns, and the ledger is durable.
        return StepVerdict(False, f"dtq has no task {key}: it was never registered or was removed")
    if state == "queued":
        return StepVerdict(True)
    if state == "running":
        if lease_gone(task):
            return StepVerdict(
                False,
                f"dtq task {key} lost its worker ({describe_worker(task)}): the lease expired"
                " without a heartbeat",
                cancel_row=True,
            )
        return StepVerdict(True)
    # A terminal row: the child is gone. Fine if Dagster saw this attempt end.
    if terminal_events is None:
        raise LedgerAnswerError("terminal_events is needed to judge a finished task")
    if terminal_events > attempt:
        return StepVerdict(True)
    if state == "succeeded":
        waited = _seconds_since(parse_time(task.get("finished_at")), now)
        if waited is not None and waited < grace_seconds:
            return StepVerdict(True)
        return StepVerdict(
            False,
            f"dtq task {key} exited (code {task.get('exit_code')}) on {describe_worker(task)}"
            " without a terminal step event in Dagster's event log (a duplicate refused by"
            " verify_step, or a step process that died before reporting)",
        )
    if state == "cancelled":
        return StepVerdict(False, f"dtq task {key} was cancelled ({describe_outcome(task)})")
    # failed, dead: outside Dagster (framework error, timeout, attempts exhausted, poison).
    return StepVerdict(False, f"dtq task {key} ended outside Dagster: {describe_outcome(task)}")


def decide_run_worker_health(
    task: Mapping[str, Any],
    now: datetime,
    grace_seconds: float = DEFAULT_EXIT_GRACE_SECONDS,
) -> RunVerdict:
    """The run worker's status for Dagster's run monitoring, asked while the run is STARTED."""
    state = task_state(task)
    key = task.get("key")
    if state == "missing":
        return RunVerdict(WorkerStatus.NOT_FOUND, f"dtq has no task {key}")
    if state == "queued":
        return RunVerdict(WorkerStatus.RUNNING, f"dtq task {key} is queued for a worker")
    if state == "running":
        if lease_gone(task):
            return RunVerdict(
                WorkerStatus.FAILED,
                f"dtq task {key} lost its worker ({describe_worker(task)}): lease expired",
                cancel_row=True,
            )
        return RunVerdict(WorkerStatus.RUNNING, f"dtq task {key} runs on {describe_worker(task)}")
    if state == "succeeded":
        # The run worker exited 0, yet the run is still STARTED: unless the final run event
        # is about to show, the worker left without finishing the run.
        waited = _seconds_since(parse_time(task.get("finished_at")), now)
        if waited is not None and waited < grace_seconds:
            return RunVerdict(WorkerStatus.SUCCESS, f"dtq task {key} finished")
        return RunVerdict(
            WorkerStatus.FAILED,
            f"dtq task {key} exited (code {task.get('exit_code')}) but the run did not finish",
        )
    return RunVerdict(WorkerStatus.FAILED, f"dtq task {key}: {describe_outcome(task)}")


def queue_wait_seconds(task: Mapping[str, Any]) -> float | None:
    """Seconds from registration to the (latest) claim."""
    created, started = parse_time(task.get("created_at")), parse_time(task.get("started_at"))
    if created is None or started is None:
        return None
    return max(0.0, (started - created).total_seconds())


def run_seconds(task: Mapping[str, Any], now: datetime | None = None) -> float | None:
    """Seconds from the (latest) claim to the end, or to now while it runs."""
    started = parse_time(task.get("started_at"))
    if started is None:
        return None
    finished = parse_time(task.get("finished_at")) or now
    if finished is None:
        return None
    return max(0.0, (finished - started).total_seconds())
