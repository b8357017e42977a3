"""Example jobs run by dtq workers: the demo's fan-out/fan-in job, and one job per behaviour
the end-to-end tests check (python/tests/e2e).

Every job uses `dtq_executor`, so each step attempt is one dtq task. Attempts of a step run in
different processes, on different workers, so the jobs that count attempts keep the count in a
file named by run config (`counter_dir`), never in memory.
"""

import fcntl
import os
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from dagster import (
    Backoff,
    Config,
    ConfigurableResource,
    Failure,
    In,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    RetryPolicy,
    RetryRequested,
    job,
    op,
)

from dagster_dtq import dtq_executor


def _where() -> dict[str, str | int]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def bump_counter(counter_dir: str, name: str) -> int:
    """Adds one to the counter file counter_dir/name and returns the new value."""
    path = Path(counter_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read().strip()
        value = int(text) + 1 if text else 1
        f.seek(0)
        f.truncate()
        f.write(str(value))
        f.flush()
        os.fsync(f.fileno())
    return value


# -- the demo: 20 ops, fanned out and back in --------------------------------------------------

FAN_WIDTH = 18


class WorkConfig(Config):
    min_seconds: float = 0.5
    max_seconds: float = 2.0


@op
def start(context: OpExecutionContext) -> int:
    context.log.info(f"starting the fan-out on {_where()}")
    return 1000


def _make_work_op(i: int):  # noqa: ANN202 (an op definition)
    @op(name=f"work_{i:02d}")
    def work(context: OpExecutionContext, config: WorkConfig, seed: int) -> int:
        seconds = random.uniform(config.min_seconds, config.max_seconds)
        time.sleep(seconds)
        value = seed + i * i
        context.log.info(f"work_{i:02d} slept {seconds:.2f}s on {_where()} -> {value}")
        return value

    return work


WORK_OPS = [_make_work_op(i) for i in range(FAN_WIDTH)]


@op(ins={f"in_{i:02d}": In(int) for i in range(FAN_WIDTH)})
def gather(context: OpExecutionContext, **values: int) -> int:
    total = sum(values.values())
    expected = FAN_WIDTH * 1000 + sum(i * i for i in range(FAN_WIDTH))
    if total != expected:
        raise Failure(f"gathered {total}, expected {expected}")
    context.log.info(f"gathered {len(values)} results: {total}")
    return total


@job(executor_def=dtq_executor, description="20 ops: start -> 18 parallel work ops -> gather")
def fan_out_fan_in() -> None:
    seed = start()
    gather(**{f"in_{i:02d}": work(seed) for i, work in enumerate(WORK_OPS)})


# -- shapes ----------------------------------------------------------------------------------


@op
def one() -> int:
    return 1


@job(executor_def=dtq_executor)
def single_op() -> None:
    one()


@op
def add_one(x: int) -> int:
    return x + 1


@op
def expect_four(x: int) -> int:
    if x != 4:
        raise Failure(f"the chain delivered {x}, expected 4")
    return x


@job(executor_def=dtq_executor)
def serial_chain() -> None:
    expect_four(add_one(add_one(add_one(one()))))


@op(out={"left": Out(int), "right": Out(int)})
def split(x: int) -> Iterator[Output[int]]:
    yield Output(x * 10, "left")
    yield Output(x * 100, "right")


@op
def double(x: int) -> int:
    return x * 2


@op
def triple(x: int) -> int:
    return x * 3


@op
def join(a: int, b: int) -> int:
    if (a, b) != (20, 300):
        raise Failure(f"the diamond joined {(a, b)}, expected (20, 300)")
    return a + b


@job(executor_def=dtq_executor)
def diamond() -> None:
    left, right = split(one())
    join(double(left), triple(right))


class SleepConfig(Config):
    seconds: float = 1.0


def _make_parallel_op(i: int):  # noqa: ANN202 (an op definition)
    @op(name=f"leaf_{i}")
    def leaf(context: OpExecutionContext, config: SleepConfig) -> dict:
        time.sleep(config.seconds)
        where = _where()
        context.log.info(f"leaf_{i} ran on {where}")
        return {"i": i, **where, "end": int(time.time() * 1000)}

    return leaf


PARALLEL_OPS = [_make_parallel_op(i) for i in range(10)]


@op(ins={f"r{i}": In(dict) for i in range(10)})
def collect(context: OpExecutionContext, **results: dict) -> int:
    if len(results) != 10:
        raise Failure(f"collected {len(results)} results, expected 10")
    pids = {r["pid"] for r in results.values()}
    context.log.info(f"10 leaves ran in {len(pids)} processes")
    return len(pids)


@job(executor_def=dtq_executor)
def fan_out_10() -> None:
    collect(**{f"r{i}": leaf() for i, leaf in enumerate(PARALLEL_OPS)})


@op(
    out={
        "always": Out(int),
        "also": Out(int),
        "never": Out(int, is_required=False),
    }
)
def several_outputs() -> Iterator[Output[int]]:
    yield Output(1, "always")
    yield Output(2, "also")
    # "never" is optional and not produced: its consumer is skipped.


@op
def use_always(x: int) -> int:
    return x


@op
def use_also(x: int) -> int:
    return x


@op
def use_never(x: int) -> int:
    return x


@job(executor_def=dtq_executor)
def optional_outputs() -> None:
    always, also, never = several_outputs()
    use_always(always)
    use_also(also)
    use_never(never)


# -- failures and retries --------------------------------------------------------------------

FAILURE_TEXT = "deliberate failure from op 'explode'"


@op
def explode(x: int) -> int:
    raise RuntimeError(f"{FAILURE_TEXT} (input {x})")


@op
def after_explode(x: int) -> int:
    return x


@job(executor_def=dtq_executor)
def op_raises() -> None:
    after_explode(explode(one()))


class CounterConfig(Config):
    counter_dir: str
    failures: int = 2


@op(retry_policy=RetryPolicy(max_retries=3, delay=0.2))
def flaky(context: OpExecutionContext, config: CounterConfig) -> int:
    attempt = bump_counter(config.counter_dir, f"{context.run_id}.flaky")
    context.log.info(f"flaky attempt {attempt} on {_where()}")
    if attempt <= config.failures:
        raise RuntimeError(f"flaky fails on purpose, attempt {attempt}")
    return attempt


@job(executor_def=dtq_executor)
def retry_policy() -> None:
    flaky()


@op
def asks_for_retry(context: OpExecutionContext, config: CounterConfig) -> int:
    attempt = bump_counter(config.counter_dir, f"{context.run_id}.asks")
    if attempt <= config.failures:
        raise RetryRequested(max_retries=config.failures + 1, seconds_to_wait=0.2)
    return attempt


@job(executor_def=dtq_executor)
def retry_requested() -> None:
    asks_for_retry()


# -- run config and resources ----------------------------------------------------------------


class Multiplier(ConfigurableResource):
    factor: int


class GreetConfig(Config):
    name: str
    times: int = 1


@op
def greet(context: OpExecutionContext, config: GreetConfig, multiplier: Multiplier) -> str:
    text = " ".join([f"hello {config.name}"] * (config.times * multiplier.factor))
    context.add_output_metadata({"greeting": text, "words": len(text.split())})
    return text


@op
def check_greeting(greeting: str) -> int:
    if greeting.count("hello") != 6:
        raise Failure(f"expected 6 greetings (times 2 x factor 3), got {greeting!r}")
    return len(greeting)


@job(executor_def=dtq_executor, resource_defs={"multiplier": Multiplier.configure_at_launch()})
def config_and_resources() -> None:
    check_greeting(greet())


# -- long steps: termination and worker death ------------------------------------------------


class LongConfig(Config):
    seconds: float = 300.0


@op
def long_step(context: OpExecutionContext, config: LongConfig) -> float:
    context.log.info(f"long_step sleeps {config.seconds}s on {_where()}")
    deadline = time.monotonic() + config.seconds
    while time.monotonic() < deadline:
        time.sleep(0.2)
    return config.seconds


@op(ins={"after": In(Nothing)})
def after_long() -> int:
    return 1


@job(executor_def=dtq_executor)
def long_running() -> None:
    after_long(after=long_step())


@op(ins={"after": In(Nothing)})
def long_step_after(context: OpExecutionContext, config: LongConfig) -> float:
    context.log.info(f"long_step_after sleeps {config.seconds}s on {_where()}")
    deadline = time.monotonic() + config.seconds
    while time.monotonic() < deadline:
        time.sleep(0.2)
    return config.seconds


@job(
    executor_def=dtq_executor,
    description="a quick op, then a long one: a run worker lost during the long one is resumed",
)
def quick_then_long() -> None:
    after_long(after=long_step_after(after=one()))


class SlowOnceConfig(Config):
    counter_dir: str
    first_seconds: float = 300.0


@op(retry_policy=RetryPolicy(max_retries=1, delay=0.2, backoff=Backoff.LINEAR))
def slow_once(context: OpExecutionContext, config: SlowOnceConfig) -> int:
    attempt = bump_counter(config.counter_dir, f"{context.run_id}.slow_once")
    if attempt == 1:
        context.log.info(f"slow_once attempt 1 sleeps {config.first_seconds}s on {_where()}")
        deadline = time.monotonic() + config.first_seconds
        while time.monotonic() < deadline:
            time.sleep(0.2)
    return attempt


@job(executor_def=dtq_executor)
def slow_once_with_retry() -> None:
    slow_once()


ALL_JOBS = [
    fan_out_fan_in,
    single_op,
    serial_chain,
    diamond,
    fan_out_10,
    optional_outputs,
    op_raises,
    retry_policy,
    retry_requested,
    config_and_resources,
    long_running,
    quick_then_long,
    slow_once_with_retry,
]
