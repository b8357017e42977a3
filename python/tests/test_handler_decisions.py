"""DtqStepHandler.check_step_health / terminate_step and DtqRunLauncher.check_run_worker_health
with the ledger's answers given by an in-memory stand-in of the client object: what each
answer becomes for Dagster, that transient errors raise, and that a lost execution's row is
cancelled. (No process involved; the protocol is test_shim_protocol.py, the real shim is
tests/e2e.)"""

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from dagster import reconstructable
from dagster._core.events import DagsterEventType
from dagster._core.execution.plan.state import KnownExecutionState
from dagster._core.execution.retries import RetryMode
from dagster._core.launcher import WorkerStatus
from dagster._grpc.types import ExecuteStepArgs

from dagster_dtq import DtqRunLauncher, DtqStepHandler, ShimError, ShimSettings
from dagster_dtq.health import LedgerAnswerError
from dtq_examples.jobs import single_op

RUN_ID = "11111111-2222-4333-8444-555555555555"
NOW = datetime(2026, 11, 22, 8, 42, tzinfo=timezone.utc)


class FakeClient:
    """Answers status from a dict of rows; records cancels; raises when told to."""

    def __init__(self, rows=None, fail=None):
        self.rows = rows or {}
        self.fail = fail
        self.cancelled = []

    def status(self, keys):
        if self.fail:
            raise self.fail
        return [self.rows.get(k, {"key": k, "found": False}) for k in keys]

    def cancel(self, key):
        self.cancelled.append(key)
        if key not in self.rows:
            raise ShimError("NOT_FOUND", key)
        return {"key": key, "state": self.rows[key]["state"], "cancel_requested": True}


def events(*pairs):
    records = [
        SimpleNamespace(
            event_log_entry=SimpleNamespace(
                dagster_event=SimpleNamespace(step_key=step, event_type=etype)
            )
        )
        for step, etype in pairs
    ]
    return SimpleNamespace(
        get_records_for_run=lambda run_id, of_type=None: SimpleNamespace(records=records)
    )


def ctx(attempt=0, instance=None):
    args = ExecuteStepArgs(
        job_origin=reconstructable(single_op).get_python_origin(),
        run_id=RUN_ID,
        step_keys_to_execute=["one"],
        instance_ref=None,
        retry_mode=RetryMode.DEFERRED,
        known_state=KnownExecutionState(previous_retry_attempts={"one": attempt}),
        should_verify_step=True,
    )
    return SimpleNamespace(execute_step_args=args, instance=instance or events())


def handler(client):
    return DtqStepHandler(ShimSettings(), client=client, clock=lambda: NOW, exit_grace=10)


def row(key, state, **extra):
    base = {
        "key": key,
        "found": True,
        "state": state,
        "attempts": 1,
        "max_attempts": 3,
        "lease_expired": False,
        "worker": {"id": "w1", "host": "h1", "pid": 7, "alive": True},
        "finished_at": None,
    }
    base.update(extra)
    return base


KEY0 = f"{RUN_ID}/one/0"
KEY1 = f"{RUN_ID}/one/1"
LONG_AGO = (NOW - timedelta(minutes=5)).isoformat()


def test_health_reads_the_row_of_the_current_attempt():
    client = FakeClient(
        {KEY0: row(KEY0, "succeeded", finished_at=LONG_AGO), KEY1: row(KEY1, "running")}
    )
    assert handler(client).check_step_health(ctx(attempt=1)).is_healthy


def test_running_is_healthy_and_lost_lease_is_unhealthy_and_cancelled():
    client = FakeClient({KEY0: row(KEY0, "running")})
    assert handler(client).check_step_health(ctx()).is_healthy
    client.rows[KEY0] = row(
        KEY0, "running", lease_expired=True, worker={"id": "w1", "alive": False}
    )
    result = handler(client).check_step_health(ctx())
    assert not result.is_healthy and "lease expired" in result.unhealthy_reason
    assert client.cancelled == [KEY0]


def test_exit_without_terminal_event_is_unhealthy():
    client = FakeClient({KEY0: row(KEY0, "succeeded", exit_code=0, finished_at=LONG_AGO)})
    result = handler(client).check_step_health(ctx())
    assert not result.is_healthy and "without a terminal step event" in result.unhealthy_reason
    assert client.cancelled == []


def test_exit_with_terminal_event_is_healthy():
    client = FakeClient({KEY0: row(KEY0, "succeeded", exit_code=0, finished_at=LONG_AGO)})
    inst = events(("one", DagsterEventType.STEP_SUCCESS), ("other", DagsterEventType.STEP_FAILURE))
    assert handler(client).check_step_health(ctx(instance=inst)).is_healthy


def test_terminal_events_of_other_steps_do_not_count():
    client = FakeClient({KEY0: row(KEY0, "succeeded", exit_code=0, finished_at=LONG_AGO)})
    inst = events(("other", DagsterEventType.STEP_SUCCESS))
    assert not handler(client).check_step_health(ctx(instance=inst)).is_healthy


def test_retry_attempts_count_earlier_terminal_events():
    client = FakeClient({KEY1: row(KEY1, "dead", error="lease_lost", finished_at=LONG_AGO)})
    one_retry = events(("one", DagsterEventType.STEP_UP_FOR_RETRY))
    result = handler(client).check_step_health(ctx(attempt=1, instance=one_retry))
    assert not result.is_healthy and "lease_lost" in result.unhealthy_reason


def test_missing_row_is_unhealthy():
    result = handler(FakeClient()).check_step_health(ctx())
    assert not result.is_healthy and "has no task" in result.unhealthy_reason


@pytest.mark.parametrize(
    "error",
    [
        ShimError("LEDGER_UNAVAILABLE", "connection refused", retryable=True),
        ShimError("SCHEMA_OUTDATED", "run dtq migrate"),
    ],
)
def test_errors_raise_instead_of_reporting_unhealthy(error):
    with pytest.raises(ShimError):
        handler(FakeClient(fail=error)).check_step_health(ctx())


def test_an_unknown_state_raises():
    with pytest.raises(LedgerAnswerError):
        handler(FakeClient({KEY0: row(KEY0, "hibernating")})).check_step_health(ctx())


class FakeInstance:
    def __init__(self, resumes=0):
        self.resumes = resumes

    def count_resume_run_attempts(self, run_id):
        return self.resumes


def launcher(client, resumes=0):
    inst = FakeInstance(resumes)
    lau = DtqRunLauncher(client=client, clock=lambda: NOW)
    lau.register_instance(inst)
    lau._keep = inst  # the launcher holds a weakref only
    return lau


RUN = SimpleNamespace(run_id=RUN_ID)


def test_run_worker_health_follows_the_current_run_worker():
    run_key, resume_key = f"{RUN_ID}/run", f"{RUN_ID}/run/resume/1"
    client = FakeClient(
        {
            run_key: row(run_key, "running", lease_expired=True, worker={"alive": False}),
            resume_key: row(resume_key, "running"),
        }
    )
    assert launcher(client, resumes=1).check_run_worker_health(RUN).status == WorkerStatus.RUNNING
    lost = launcher(client, resumes=0).check_run_worker_health(RUN)
    assert lost.status == WorkerStatus.FAILED
    assert client.cancelled == [run_key]


def test_run_worker_health_raises_on_transient_errors():
    down = ShimError("LEDGER_UNAVAILABLE", "down", retryable=True)
    with pytest.raises(ShimError):
        launcher(FakeClient(fail=down)).check_run_worker_health(RUN)


def test_run_worker_debug_info_names_the_task():
    key = f"{RUN_ID}/run"
    client = FakeClient({key: row(key, "failed", exit_code=1, error="exit 1")})
    info = launcher(client).get_run_worker_debug_info(RUN)
    assert key in info and "exit 1" in info and "w1" in info
