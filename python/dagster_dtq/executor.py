"""`dtq_executor`: Dagster's StepDelegatingExecutor with a step handler that runs each step
attempt as one dtq task (`dagster api execute_step` on a dtq worker).

The handler keeps nothing in memory that a health check needs: the task key of a step attempt
is derived from the run id, the step key and the retry count Dagster already tracks, and the
task's fate is read from the ledger. A run worker resumed by run monitoring therefore checks
on steps its predecessor launched.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, cast

from dagster import (
    DagsterEvent,
    Executor,
    Field,
    Float,
    InitExecutorContext,
    IntSource,
    MetadataValue,
    executor,
    multiple_process_executor_requirements,
)
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.events import DagsterEventType, EngineEventData
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.plan.step import ExecutionStep
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.execution.tags import get_tag_concurrency_limits_config
from dagster._core.executor.step_delegating import (
    CheckStepHealthResult,
    StepDelegatingExecutor,
    StepHandler,
    StepHandlerContext,
)

from dagster_dtq.config import ShimSettings, shim_config_fields
from dagster_dtq.events import (
    KEY_LABEL,
    WORKER_EVENT_PREFIX,
    count_terminal_step_events,
    reported_worker_keys,
    worker_metadata,
)
from dagster_dtq.health import (
    DEFAULT_EXIT_GRACE_SECONDS,
    TERMINAL_STATES,
    decide_step_health,
    describe_worker,
    queue_wait_seconds,
)
from dagster_dtq.keys import single_step_key, step_attempt, step_task, step_task_key
from dagster_dtq.shim import ShimClient, ShimError, retry_transient, shared_client

log = logging.getLogger("dagster_dtq")

DEFAULT_HEALTH_CHECK_INTERVAL = 20
# Storage ids the event tailer reads again on every poll (see DtqStepDelegatingExecutor).
DEFAULT_EVENT_TAILER_OFFSET = 200


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def dtq_executor_config() -> dict[str, Field]:
    return {
        **shim_config_fields(),
        "max_attempts": Field(
            IntSource,
            is_required=False,
            description=(
                "Executions dtq allows one step attempt when its worker dies or the step"
                " process fails outside Dagster. Default: the shim's max_attempts (3). Dagster's"
                " own RetryPolicy retries are separate tasks with keys of their own."
            ),
        ),
        "step_timeout": Field(
            IntSource,
            is_required=False,
            description=(
                "Seconds a step may run on a worker before dtq stops it. Default: the worker's"
                " task_timeout (1h)."
            ),
        ),
        "max_concurrent": Field(
            IntSource,
            is_required=False,
            description="Steps of one run in flight at once (per run, not global).",
        ),
        "tag_concurrency_limits": get_tag_concurrency_limits_config(),
        "retries": get_retries_config(),
        "health_check_interval": Field(
            IntSource,
            is_required=False,
            default_value=DEFAULT_HEALTH_CHECK_INTERVAL,
            description="Seconds between two ledger checks of each running step.",
        ),
        "exit_grace": Field(
            IntSource,
            is_required=False,
            default_value=int(DEFAULT_EXIT_GRACE_SECONDS),
            description=(
                "Seconds after a step process exited within which Dagster's terminal step event"
                " must show; after that the step is reported unhealthy."
            ),
        ),
        "poll_interval": Field(
            Float,
            is_required=False,
            description=(
                "Seconds the executor waits between two reads of the event log, which is how"
                " it learns that a step finished and launches the steps that were waiting for"
                " it. Default: DAGSTER_STEP_DELEGATING_EXECUTOR_SLEEP_SECONDS, else 1. Shorter"
                " starts dependent steps sooner (by half the interval per level of the graph,"
                " on average) at the price of more queries: see docs/dagster.md, Performance."
            ),
        ),
        "event_tailer_offset": Field(
            IntSource,
            is_required=False,
            default_value=DEFAULT_EVENT_TAILER_OFFSET,
            description=(
                "Event-log storage ids the executor reads again on each poll, so that events"
                " committed out of id order by concurrent step processes are not missed."
                " DAGSTER_EXECUTOR_POP_EVENTS_OFFSET, when set, wins."
            ),
        ),
    }


class DtqStepHandler(StepHandler):
    """Launches, checks and terminates step attempts as tasks of `dtq executor-shim`."""

    def __init__(
        self,
        settings: ShimSettings,
        *,
        max_attempts: int | None = None,
        step_timeout: int | None = None,
        exit_grace: float = DEFAULT_EXIT_GRACE_SECONDS,
        client: ShimClient | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._settings = settings
        self._max_attempts = max_attempts
        self._step_timeout = step_timeout
        self._exit_grace = exit_grace
        self._client = client
        self._clock = clock

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DtqStepHandler:
        return cls(
            ShimSettings.from_config(config),
            max_attempts=config.get("max_attempts"),
            step_timeout=config.get("step_timeout"),
            exit_grace=float(config.get("exit_grace", DEFAULT_EXIT_GRACE_SECONDS)),
        )

    @property
    def name(self) -> str:
        return "DtqStepHandler"

    @property
    def client(self) -> ShimClient:
        if self._client is None:
            self._client = shared_client(
                self._settings.argv, self._settings.process_env(), self._settings.request_timeout
            )
        return self._client

    @property
    def settings(self) -> ShimSettings:
        return self._settings

    def task_key(self, ctx: StepHandlerContext) -> tuple[str, str, int]:
        """(task key, step key, attempt) of the step attempt the context is about."""
        args = ctx.execute_step_args
        step_key = single_step_key(args)
        attempt = step_attempt(args, step_key)
        return step_task_key(args.run_id, step_key, attempt), step_key, attempt

    def launch_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        ctx = step_handler_context
        task = step_task(ctx.execute_step_args, self._max_attempts, self._step_timeout)
        key, step_key, attempt = self.task_key(ctx)
        step_context = ctx.get_step_context(step_key)
        queue = self._settings.queue_url() or "the shim's configured queue"
        yield DagsterEvent.step_worker_starting(
            step_context,
            message=f'Executing step "{step_key}" on a dtq worker: task {key} on queue {queue}.',
            metadata={
                KEY_LABEL: MetadataValue.text(key),
                "dtq queue": MetadataValue.text(queue),
                "retry attempt": MetadataValue.int(attempt),
            },
        )
        try:
            result = retry_transient(lambda: self.client.submit(task))
        except ShimError as exc:
            if exc.code != "KEY_REUSE":
                raise
            # An earlier run worker (before a resume) registered this attempt with other
            # known state. One execution per key: that row stands, and health checks follow it.
            yield DagsterEvent.engine_event(
                step_context,
                f"dtq already has task {key} from an earlier run worker; not queued again.",
                EngineEventData(metadata={KEY_LABEL: MetadataValue.text(key)}),
            )
            return
        if not result.get("created", True):
            yield DagsterEvent.engine_event(
                step_context,
                f"dtq already has task {key} (state {result.get('state')}); not queued again.",
                EngineEventData(metadata={KEY_LABEL: MetadataValue.text(key)}),
            )

    def check_step_health(self, step_handler_context: StepHandlerContext) -> CheckStepHealthResult:
        ctx = step_handler_context
        key, step_key, attempt = self.task_key(ctx)
        # Transient errors raise: Dagster logs them and asks again at the next interval.
        task = retry_transient(lambda: self.client.status([key]), attempts=2)[0]
        terminal_events = None
        if task.get("found") is not False and task.get("state") in TERMINAL_STATES:
            terminal_events = count_terminal_step_events(
                ctx.instance, ctx.execute_step_args.run_id, step_key
            )
        verdict = decide_step_health(
            task, attempt, terminal_events, self._clock(), self._exit_grace
        )
        if verdict.healthy:
            return CheckStepHealthResult.healthy()
        if verdict.cancel_row:
            # Dagster now fails or retries this attempt under a new key; make sure dtq does
            # not run the old one again once the lease has expired.
            try:
                self.client.cancel(key)
            except ShimError as exc:
                log.warning("could not cancel %s after its worker was lost: %s", key, exc)
        return CheckStepHealthResult.unhealthy(verdict.reason or f"dtq task {key} is gone")

    def terminate_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        ctx = step_handler_context
        key, step_key, _ = self.task_key(ctx)
        step_context = ctx.get_step_context(step_key)
        try:
            result = retry_transient(lambda: self.client.cancel(key))
        except ShimError as exc:
            if exc.code != "NOT_FOUND":
                raise
            yield DagsterEvent.engine_event(
                step_context,
                f"dtq has no task {key}: nothing to stop.",
                EngineEventData(metadata={KEY_LABEL: MetadataValue.text(key)}),
            )
            return
        state = result.get("state")
        if result.get("cancel_requested") and state == "running":
            what = "its worker stops the step process (SIGTERM, then SIGKILL after the grace)"
        elif state == "cancelled":
            what = "it had not started and never will"
        else:
            what = f"it had already finished ({state})"
        yield DagsterEvent.engine_event(
            step_context,
            f"Asked dtq to stop task {key}: {what}.",
            EngineEventData(
                metadata={
                    KEY_LABEL: MetadataValue.text(key),
                    "dtq state": MetadataValue.text(str(state)),
                }
            ),
        )


class _WorkerReporter:
    """Writes one engine event per step attempt naming the dtq worker that runs it.

    Triggered by the step's own STEP_START / STEP_RESTARTED event (written by the step process
    after the worker claimed the task, so the ledger already names the worker). The set of
    reported keys only avoids duplicate events; nothing depends on it.
    """

    def __init__(
        self,
        handler: DtqStepHandler,
        plan_context: PlanOrchestrationContext,
        execution_plan: ExecutionPlan,
    ) -> None:
        self._handler = handler
        self._plan_context = plan_context
        self._plan = execution_plan
        self._retries: dict[str, int] = defaultdict(int)
        self._reported: set[str] | None = None

    def observe(self, event: DagsterEvent) -> None:
        step_key = event.step_key
        if step_key is None:
            return
        if event.event_type == DagsterEventType.STEP_UP_FOR_RETRY:
            self._retries[step_key] += 1
        elif event.event_type in (DagsterEventType.STEP_START, DagsterEventType.STEP_RESTARTED):
            try:
                self._report(step_key)
            except Exception as exc:
                log.warning("could not report the dtq worker of step %s: %s", step_key, exc)

    def _report(self, step_key: str) -> None:
        run_id = self._plan_context.run_id
        if self._reported is None:
            self._reported = (
                reported_worker_keys(self._plan_context.instance, run_id)
                if self._plan_context.resume_from_failure
                else set()
            )
        attempt = self._retries[step_key]
        key = step_task_key(run_id, step_key, attempt)
        if key in self._reported:
            return
        self._reported.add(key)
        task = self._handler.client.status([key])[0]
        if task.get("found") is False or not task.get("worker"):
            return
        wait = queue_wait_seconds(task)
        waited = f", after {wait:.1f}s in the queue" if wait is not None else ""
        step = cast("ExecutionStep", self._plan.get_step_by_key(step_key))
        DagsterEvent.engine_event(
            self._plan_context.for_step(step),
            f"{WORKER_EVENT_PREFIX} {describe_worker(task)} runs step {step_key} attempt"
            f" {attempt} (task {key}, fence {task.get('fence')}{waited}).",
            EngineEventData(metadata=worker_metadata(task)),
        )


class DtqStepDelegatingExecutor(StepDelegatingExecutor):
    """StepDelegatingExecutor that also shows, per step attempt, which dtq worker ran it, and
    that tails the event log with an offset.

    Why the offset: many step processes write to Postgres at once, and a storage id is taken
    when a row is inserted, not when its transaction commits. A tailer whose cursor has passed
    id N never sees an event N-1 that committed after its query: a lost STEP_OUTPUT makes
    Dagster skip the consumers of an output that exists. Reading the last `offset` ids again
    on every poll (de-duplicated by storage id, as Dagster does) closes that window.
    """

    def __init__(
        self,
        step_handler: DtqStepHandler,
        event_tailer_offset: int = DEFAULT_EVENT_TAILER_OFFSET,
        **kwargs: Any,
    ) -> None:
        super().__init__(step_handler, **kwargs)
        self._dtq_handler = step_handler
        self._event_tailer_offset = event_tailer_offset

    def _get_pop_events_offset(self, instance: Any) -> int:
        if "DAGSTER_EXECUTOR_POP_EVENTS_OFFSET" in os.environ:
            return int(os.environ["DAGSTER_EXECUTOR_POP_EVENTS_OFFSET"])
        storage_default = int(instance.event_log_storage.default_run_scoped_event_tailer_offset())
        return max(self._event_tailer_offset, storage_default)

    @property
    def step_handler(self) -> DtqStepHandler:
        return self._dtq_handler

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        reporter = _WorkerReporter(self._dtq_handler, plan_context, execution_plan)
        for event in super().execute(plan_context, execution_plan):
            yield event
            reporter.observe(event)


def poll_interval_seconds(config: Mapping[str, Any]) -> float | None:
    """`poll_interval` as the executor's sleep, None (Dagster's default) when unset."""
    value = config.get("poll_interval")
    if value is None:
        return None
    seconds = float(value)
    if not 0 < seconds <= 60:
        raise DagsterInvalidConfigError(
            f"dtq executor: poll_interval must be in (0, 60] seconds, not {value!r}",
            [],
            value,
        )
    return seconds


def make_dtq_executor(config: Mapping[str, Any]) -> DtqStepDelegatingExecutor:
    """The executor for a validated executor config (what `dtq_executor` returns)."""
    retries = RetryMode.from_config(config.get("retries") or {"enabled": {}}) or RetryMode.ENABLED
    return DtqStepDelegatingExecutor(
        DtqStepHandler.from_config(config),
        retries=retries,
        max_concurrent=config.get("max_concurrent"),
        tag_concurrency_limits=config.get("tag_concurrency_limits"),
        should_verify_step=True,
        sleep_seconds=poll_interval_seconds(config),
        check_step_health_interval_seconds=int(
            config.get("health_check_interval", DEFAULT_HEALTH_CHECK_INTERVAL)
        ),
        event_tailer_offset=int(config.get("event_tailer_offset", DEFAULT_EVENT_TAILER_OFFSET)),
    )


@executor(
    name="dtq",
    config_schema=dtq_executor_config(),
    requirements=multiple_process_executor_requirements(),
)
def dtq_executor(init_context: InitExecutorContext) -> Executor:
    """Runs each step attempt of a job as one task on dtq workers, exactly once.

    Configure it in run config under ``execution: config:`` (every key optional; unset dtq
    settings come from the shim's environment, e.g. DTQ_QUEUE_URL and DTQ_LEDGER_DSN):

    .. code-block:: yaml

        execution:
          config:
            queue_url: {env: DTQ_QUEUE_URL}
            ledger_dsn: {env: DTQ_LEDGER_DSN}
            max_concurrent: 8
            retries: {enabled: {}}
    """
    return make_dtq_executor(init_context.executor_config)
