"""Dagster integration of dtq: an executor that runs each step attempt exactly once on dtq
workers fed by SQS, and a run launcher that runs whole runs there (docs/dagster.md)."""

from dagster_dtq.config import ShimSettings
from dagster_dtq.executor import (
    DtqStepDelegatingExecutor,
    DtqStepHandler,
    dtq_executor,
    make_dtq_executor,
)
from dagster_dtq.keys import run_task_key, step_task_key
from dagster_dtq.launcher import DtqRunLauncher
from dagster_dtq.shim import ShimClient, ShimError, ShimUnavailableError

__version__ = "0.1.0"

__all__ = [
    "DtqRunLauncher",
    "DtqStepDelegatingExecutor",
    "DtqStepHandler",
    "ShimClient",
    "ShimError",
    "ShimSettings",
    "ShimUnavailableError",
    "__version__",
    "dtq_executor",
    "make_dtq_executor",
    "run_task_key",
    "step_task_key",
]
