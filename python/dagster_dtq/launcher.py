"""`DtqRunLauncher`: a whole run as one dtq task (`dagster api execute_run` on a dtq worker).

Configured in dagster.yaml; use it with `run_monitoring: {enabled: true}` (docs/dagster.md):
a run message delivered twice is then ignored by Dagster instead of failing the run, and
monitoring asks `check_run_worker_health` about runs whose worker died. With
`max_resume_run_attempts > 0` monitoring then resumes the run: a new task
(`dagster api resume_run`) whose executor carries on from the run's event log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from dagster import Field, IntSource, MetadataValue
from dagster._core.events import EngineEventData
from dagster._core.launcher import (
    CheckRunHealthResult,
    LaunchRunContext,
    ResumeRunContext,
    RunLauncher,
)
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from typing_extensions import Self

from dagster_dtq.config import ShimSettings, shim_config_fields
from dagster_dtq.events import KEY_LABEL, launched_task_keys
from dagster_dtq.health import (
    DEFAULT_EXIT_GRACE_SECONDS,
    decide_run_worker_health,
    describe_outcome,
    describe_worker,
)
from dagster_dtq.keys import run_task, run_task_key
from dagster_dtq.shim import ShimClient, ShimError, retry_transient, shared_client

log = logging.getLogger("dagster_dtq")

RUN_TASK_KEY_TAG = "dtq/run_task_key"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class DtqRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run as one task on dtq workers; terminates, monitors and resumes it
    through the ledger."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        *,
        max_attempts: int | None = None,
        run_timeout: int | None = None,
        exit_grace: float = DEFAULT_EXIT_GRACE_SECONDS,
        client: ShimClient | None = None,
        clock: Callable[[], datetime] = _utcnow,
        **shim_config: Any,
    ) -> None:
        self._inst_data = inst_data
        self._settings = ShimSettings.from_config(shim_config)
        self._max_attempts = max_attempts
        self._run_timeout = run_timeout
        self._exit_grace = exit_grace
        self._client = client
        self._clock = clock
        super().__init__()  # type: ignore[no-untyped-call]

    # -- ConfigurableClass ----------------------------------------------------------------

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            **shim_config_fields(),
            "max_attempts": Field(
                IntSource,
                is_required=False,
                description=(
                    "Executions dtq allows a run worker whose dtq worker died. Default: the"
                    " shim's max_attempts. Run monitoring resumes or fails the run meanwhile."
                ),
            ),
            "run_timeout": Field(
                IntSource,
                is_required=False,
                description="Seconds a run worker may run before dtq stops it (default 1h).",
            ),
            "exit_grace": Field(
                IntSource,
                is_required=False,
                default_value=int(DEFAULT_EXIT_GRACE_SECONDS),
                description=(
                    "Seconds after the run worker exited within which the run must have"
                    " finished; after that its health is FAILED."
                ),
            ),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> Self:
        return cls(inst_data=inst_data, **config_value)

    # -- the shim -------------------------------------------------------------------------

    @property
    def client(self) -> ShimClient:
        if self._client is None:
            self._client = shared_client(
                self._settings.argv, self._settings.process_env(), self._settings.request_timeout
            )
        return self._client

    def _current_key(self, run_id: str) -> str:
        """The task of the run's newest run worker (derived from Dagster's resume count)."""
        return run_task_key(run_id, self._instance.count_resume_run_attempts(run_id))

    def _resume_attempt(self, context: ResumeRunContext) -> int:
        """Which resume this is (1 for the first): Dagster's number, which it derives from
        the resume events it logs before calling resume_run, as `_current_key` does; failing
        that, the count of those events. Each resume is a new key, so a new execution."""
        if context.resume_attempt_number:
            return int(context.resume_attempt_number)
        return max(1, self._instance.count_resume_run_attempts(context.dagster_run.run_id))

    # -- RunLauncher ----------------------------------------------------------------------

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = context.job_code_origin
        if origin is None:
            raise ValueError(f"run {run.run_id} has no job code origin: cannot launch it")
        # set_exit_code_on_failure stays off: a failed run is Dagster's outcome, not a
        # crashed process for dtq to retry.
        args = ExecuteRunArgs(
            job_origin=origin, run_id=run.run_id, instance_ref=self._instance.get_ref()
        )
        self._submit(run, run_task(args, 0, run.job_name, self._max_attempts, self._run_timeout))

    @property
    def supports_resume_run(self) -> bool:
        return True

    def resume_run(self, context: ResumeRunContext) -> None:
        run = context.dagster_run
        origin = context.job_code_origin
        if origin is None:
            raise ValueError(f"run {run.run_id} has no job code origin: cannot resume it")
        attempt = self._resume_attempt(context)
        args = ResumeRunArgs(
            job_origin=origin, run_id=run.run_id, instance_ref=self._instance.get_ref()
        )
        task = run_task(args, attempt, run.job_name, self._max_attempts, self._run_timeout)
        self._submit(run, task)

    def _submit(self, run: DagsterRun, task: dict[str, Any]) -> None:
        key = task["key"]
        result = retry_transient(lambda: self.client.submit(task))
        queue = self._settings.queue_url() or "the shim's configured queue"
        self._instance.add_run_tags(run.run_id, {RUN_TASK_KEY_TAG: key})
        self._instance.report_engine_event(
            f"Run worker submitted to dtq: task {key} ({task['task_name']}) on queue {queue}"
            + ("" if result.get("created", True) else f", already known ({result.get('state')})")
            + ".",
            run,
            EngineEventData(
                metadata={
                    KEY_LABEL: MetadataValue.text(key),
                    "dtq queue": MetadataValue.text(queue),
                    "dtq state": MetadataValue.text(str(result.get("state"))),
                }
            ),
            cls=self.__class__,
        )

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        key = self._current_key(run_id)
        try:
            result = retry_transient(lambda: self.client.cancel(key))
        except ShimError as exc:
            if exc.code != "NOT_FOUND":
                raise
            result = {"key": key, "state": "missing", "cancel_requested": False}
        # Step tasks too: a run worker that may be resumed does not forward the termination
        # to its steps, and a queued run worker that never starts cannot.
        stopped_steps = self._cancel_step_tasks(run_id)
        state = result.get("state")
        self._instance.report_engine_event(
            f"Asked dtq to stop run worker task {key} (state {state}) and"
            f" {stopped_steps} step task(s).",
            run,
            EngineEventData(metadata={KEY_LABEL: MetadataValue.text(key)}),
            cls=self.__class__,
        )
        if result.get("cancel_requested") and state == "running":
            return True  # the run worker stops its steps and reports the run canceled
        # No run worker will report the cancellation: it never started, or is gone.
        self._instance.report_run_canceled(run, f"Run worker task {key} is {state}.")
        return True

    def _cancel_step_tasks(self, run_id: str) -> int:
        stopped = 0
        for key in launched_task_keys(self._instance, run_id):
            try:
                answer = self.client.cancel(key)
            except ShimError as exc:
                log.warning("could not cancel step task %s: %s", key, exc)
                continue
            if answer.get("cancel_requested") or answer.get("state") == "cancelled":
                stopped += 1
        return stopped

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        key = self._current_key(run.run_id)
        # Raises on transient errors: run monitoring logs them and asks again next time,
        # whereas UNKNOWN would make it resume or fail a healthy run.
        task = retry_transient(lambda: self.client.status([key]), attempts=2)[0]
        verdict = decide_run_worker_health(task, self._clock(), self._exit_grace)
        if verdict.cancel_row:
            try:
                self.client.cancel(key)
            except ShimError as exc:
                log.warning("could not cancel %s after its worker was lost: %s", key, exc)
        worker = task.get("worker") or {}
        return CheckRunHealthResult(
            verdict.status, verdict.message, run_worker_id=worker.get("id") or key
        )

    def get_run_worker_debug_info(
        self, run: DagsterRun, include_container_logs: bool | None = True
    ) -> str | None:
        key = self._current_key(run.run_id)
        try:
            task = self.client.status([key])[0]
        except ShimError as exc:
            return f"dtq task {key}: ledger not readable ({exc})"
        if task.get("found") is False:
            return f"dtq task {key}: not in the ledger"
        return f"dtq task {key}: {describe_outcome(task)}; worker {describe_worker(task)}"
