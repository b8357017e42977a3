"""End to end: whole runs launched by DtqRunLauncher (from the generated dagster.yaml), the
run worker itself a dtq task (`dagster api execute_run` on a dtq worker), its steps dtq tasks
too; a run whose run worker dies is resumed by run monitoring (`dagster api resume_run`)."""

import json
import logging
import os
import subprocess
import time

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.events import DagsterEventType
from dagster._core.launcher import LaunchRunContext, WorkerStatus
from dagster._core.storage.dagster_run import RunsFilter
from dagster._daemon.monitoring.run_monitoring import (
    RESUME_RUN_LOG_MESSAGE,
    monitor_started_run,
)
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import serialize_value
from dtq_stack import dagster_yaml, iter_events, kill_group, pid_alive, python, wait_until

from dagster_dtq import DtqRunLauncher
from dagster_dtq.keys import run_task
from dagster_dtq.launcher import RUN_TASK_KEY_TAG

pytestmark = pytest.mark.e2e

ET = DagsterEventType

QUICK = {"execution": {"config": {"health_check_interval": 2, "exit_grace": 3}}}


def test_instance_uses_the_dtq_run_launcher(instance):
    assert isinstance(instance.run_launcher, DtqRunLauncher)
    assert instance.run_monitoring_enabled


def test_run_launched_through_the_launcher_completes(stack, runs):
    run = runs.launch("diamond", QUICK)
    finished = runs.wait(run.run_id, timeout=150)
    assert finished.status == DagsterRunStatus.SUCCESS, runs.diagnose(run.run_id)
    run_key = f"{run.run_id}/run"
    assert finished.tags[RUN_TASK_KEY_TAG] == run_key
    wait_until(
        lambda: stack.status([run_key])[0]["state"] == "succeeded", 30, what="run task to end"
    )
    assert stack.attempt_rows(run_key) == 1
    assert stack.attempt_workers(run_key)[0] in {w.name for w in stack.workers}
    for step in ("one", "split", "double", "triple", "join"):
        assert stack.attempt_rows(f"{run.run_id}/{step}/0") == 1


def test_duplicate_execute_run_message_does_not_fail_the_run(stack, runs):
    config = {**QUICK, "ops": {"long_step": {"config": {"seconds": 10}}}}
    run = runs.launch("long_running", config)
    runs.wait_for_step_event(run.run_id, "long_step", ET.STEP_START)
    launcher = runs.instance.run_launcher
    health = launcher.check_run_worker_health(runs.instance.get_run_by_id(run.run_id))
    assert health.status == WorkerStatus.RUNNING, health
    # 1. The same task submitted again (a redelivered or re-sent message): dtq knows the key.
    args = ExecuteRunArgs(
        job_origin=run.job_code_origin, run_id=run.run_id, instance_ref=runs.instance.get_ref()
    )
    task = run_task(args, 0, run.job_name)
    out = stack.run_dtq(["executor-shim", "submit"], stdin=json.dumps(task))
    assert json.loads(out.stdout)["created"] is False
    # 2. A duplicate that does reach Dagster (e.g. run again after a lost lease): with
    # run_monitoring.enabled, Dagster ignores it instead of failing the run.
    dup = subprocess.run(
        [python(), "-m", "dagster", "api", "execute_run", serialize_value(args)],
        env=stack.run_worker_env(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert dup.returncode == 0, dup.stderr[-2000:]
    finished = runs.wait(run.run_id, timeout=120)
    assert finished.status == DagsterRunStatus.SUCCESS, runs.diagnose(run.run_id)
    messages = [e.message or "" for e in iter_events(runs.instance, run.run_id, [ET.ENGINE_EVENT])]
    assert any("Ignoring a duplicate run" in m for m in messages)
    assert stack.attempt_rows(f"{run.run_id}/run") == 1
    assert stack.attempt_rows(f"{run.run_id}/long_step/0") == 1


def test_terminate_through_the_launcher(stack, runs):
    config = {**QUICK, "ops": {"long_step": {"config": {"seconds": 300}}}}
    run = runs.launch("long_running", config)
    pid = runs.step_pid(run.run_id, "long_step")
    runs.wait_for_step_event(run.run_id, "long_step", ET.STEP_START)
    assert runs.instance.run_launcher.terminate(run.run_id) is True
    finished = runs.wait(run.run_id, timeout=90)
    assert finished.status == DagsterRunStatus.CANCELED, runs.diagnose(run.run_id)
    wait_until(lambda: not pid_alive(pid), 30, what=f"step process {pid} to stop")
    for k in (f"{run.run_id}/run", f"{run.run_id}/long_step/0"):
        wait_until(
            lambda k=k: stack.status([k])[0]["state"] == "cancelled", 30, what=f"{k} cancelled"
        )


def test_terminating_a_queued_run_cancels_it_at_once(stack, runs):
    # No worker listens on this queue: the run task stays queued.
    queue_url, _ = stack.create_queue(f"idle-{stack.suffix}")
    launcher = DtqRunLauncher(queue_url=queue_url, dtq_path=str(stack.dtq))
    launcher.register_instance(runs.instance)
    run = runs.create("single_op")
    launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    [row] = stack.status([f"{run.run_id}/run"])
    assert row["state"] == "queued"
    assert launcher.terminate(run.run_id) is True
    assert runs.instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED
    assert stack.status([f"{run.run_id}/run"])[0]["state"] == "cancelled"


# -- resume_run -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resuming_instance(stack):
    """An instance on the stack's storage whose run monitoring resumes a run once, and whose
    launcher calls an exited run worker FAILED 2 s after it exited (10 s by default)."""
    home = stack.tmp / "dagster_home_resume"
    home.mkdir(exist_ok=True)
    yaml = dagster_yaml(dtq_path=str(stack.dtq), poll_interval=1, max_resume=1)
    dtq_line = f"    dtq_path: {stack.dtq}\n"
    assert dtq_line in yaml
    (home / "dagster.yaml").write_text(yaml.replace(dtq_line, dtq_line + "    exit_grace: 2\n"))
    with DagsterInstance.from_config(str(home)) as inst:
        yield inst


def monitor_until(runs, instance, run_id, done, timeout):
    """Dagster's run monitoring, one pass per second as its daemon does (poll_interval 1),
    until done() or the run leaves STARTED."""
    log = logging.getLogger("dtq-e2e-monitor")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        [record] = instance.get_run_records(filters=RunsFilter(run_ids=[run_id]))
        if record.dagster_run.status != DagsterRunStatus.STARTED:
            return
        monitor_started_run(instance, None, record, log)
        time.sleep(1)
    raise AssertionError(
        f"run monitoring: nothing happened to run {run_id} in {timeout}s\n{runs.diagnose(run_id)}"
    )


def engine_messages(instance, run_id):
    return [e.message or "" for e in iter_events(instance, run_id, [ET.ENGINE_EVENT])]


def test_run_worker_killed_mid_run_is_resumed_by_run_monitoring(stack, runs, resuming_instance):
    inst = resuming_instance
    config = {**QUICK, "ops": {"long_step_after": {"config": {"seconds": 15}}}}
    run = runs.create("quick_then_long", config)
    inst.launch_run(run.run_id, workspace=None)
    runs.wait_for_step_event(run.run_id, "long_step_after", ET.STEP_START)
    assert runs.step_keys(run.run_id, ET.STEP_SUCCESS) == ["one"]
    # The run worker: `dagster api execute_run`, a dtq worker's child in its own process
    # group. Kill that group, not the dtq worker: the step task goes on on its worker.
    [started] = [
        e
        for e in iter_events(inst, run.run_id, [ET.ENGINE_EVENT])
        if (e.message or "").startswith("Started process for run")
    ]
    meta = started.engine_event_data.metadata
    pid = int(getattr(meta["pid"], "value", meta["pid"]))
    group = os.getpgid(pid)  # the dtq worker's child (the entry point) leads it
    assert group not in {w.proc.pid for w in stack.workers} | {os.getpgid(0)}
    kill_group(group)
    wait_until(lambda: not pid_alive(pid), 10, what=f"run worker {pid} to die")

    # Run monitoring finds the worker gone (once dtq has given up on it) and resumes the run.
    run_key, resume_key = f"{run.run_id}/run", f"{run.run_id}/run/resume/1"
    monitor_until(
        runs,
        inst,
        run.run_id,
        lambda: RESUME_RUN_LOG_MESSAGE in engine_messages(inst, run.run_id),
        timeout=90,
    )
    assert stack.status([run_key])[0]["state"] != "running"
    # ...and goes on watching the resumed worker, which finishes the run.
    monitor_until(runs, inst, run.run_id, lambda: False, timeout=120)
    finished = runs.wait(run.run_id, timeout=30)
    assert finished.status == DagsterRunStatus.SUCCESS, runs.diagnose(run.run_id)

    messages = engine_messages(inst, run.run_id)
    assert messages.count(RESUME_RUN_LOG_MESSAGE) == 1
    assert any(m.startswith("Started process for resuming job") for m in messages)
    assert finished.tags[RUN_TASK_KEY_TAG] == resume_key
    wait_until(
        lambda: stack.status([resume_key])[0]["state"] == "succeeded", 30, what="resume task"
    )
    assert stack.attempt_rows(resume_key) == 1
    # The step that had succeeded ran once; the one in flight was waited for, not relaunched.
    for step in ("one", "long_step_after", "after_long"):
        assert runs.step_keys(run.run_id, ET.STEP_START).count(step) == 1, step
        assert stack.attempt_rows(f"{run.run_id}/{step}/0") == 1, step
    assert stack.status([f"{run.run_id}/long_step_after/1"])[0]["found"] is False
