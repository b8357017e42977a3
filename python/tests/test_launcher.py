"""DtqRunLauncher's launch and resume paths with an in-memory client and instance: what each
submits (task name, key, payload, labels, limits), that every resume is a new execution, and
that the health check follows the newest run worker. (The real path, with Dagster's run
monitoring and dtq workers, is tests/e2e/test_launcher_e2e.py.)"""

from types import SimpleNamespace

import pytest
from dagster import reconstructable
from dagster._core.launcher import LaunchRunContext, ResumeRunContext, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs
from dagster._serdes import deserialize_value

from dagster_dtq import DtqRunLauncher
from dagster_dtq.keys import TASK_EXECUTE_RUN, TASK_RESUME_RUN
from dagster_dtq.launcher import RUN_TASK_KEY_TAG
from dtq_examples.jobs import single_op

RUN_ID = "22222222-3333-4444-8555-666666666666"
ORIGIN = reconstructable(single_op).get_python_origin()


class RecordingClient:
    """Takes submits as the shim does (a new key is queued) and answers status for them."""

    def __init__(self):
        self.submitted = []

    def submit(self, task):
        self.submitted.append(task)
        return {"key": task["key"], "created": True, "state": "queued"}

    def status(self, keys):
        known = {t["key"] for t in self.submitted}
        return [
            {"key": k, "found": True, "state": "queued", "attempts": 0, "max_attempts": 3}
            if k in known
            else {"key": k, "found": False}
            for k in keys
        ]


class FakeInstance:
    """The instance methods the launcher calls; `resumes` plays Dagster's count of the
    'Launching a new run worker to resume run' events."""

    def __init__(self, resumes=0):
        self.resumes = resumes
        self.tags = {}
        self.events = []

    def get_ref(self):
        return None

    def count_resume_run_attempts(self, run_id):
        return self.resumes

    def add_run_tags(self, run_id, tags):
        self.tags.update(tags)

    def report_engine_event(self, message, run, engine_event_data=None, cls=None):
        self.events.append(message)


def launcher(resumes=0, **config):
    client, inst = RecordingClient(), FakeInstance(resumes)
    lau = DtqRunLauncher(client=client, **config)
    lau.register_instance(inst)
    lau._keep = inst  # the launcher holds a weakref only
    return lau, client, inst


def dagster_run(origin=ORIGIN):
    return DagsterRun(job_name="single_op", run_id=RUN_ID, job_code_origin=origin)


def resume(lau, inst, attempt):
    """What DagsterInstance.resume_run does: log the resume event, then call the launcher."""
    inst.resumes += 1
    lau.resume_run(ResumeRunContext(dagster_run(), None, resume_attempt_number=attempt))


def test_the_launcher_supports_resume():
    assert DtqRunLauncher().supports_resume_run


def test_launch_submits_execute_run():
    lau, client, inst = launcher(max_attempts=2, run_timeout=600)
    lau.launch_run(LaunchRunContext(dagster_run(), None))
    [task] = client.submitted
    assert task["task_name"] == TASK_EXECUTE_RUN
    assert task["key"] == f"{RUN_ID}/run"
    args = deserialize_value(task["kwargs"]["execute_run_args"], ExecuteRunArgs)
    assert args.run_id == RUN_ID
    assert inst.tags[RUN_TASK_KEY_TAG] == f"{RUN_ID}/run"


def test_resume_submits_resume_run_under_its_own_key():
    lau, client, inst = launcher(max_attempts=2, run_timeout=600)
    resume(lau, inst, 1)
    [task] = client.submitted
    assert task["task_name"] == TASK_RESUME_RUN
    assert task["key"] == f"{RUN_ID}/run/resume/1"
    assert set(task["kwargs"]) == {"resume_run_args"}
    args = deserialize_value(task["kwargs"]["resume_run_args"], ResumeRunArgs)
    assert args.run_id == RUN_ID and args.job_origin == ORIGIN
    assert task["labels"] == {"run_id": RUN_ID, "job_name": "single_op", "resume_attempt": "1"}
    assert task["max_attempts"] == 2 and task["timeout"] == 600
    assert inst.tags[RUN_TASK_KEY_TAG] == f"{RUN_ID}/run/resume/1"
    assert any(f"{RUN_ID}/run/resume/1 (dagster.resume_run)" in m for m in inst.events)


def test_every_resume_is_a_new_execution_and_health_follows_it():
    lau, client, inst = launcher()
    run = SimpleNamespace(run_id=RUN_ID)
    lau.launch_run(LaunchRunContext(dagster_run(), None))
    health = lau.check_run_worker_health(run)
    assert health.status == WorkerStatus.RUNNING and health.run_worker_id == f"{RUN_ID}/run"
    for n in (1, 2):
        resume(lau, inst, n)
        # the key the health check asks about is the one just submitted
        assert lau._current_key(RUN_ID) == client.submitted[-1]["key"]
        assert lau.check_run_worker_health(run).run_worker_id == client.submitted[-1]["key"]
    keys = [t["key"] for t in client.submitted]
    assert keys == [f"{RUN_ID}/run", f"{RUN_ID}/run/resume/1", f"{RUN_ID}/run/resume/2"]


@pytest.mark.parametrize(("resumes", "key"), [(0, "resume/1"), (3, "resume/3")])
def test_without_an_attempt_number_the_resume_count_decides(resumes, key):
    lau, client, _ = launcher(resumes=resumes)
    lau.resume_run(ResumeRunContext(dagster_run(), None))
    assert client.submitted[0]["key"] == f"{RUN_ID}/run/{key}"


def test_a_run_without_code_origin_cannot_be_resumed():
    lau, client, _ = launcher(resumes=1)
    with pytest.raises(ValueError, match="no job code origin"):
        lau.resume_run(ResumeRunContext(dagster_run(origin=None), None, resume_attempt_number=1))
    assert client.submitted == []
