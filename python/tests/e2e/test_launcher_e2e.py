"""End to end: whole runs launched by DtqRunLauncher (from the generated dagster.yaml), the
run worker itself a dtq task (`dagster api execute_run` on a dtq worker), its steps dtq tasks
too."""

import json
import subprocess

import pytest
from dagster import DagsterRunStatus
from dagster._core.events import DagsterEventType
from dagster._core.launcher import LaunchRunContext, WorkerStatus
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import serialize_value
from dtq_stack import iter_events, pid_alive, python, wait_until

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
