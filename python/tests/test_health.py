"""Health decisions from ledger rows (dagster_dtq.health): every branch, no ledger needed."""

from datetime import datetime, timedelta, timezone

import pytest
from dagster._core.launcher import WorkerStatus

from dagster_dtq.health import (
    LedgerAnswerError,
    decide_run_worker_health,
    decide_step_health,
    parse_time,
    queue_wait_seconds,
    run_seconds,
)

NOW = datetime(2026, 11, 22, 8, 42, 0, tzinfo=timezone.utc)
KEY = "run-1/op_a/0"


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def row(state="running", **extra):
    task = {
        "key": KEY,
        "found": True,
        "state": state,
        "attempts": 1,
        "max_attempts": 3,
        "fence": 1,
        "cancel_requested": False,
        "lease_expired": False,
        "worker": {"id": "ip-10-0-1-7-4242", "host": "ip-10-0-1-7", "pid": 4242, "alive": True},
        "exit_code": None,
        "error": None,
        "created_at": iso(NOW - timedelta(seconds=30)),
        "started_at": iso(NOW - timedelta(seconds=20)),
        "finished_at": None,
    }
    task.update(extra)
    return task


def finished(state, seconds_ago=60, **extra):
    return row(state, finished_at=iso(NOW - timedelta(seconds=seconds_ago)), **extra)


def step(task, attempt=0, terminal=None, grace=10.0):
    return decide_step_health(task, attempt, terminal, NOW, grace)


def test_parse_time_forms():
    assert parse_time("2026-11-22T08:41:38.123Z") == datetime(
        2026, 11, 22, 8, 41, 38, 123000, tzinfo=timezone.utc
    )
    assert parse_time("2026-11-22T08:41:38+00:00").tzinfo is not None
    assert parse_time("2026-11-22T08:41:38").tzinfo == timezone.utc
    assert parse_time(None) is None
    assert parse_time("yesterday") is None


def test_queued_and_running_rows_are_healthy():
    assert step(row("queued", worker=None)).healthy
    assert step(row("running")).healthy


def test_missing_row_is_unhealthy():
    verdict = step({"key": KEY, "found": False})
    assert not verdict.healthy and "has no task" in verdict.reason


def test_expired_lease_without_a_live_worker_is_unhealthy_and_cancels_the_row():
    task = row(lease_expired=True, worker={"id": "w1", "host": "h", "pid": 1, "alive": False})
    verdict = step(task)
    assert not verdict.healthy and verdict.cancel_row
    assert "lease expired" in verdict.reason and "w1" in verdict.reason


def test_expired_lease_with_a_live_worker_is_not_yet_a_verdict():
    # The worker still heartbeats: it is about to notice the lost lease itself.
    task = row(lease_expired=True)
    assert step(task).healthy


def test_succeeded_with_terminal_event_of_this_attempt_is_healthy():
    assert step(finished("succeeded", exit_code=0), attempt=0, terminal=1).healthy
    assert step(finished("succeeded", exit_code=0), attempt=2, terminal=3).healthy


def test_succeeded_without_terminal_event_is_unhealthy_after_the_grace():
    task = finished("succeeded", seconds_ago=60, exit_code=0)
    verdict = step(task, attempt=1, terminal=1)  # attempt 0 ended; attempt 1 never reported
    assert not verdict.healthy
    assert "without a terminal step event" in verdict.reason
    assert not verdict.cancel_row


def test_succeeded_without_terminal_event_within_the_grace_is_healthy():
    task = finished("succeeded", seconds_ago=3, exit_code=0)
    assert step(task, terminal=0, grace=10).healthy
    assert not step(task, terminal=0, grace=2).healthy


def test_succeeded_without_finish_time_is_judged_at_once():
    assert not step(row("succeeded", exit_code=0), terminal=0).healthy


@pytest.mark.parametrize("state", ["failed", "dead", "cancelled"])
def test_terminal_rows_outside_dagster_are_unhealthy(state):
    task = finished(state, exit_code=1, error="exit 1")
    verdict = step(task, terminal=0)
    assert not verdict.healthy
    assert state in verdict.reason and "exit 1" in verdict.reason


@pytest.mark.parametrize("state", ["failed", "dead", "cancelled"])
def test_terminal_rows_are_healthy_when_dagster_saw_the_attempt_end(state):
    # e.g. STEP_FAILURE written, then the process died on its way out
    assert step(finished(state, exit_code=1), terminal=1).healthy


def test_terminal_rows_need_the_event_count():
    with pytest.raises(LedgerAnswerError):
        step(finished("succeeded"), terminal=None)


def test_unknown_state_raises_instead_of_guessing():
    with pytest.raises(LedgerAnswerError):
        step(row("paused"))
    with pytest.raises(LedgerAnswerError):
        decide_run_worker_health(row(None), NOW)


def run(task, grace=10.0):
    return decide_run_worker_health(task, NOW, grace)


def test_run_worker_health():
    assert run({"key": "r/run", "found": False}).status == WorkerStatus.NOT_FOUND
    assert run(row("queued", worker=None)).status == WorkerStatus.RUNNING
    assert run(row("running")).status == WorkerStatus.RUNNING
    lost = run(row(lease_expired=True, worker={"id": "w", "alive": False}))
    assert lost.status == WorkerStatus.FAILED and lost.cancel_row
    assert run(finished("succeeded", seconds_ago=2)).status == WorkerStatus.SUCCESS
    late = run(finished("succeeded", seconds_ago=60, exit_code=0))
    assert late.status == WorkerStatus.FAILED and "did not finish" in late.message
    for state in ("failed", "dead", "cancelled"):
        verdict = run(finished(state, error="timeout"))
        assert verdict.status == WorkerStatus.FAILED and "timeout" in verdict.message


def test_run_worker_health_is_never_unknown():
    tasks = [
        {"key": "k", "found": False},
        row("queued"),
        row("running"),
        row(lease_expired=True, worker={"alive": False}),
        *(finished(s) for s in ("succeeded", "failed", "dead", "cancelled")),
    ]
    assert all(run(t).status != WorkerStatus.UNKNOWN for t in tasks)


def test_timings():
    task = finished("succeeded", seconds_ago=5)
    assert queue_wait_seconds(task) == pytest.approx(10.0)
    assert run_seconds(task) == pytest.approx(15.0)
    assert run_seconds(row("running"), now=NOW) == pytest.approx(20.0)
    assert queue_wait_seconds(row("queued", started_at=None)) is None
