"""Fixtures of the end-to-end tests: the real stack (dtq_stack.py) and helpers that create,
launch and wait for runs of the example jobs (python/examples/dtq_examples/jobs.py).

The tests need the applets executor-shim, worker, queue and migrate. While `build/dtq --help`
(or $DTQ_BIN) does not list all of them, every test here is SKIPPED with the list of what is
missing; they never pass without running.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from dagster import reconstructable
from dagster._core.events import DagsterEventType
from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs
from dagster._serdes import serialize_value
from dtq_stack import (
    Services,
    Stack,
    dtq_bin,
    iter_events,
    kill_group,
    missing_applets,
    python,
    wait_until,
)

from dtq_examples import jobs

E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = missing_applets()
    if not missing:
        return
    reason = (
        f"{dtq_bin()} lacks the applet(s) {', '.join(missing)} that the end-to-end tests need"
        " (dtq --help lists only working applets)"
    )
    for item in items:
        if E2E_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def services():
    svc = Services()
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def stack(services, tmp_path_factory):
    st = Stack(services, tmp_path_factory.mktemp("dtq-e2e"))
    st.setup()
    st.start_workers(3)
    yield st
    st.teardown()


@pytest.fixture(scope="session")
def instance(stack):
    with stack.instance() as inst:
        yield inst


class Runs:
    """Creates runs of the example jobs and drives them the way Dagster's launchers do."""

    def __init__(self, stack: Stack, instance: Any) -> None:
        self.stack = stack
        self.instance = instance
        self.procs: list[subprocess.Popen[bytes]] = []

    def create(self, job_name: str, run_config: dict | None = None, **tags: str) -> Any:
        recon = reconstructable(getattr(jobs, job_name))
        return self.instance.create_run_for_job(
            job_def=recon.get_definition(),
            run_config=run_config or {},
            tags={"dtq/e2e": "true", **tags},
            job_code_origin=recon.get_python_origin(),
        )

    def start_run_worker(self, run: Any, resume: bool = False) -> subprocess.Popen[bytes]:
        """`dagster api execute_run` (or resume_run) in a subprocess, as a code server does."""
        cls = ResumeRunArgs if resume else ExecuteRunArgs
        args = cls(
            job_origin=run.job_code_origin,
            run_id=run.run_id,
            instance_ref=self.instance.get_ref(),
        )
        log = self.stack.tmp / f"run-{run.run_id[:8]}{'-resume' if resume else ''}.log"
        proc = subprocess.Popen(
            [
                python(),
                "-m",
                "dagster",
                "api",
                "resume_run" if resume else "execute_run",
                serialize_value(args),
            ],
            env=self.stack.run_worker_env(),
            stdin=subprocess.DEVNULL,
            stdout=open(log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def execute(self, job_name: str, run_config: dict | None = None, timeout: float = 120) -> Any:
        run = self.create(job_name, run_config)
        proc = self.start_run_worker(run)
        finished = self.wait(run.run_id, timeout)
        proc.wait(timeout=60)
        return finished

    def launch(self, job_name: str, run_config: dict | None = None) -> Any:
        """Through the instance's run launcher: DtqRunLauncher from dagster.yaml."""
        run = self.create(job_name, run_config)
        self.instance.launch_run(run.run_id, workspace=None)
        return run

    def wait(self, run_id: str, timeout: float = 120) -> Any:
        def finished():
            run = self.instance.get_run_by_id(run_id)
            return run if run is not None and run.is_finished else None

        try:
            return wait_until(finished, timeout, 0.5, f"run {run_id} to finish")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.diagnose(run_id)}") from None

    def diagnose(self, run_id: str) -> str:
        """Why a run is where it is: its status, its last events, its ledger rows, what the
        workers logged about it, and the status again last (CI may show only a part)."""
        status = f"run {run_id}: {self.instance.get_run_by_id(run_id).status}"
        lines = [status]
        for entry in list(self.instance.all_logs(run_id))[-30:]:
            ev = entry.dagster_event
            kind = ev.event_type_value if ev else "log"
            stamp = time.strftime("%H:%M:%S", time.gmtime(entry.timestamp))
            lines.append(f"  {stamp} {kind} {entry.step_key or ''} {entry.message or ''}"[:300])
        lines += [f"  {row}"[:400] for row in self.stack.ledger_rows(run_id)]
        lines.append(self.stack.worker_logs(about=run_id, lines=15))
        lines.append(status)
        return "\n".join(lines)

    def step_keys(self, run_id: str, event_type: Any) -> list[str]:
        return [e.step_key for e in iter_events(self.instance, run_id, [event_type])]

    def wait_for_step_event(self, run_id: str, step_key: str, event_type: Any, timeout=90) -> Any:
        def seen():
            return next(
                (
                    e
                    for e in iter_events(self.instance, run_id, [event_type])
                    if e.step_key == step_key
                ),
                None,
            )

        try:
            return wait_until(seen, timeout, 0.5, f"{event_type} of {step_key}")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.diagnose(run_id)}") from None

    def step_pid(self, run_id: str, step_key: str) -> int:
        """pid of the `dagster api execute_step` process (its STEP_WORKER_STARTED event)."""
        event = self.wait_for_step_event(run_id, step_key, DagsterEventType.STEP_WORKER_STARTED)
        meta = event.engine_event_data.metadata
        return int(getattr(meta["pid"], "value", meta["pid"]))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                kill_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def runs(stack, instance):
    helper = Runs(stack, instance)
    yield helper
    helper.close()
    # Keep three live workers for the next test, whatever this one killed.
    dead = [w for w in stack.workers if not w.alive()]
    stack.workers = [w for w in stack.workers if w.alive()]
    if dead:
        stack.start_workers(len(dead))


class Batch:
    """Runs started together and awaited one by one: the quick jobs run concurrently, so the
    suite costs about the longest of them rather than their sum (2 CPUs, ~3 s per step)."""

    def __init__(self, runs: Runs) -> None:
        self.runs = runs
        self.run_ids: dict[str, str] = {}

    def start(self, name: str, job_name: str, run_config: dict) -> None:
        run = self.runs.create(job_name, run_config)
        self.runs.start_run_worker(run)
        self.run_ids[name] = run.run_id

    def wait(self, name: str, timeout: float = 240) -> Any:
        return self.runs.wait(self.run_ids[name], timeout)


@pytest.fixture(scope="session")
def batch(stack, instance):
    """The quick jobs of test_executor_e2e.py, all started at once on first use."""
    helper = Runs(stack, instance)
    b = Batch(helper)
    counters = str(stack.counter_dir)
    b.start("single_op", "single_op", executor_config())
    b.start("serial_chain", "serial_chain", executor_config())
    b.start("diamond", "diamond", executor_config())
    fan = executor_config()
    fan["ops"] = {f"leaf_{i}": {"config": {"seconds": 3}} for i in range(10)}
    b.start("fan_out_10", "fan_out_10", fan)
    b.start("optional_outputs", "optional_outputs", executor_config())
    b.start("op_raises", "op_raises", executor_config())
    flaky = executor_config()
    flaky["ops"] = {"flaky": {"config": {"counter_dir": counters, "failures": 2}}}
    b.start("retry_policy", "retry_policy", flaky)
    asks = executor_config()
    asks["ops"] = {"asks_for_retry": {"config": {"counter_dir": counters, "failures": 2}}}
    b.start("retry_requested", "retry_requested", asks)
    greet = executor_config()
    greet["ops"] = {"greet": {"config": {"name": "dtq", "times": 2}}}
    greet["resources"] = {"multiplier": {"config": {"factor": 3}}}
    b.start("config_and_resources", "config_and_resources", greet)
    yield b
    helper.close()


def executor_config(**extra: Any) -> dict:
    """Run config of the dtq executor used by the tests: quick health checks."""
    return {"execution": {"config": {"health_check_interval": 2, "exit_grace": 3, **extra}}}
