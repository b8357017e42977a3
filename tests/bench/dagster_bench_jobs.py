"""The job of tests/bench/dagster_bench.py: 20 ops fanned out and back in, every op sleeping
`seconds` (run config, default 0.5), as two jobs of one graph that differ only in their
executor: `dtq_executor` and Dagster's `multiprocess_executor`.

    bench_start -> bench_work_00 .. bench_work_17 -> bench_gather

Both executors run this module in fresh processes (`dagster api execute_step` on a dtq worker,
a `spawn`ed child of the multiprocess executor), so it must be importable from PYTHONPATH.
"""

import time

from dagster import Config, Failure, In, OpExecutionContext, graph, multiprocess_executor, op

from dagster_dtq import dtq_executor

FAN_WIDTH = 18
OPS = FAN_WIDTH + 2


class BenchOpConfig(Config):
    seconds: float = 0.5


@op
def bench_start(config: BenchOpConfig) -> int:
    time.sleep(config.seconds)
    return 1000


def _make_work_op(i: int):
    @op(name=f"bench_work_{i:02d}")
    def work(config: BenchOpConfig, seed: int) -> int:
        time.sleep(config.seconds)
        return seed + i

    return work


WORK_OPS = [_make_work_op(i) for i in range(FAN_WIDTH)]


@op(ins={f"in_{i:02d}": In(int) for i in range(FAN_WIDTH)})
def bench_gather(context: OpExecutionContext, config: BenchOpConfig, **values: int) -> int:
    time.sleep(config.seconds)
    total = sum(values.values())
    expected = FAN_WIDTH * 1000 + sum(range(FAN_WIDTH))
    if total != expected:
        raise Failure(f"gathered {total}, expected {expected}")
    context.log.info(f"gathered {len(values)} results")
    return total


@graph
def bench_fan_out() -> None:
    seed = bench_start()
    bench_gather(**{f"in_{i:02d}": work(seed) for i, work in enumerate(WORK_OPS)})


# Functions at module scope, as `reconstructable` wants for jobs made with `to_job`.
def bench_fan_out_dtq():
    return bench_fan_out.to_job(name="bench_fan_out_dtq", executor_def=dtq_executor)


def bench_fan_out_mp():
    return bench_fan_out.to_job(name="bench_fan_out_mp", executor_def=multiprocess_executor)


OP_NAMES = ["bench_start", *[f"bench_work_{i:02d}" for i in range(FAN_WIDTH)], "bench_gather"]


def run_config(executor: str, seconds: float, max_concurrent: int) -> dict:
    """Run config of one benchmark run: the op duration, and the executor's settings.

    The multiprocess executor gets `max_concurrent`; dtq gets nothing: its concurrency is the
    fleet's (workers x worker_concurrency), which the driver sets up. `extra` keys of the
    dtq executor come from the caller.
    """
    ops = {name: {"config": {"seconds": seconds}} for name in OP_NAMES}
    if executor == "multiprocess":
        execution = {"config": {"max_concurrent": max_concurrent}}
    else:
        execution = {"config": {}}
    # Console logs off (warnings only) in the orchestrator and every step process alike;
    # the event log, which the measurements read, gets every event whatever this level.
    loggers = {"console": {"config": {"log_level": "WARNING"}}}
    return {"ops": ops, "execution": execution, "loggers": loggers}
