"""Idempotency keys and payloads of the tasks the plugin submits.

A key names one execution that must happen at most once: a step's retry attempt
(`<run_id>/<step_key>/<attempt>`), a run worker (`<run_id>/run`) or the worker of a resumed run
(`<run_id>/run/resume/<n>`). Keys are derived, never remembered, so any process (a resumed run
worker, the monitoring daemon) finds the ledger row of an execution another process started.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Any

from dagster._grpc.types import ExecuteRunArgs, ExecuteStepArgs, ResumeRunArgs
from dagster._serdes import serialize_value

MAX_KEY_BYTES = 512  # docs/executor-shim.md

TASK_EXECUTE_STEP = "dagster.execute_step"
TASK_EXECUTE_RUN = "dagster.execute_run"
TASK_RESUME_RUN = "dagster.resume_run"  # the worker runs `<dagster> api resume_run <args>`


def step_task_key(run_id: str, step_key: str, attempt: int) -> str:
    """`<run_id>/<step_key>/<attempt>`; a step key too long for the ledger is hashed."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, not {attempt}")
    key = f"{run_id}/{step_key}/{attempt}"
    if len(key.encode()) <= MAX_KEY_BYTES:
        return key
    digest = hashlib.sha256(step_key.encode()).hexdigest()
    return f"{run_id}/sha256:{digest}/{attempt}"


def run_task_key(run_id: str, resume_attempt: int = 0) -> str:
    """The run worker's key: `<run_id>/run`, or `<run_id>/run/resume/<n>` for resume n."""
    if resume_attempt < 0:
        raise ValueError(f"resume_attempt must be >= 0, not {resume_attempt}")
    if resume_attempt == 0:
        return f"{run_id}/run"
    return f"{run_id}/run/resume/{resume_attempt}"


def single_step_key(args: ExecuteStepArgs) -> str:
    """The one step of a step-delegating launch (the executor launches steps one by one)."""
    keys = list(args.step_keys_to_execute or [])
    if len(keys) != 1:
        raise ValueError(f"a dtq task runs exactly one step, not {keys}")
    return keys[0]


def step_attempt(args: ExecuteStepArgs, step_key: str) -> int:
    """The retry attempt (0 for the first execution) the args are about."""
    if args.known_state is None:
        return 0
    return int(args.known_state.get_retry_state().get_attempt_count(step_key))


def compress_step_args(args: ExecuteStepArgs) -> str:
    """base64(zlib(serialize_value(args))): DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS's format."""
    return base64.b64encode(zlib.compress(serialize_value(args).encode())).decode()


def step_task(
    args: ExecuteStepArgs,
    max_attempts: int | None = None,
    timeout: int | None = None,
) -> dict[str, Any]:
    """The submit request of one step execution."""
    step_key = single_step_key(args)
    attempt = step_attempt(args, step_key)
    task: dict[str, Any] = {
        "key": step_task_key(args.run_id, step_key, attempt),
        "task_name": TASK_EXECUTE_STEP,
        "kwargs": {"execute_step_args": compress_step_args(args)},
        "labels": {"run_id": args.run_id, "step_key": step_key, "attempt": str(attempt)},
    }
    return _with_limits(task, max_attempts, timeout)


def run_task(
    args: ExecuteRunArgs | ResumeRunArgs,
    resume_attempt: int = 0,
    job_name: str | None = None,
    max_attempts: int | None = None,
    timeout: int | None = None,
) -> dict[str, Any]:
    """The submit request of a run worker (execute_run), or of a resumed one (resume_run)."""
    labels = {"run_id": args.run_id}
    if job_name:
        labels["job_name"] = job_name
    if isinstance(args, ResumeRunArgs):
        labels["resume_attempt"] = str(resume_attempt)
        task: dict[str, Any] = {
            "key": run_task_key(args.run_id, resume_attempt),
            "task_name": TASK_RESUME_RUN,
            "kwargs": {"resume_run_args": serialize_value(args)},
            "labels": labels,
        }
    else:
        task = {
            "key": run_task_key(args.run_id),
            "task_name": TASK_EXECUTE_RUN,
            "kwargs": {"execute_run_args": serialize_value(args)},
            "labels": labels,
        }
    return _with_limits(task, max_attempts, timeout)


def _with_limits(
    task: dict[str, Any], max_attempts: int | None, timeout: int | None
) -> dict[str, Any]:
    if max_attempts is not None:
        task["max_attempts"] = int(max_attempts)
    if timeout is not None:
        task["timeout"] = int(timeout)
    return task
