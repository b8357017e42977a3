"""Idempotency keys and task payloads (dagster_dtq.keys)."""

import base64
import zlib

import pytest
from dagster import reconstructable
from dagster._core.execution.plan.state import KnownExecutionState
from dagster._core.execution.retries import RetryMode
from dagster._grpc.types import ExecuteRunArgs, ExecuteStepArgs, ResumeRunArgs
from dagster._serdes import deserialize_value

from dagster_dtq.keys import (
    MAX_KEY_BYTES,
    TASK_EXECUTE_RUN,
    TASK_EXECUTE_STEP,
    TASK_RESUME_RUN,
    compress_step_args,
    run_task,
    run_task_key,
    single_step_key,
    step_attempt,
    step_task,
    step_task_key,
)
from dtq_examples.jobs import single_op

RUN_ID = "0a1b2c3d-0000-4000-8000-000000000001"


def step_args(step_keys=("one",), retries=None) -> ExecuteStepArgs:
    return ExecuteStepArgs(
        job_origin=reconstructable(single_op).get_python_origin(),
        run_id=RUN_ID,
        step_keys_to_execute=list(step_keys),
        instance_ref=None,
        retry_mode=RetryMode.DEFERRED,
        known_state=KnownExecutionState(previous_retry_attempts=retries or {}),
        should_verify_step=True,
        print_serialized_events=False,
    )


def test_step_key_is_run_step_attempt():
    assert step_task_key(RUN_ID, "op_a", 0) == f"{RUN_ID}/op_a/0"
    assert step_task_key(RUN_ID, "op_a", 2) == f"{RUN_ID}/op_a/2"


def test_step_key_of_a_long_step_is_hashed_within_the_limit():
    long_step = "mapped_op[" + "x" * 600 + "]"
    key = step_task_key(RUN_ID, long_step, 1)
    assert len(key.encode()) <= MAX_KEY_BYTES
    assert key.startswith(f"{RUN_ID}/sha256:") and key.endswith("/1")
    assert key == step_task_key(RUN_ID, long_step, 1)  # deterministic
    assert key != step_task_key(RUN_ID, long_step + "y", 1)


def test_negative_attempts_are_refused():
    with pytest.raises(ValueError):
        step_task_key(RUN_ID, "a", -1)
    with pytest.raises(ValueError):
        run_task_key(RUN_ID, -1)


def test_run_keys():
    assert run_task_key(RUN_ID) == f"{RUN_ID}/run"
    assert run_task_key(RUN_ID, 0) == f"{RUN_ID}/run"
    assert run_task_key(RUN_ID, 2) == f"{RUN_ID}/run/resume/2"


def test_attempt_comes_from_dagsters_known_retry_state():
    assert step_attempt(step_args(), "one") == 0
    assert step_attempt(step_args(retries={"one": 2}), "one") == 2
    assert step_attempt(step_args(retries={"other": 5}), "one") == 0


def test_one_step_per_task():
    assert single_step_key(step_args()) == "one"
    with pytest.raises(ValueError):
        single_step_key(step_args(("a", "b")))


def test_compressed_args_are_what_dagster_api_execute_step_reads():
    args = step_args(retries={"one": 1})
    text = zlib.decompress(base64.b64decode(compress_step_args(args).encode())).decode()
    back = deserialize_value(text, ExecuteStepArgs)
    assert back.run_id == RUN_ID
    assert back.step_keys_to_execute == ["one"]
    assert back.should_verify_step is True
    # Dagster's own encoder produces the same string (the env var the worker sets).
    assert compress_step_args(args) == args._get_compressed_args()


def test_step_task_request():
    task = step_task(step_args(retries={"one": 1}), max_attempts=4, timeout=120)
    assert task["key"] == f"{RUN_ID}/one/1"
    assert task["task_name"] == TASK_EXECUTE_STEP
    assert set(task["kwargs"]) == {"execute_step_args"}
    assert task["labels"] == {"run_id": RUN_ID, "step_key": "one", "attempt": "1"}
    assert task["max_attempts"] == 4 and task["timeout"] == 120
    defaults = step_task(step_args())
    assert "max_attempts" not in defaults and "timeout" not in defaults


def test_run_task_requests():
    origin = reconstructable(single_op).get_python_origin()
    run = run_task(ExecuteRunArgs(job_origin=origin, run_id=RUN_ID, instance_ref=None), 0, "j")
    assert run["key"] == f"{RUN_ID}/run"
    assert run["task_name"] == TASK_EXECUTE_RUN
    assert deserialize_value(run["kwargs"]["execute_run_args"], ExecuteRunArgs).run_id == RUN_ID
    assert run["labels"] == {"run_id": RUN_ID, "job_name": "j"}
    resume = run_task(ResumeRunArgs(job_origin=origin, run_id=RUN_ID, instance_ref=None), 2)
    assert resume["key"] == f"{RUN_ID}/run/resume/2"
    assert resume["task_name"] == TASK_RESUME_RUN
    back = deserialize_value(resume["kwargs"]["resume_run_args"], ResumeRunArgs)
    assert back.run_id == RUN_ID
