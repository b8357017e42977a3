"""dtq_executor against Dagster's multiprocess_executor on one machine (driver of
tests/bench/dagster_bench.sh; not part of `make test`).

    dagster_bench.py run [--runs 5] [--warmup 1] [--op-seconds 0.5] [--workers 4]
                         [--max-concurrent 4] [--variants dtq,multiprocess] [--out build/bench]
    dagster_bench.py report DIR                      (the table again, from DIR's CSVs)
    dagster_bench.py plot STEPS_CSV RUNS_CSV PNG     (needs only matplotlib)

`run` starts the end-to-end stack of python/tests/e2e/dtq_stack.py once: PostgreSQL and
moto_server (tests/lib/harness.sh), a migrated ledger, one queue, a DAGSTER_HOME with
dagster-postgres storage, and `--workers` `dtq worker`s with worker_concurrency 1. Then it
alternates the variants (ABAB..., the order flipped every round so that a drift of the
machine's load does not favour one) on the 20-op fan-out job of dagster_bench_jobs.py, every
run executed the same way: in this process, `execute_job(reconstructable(job), instance)`, on
the one Postgres-backed DagsterInstance. The orchestrator is this process for both; the step
processes are `dagster api execute_step` children of the dtq workers, or `spawn`ed children of
the multiprocess executor.

Variants: `dtq` (the plugin as configured by default), `multiprocess` (max_concurrent =
--max-concurrent), and for experiments `dtq:KEY=VALUE+KEY=VALUE...` with KEY `sleep`
(Dagster's DAGSTER_STEP_DELEGATING_EXECUTOR_SLEEP_SECONDS for that run) or any dtq_executor
config key (`max_concurrent=4`, `poll_interval=0.1`...).

Measured per run: wall time of execute_job, and RUN_START -> RUN_SUCCESS. Per step, from
Dagster's event log: launch (STEP_WORKER_STARTING, written by the executor when it launches the
step: before the dtq submit, before the multiprocess Process.start) -> STEP_WORKER_STARTED (the
step process's Python is up and has its instance) -> STEP_START -> STEP_SUCCESS. For dtq also
from the ledger (dtq.tasks / dtq.attempts): created_at (the shim registered the task), the
claim (started_at: a worker took it and spawns the child), and the worker's previous attempt's
end, which splits launch -> STEP_START into
    submit         launch -> created_at
    queue wait     created_at -> claim      (of which "for a free worker": until the worker
                                             that took it had finished its previous task)
    process start  claim -> STEP_START      (spawn, Python + dagster import, instance, run,
                                             verify_step, plan)
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parents[1]

STEP_FIELDS = [
    "variant",
    "round",
    "run_id",
    "step",
    "launch",
    "worker_started",
    "step_start",
    "step_success",
    "created",
    "claimed",
    "worker",
    "worker_free",
    "overhead",
    "overhead_net",
    "submit",
    "queue_wait",
    "capacity_wait",
    "dispatch",
    "process_start",
    "python_up",
    "seen_success",
    "exited",
    "detect",
    "exit_lag",
    "op_time",
]
RUN_FIELDS = [
    "variant",
    "round",
    "run_id",
    "status",
    "wall",
    "run",
    "fan_out_handoff",
    "fan_in_handoff",
    "load1_before",
    "load1_after",
    *(f"cpu_{name}" for name in ("orchestrator", "steps", "workers", "shim", "moto", "postgres")),
]


# -- variants ---------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    executor: str  # "dtq" or "multiprocess"
    executor_config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str, max_concurrent: int) -> Variant:
        base, _, opts = spec.partition(":")
        if base == "multiprocess":
            if opts:
                raise SystemExit("the multiprocess variant takes no options")
            return cls(spec, "multiprocess", {"max_concurrent": max_concurrent})
        if base != "dtq":
            raise SystemExit(f"unknown variant {spec!r} (dtq, dtq:KEY=VALUE+..., multiprocess)")
        v = cls(spec, "dtq")
        for item in filter(None, opts.split("+")):
            key, _, value = item.partition("=")
            if key == "sleep":
                v.env["DAGSTER_STEP_DELEGATING_EXECUTOR_SLEEP_SECONDS"] = value
            else:
                v.executor_config[key] = float(value) if "." in value else int(value)
        return v


# -- the stack --------------------------------------------------------------------------------


def start_stack(workers: int, tmp: Path) -> tuple[Any, Any]:
    sys.path.insert(0, str(REPO / "python" / "tests" / "e2e"))
    from dtq_stack import Services, Stack  # noqa: PLC0415 (needs the path above)

    services = Services()
    services.start()
    stack = Stack(services, tmp)
    try:
        stack.setup()
        # Production defaults for what the test stack shortens (6 s leases, 2 s heartbeats,
        # 1 s receive waits): the benchmark measures dtq as deployed.
        stack.env["DTQ_LEASE"] = "60s"
        # dagster_bench_site: multiprocess step processes in sessions of their own, as dtq's
        # (see its sitecustomize.py: the kernel's autogroup scheduling).
        site = str(BENCH_DIR / "dagster_bench_site")
        stack.env["PYTHONPATH"] = os.pathsep.join([site, stack.env["PYTHONPATH"], str(BENCH_DIR)])
        os.environ.update(stack.env)
        sys.path.insert(0, str(BENCH_DIR))
        stack.start_workers(
            workers,
            DTQ_WORKER_CONCURRENCY="1",
            DTQ_HEARTBEAT_INTERVAL="0s",
            DTQ_RECEIVE_WAIT="20s",
            DTQ_SHUTDOWN_GRACE="10s",
        )
    except BaseException:
        stack.teardown()
        services.stop()
        raise
    return services, stack


# -- probes: when the orchestrator (this process) saw what ---------------------------------------

# (run_id, step_key, what) -> first time.time() this process saw it; `what` is a Dagster event
# type name, or EXITED: the multiprocess executor found the step's process gone (joined).
SEEN: dict[tuple[str, str, str], float] = {}


def install_probes() -> None:
    """Wraps, in this process only, the two places where each executor learns about its steps,
    to note the time; nothing else changes. StepDelegatingExecutor._pop_events is the dtq
    executor's event-log poll; multiprocess's execute_child_process_command is the generator
    that reads a child's events from its queue and ends once the child has exited."""
    from dagster import DagsterEvent  # noqa: PLC0415
    from dagster._core.executor import multiprocess  # noqa: PLC0415
    from dagster._core.executor.step_delegating import (  # noqa: PLC0415
        step_delegating_executor as sde,
    )

    pop_events = sde.StepDelegatingExecutor._pop_events

    def _pop_events(self: Any, instance: Any, run_id: str, seen_storage_ids: set[int]) -> Any:
        events = pop_events(self, instance, run_id, seen_storage_ids)
        now = time.time()
        for ev in events:
            if ev.step_key:
                SEEN.setdefault((run_id, ev.step_key, ev.event_type_value), now)
        return events

    sde.StepDelegatingExecutor._pop_events = _pop_events  # type: ignore[method-assign]

    child_command = multiprocess.execute_child_process_command

    def execute_child_process_command(ctx: Any, command: Any) -> Any:
        run_id = command.dagster_run.run_id
        for ret in child_command(ctx, command):
            if isinstance(ret, DagsterEvent) and ret.step_key:
                SEEN.setdefault((run_id, ret.step_key, ret.event_type_value), time.time())
            yield ret
        SEEN[(run_id, command.step_key, "EXITED")] = time.time()

    multiprocess.execute_child_process_command = execute_child_process_command


# -- CPU accounting -------------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int | None) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of a process; zeros if it is gone."""
    if not pid:
        return 0.0, 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    utime, stime, cutime, cstime = (int(x) / TICK for x in fields[11:15])
    return utime + stime, cutime + cstime


def pids_where(pred: Any) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(") ", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if pred(int(d), ppid, cmd):
            out.append(int(d))
    return out


class CpuMeter:
    """CPU seconds used during a run by each part of the set-up. Step processes: reaped children
    of this process (multiprocess) or of the dtq workers (through their guards); PostgreSQL: the
    postmaster, its live backends and its reaped ones. Processes of other users of the machine
    are not counted."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        env = stack.services.env
        port = env["DTQ_TEST_SQS_ENDPOINT"].rsplit(":", 1)[1]
        self.moto = pids_where(lambda pid, ppid, cmd: "moto_server" in cmd and port in cmd)
        pgdata = env.get("DTQ_TEST_PGDATA", "")
        try:
            self.postmaster = int(Path(pgdata, "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            self.postmaster = 0

    def sample(self) -> dict[str, float]:
        t = os.times()
        shim = None
        try:
            from dagster_dtq import shim as shim_mod  # noqa: PLC0415

            shim = next((c.pid for c in shim_mod._clients.values() if c.pid), None)
        except Exception:  # measurement only: no shim yet, or its API changed
            shim = None
        workers = [proc_cpu(w.proc.pid) for w in self.stack.workers]
        pm_own, pm_children = proc_cpu(self.postmaster)
        backends = pids_where(lambda pid, ppid, cmd: ppid == self.postmaster and pid != 0)
        return {
            "orchestrator": t.user + t.system,
            "steps": t.children_user + t.children_system + sum(c for _, c in workers),
            "workers": sum(o for o, _ in workers),
            "shim": proc_cpu(shim)[0],
            "moto": sum(proc_cpu(p)[0] for p in self.moto),
            "postgres": pm_own + pm_children + sum(proc_cpu(p)[0] for p in backends),
        }


# -- measuring one run ------------------------------------------------------------------------


def event_times(instance: Any, run_id: str) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """{step: {event type: first timestamp}}, {run event type: timestamp}."""
    steps: dict[str, dict[str, float]] = {}
    run: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is None:
            continue
        kind = ev.event_type.name  # RUN_START, not its stored value PIPELINE_START
        if entry.step_key:
            steps.setdefault(entry.step_key, {}).setdefault(kind, entry.timestamp)
        else:
            run.setdefault(kind, entry.timestamp)
    return steps, run


def ledger_times(stack: Any, run_id: str) -> dict[str, dict[str, Any]]:
    """Per step of the run: created_at and claim (epoch seconds), the worker, and when that
    worker finished its previous task (the end of its previous attempt), from the ledger."""
    rows = stack.query(
        "SELECT t.key, extract(epoch FROM t.created_at), extract(epoch FROM a.started_at),"
        " a.worker, extract(epoch FROM a.ended_at),"
        " (SELECT extract(epoch FROM max(p.ended_at)) FROM dtq.attempts p"
        "   WHERE p.worker = a.worker AND p.started_at < a.started_at)"
        " FROM dtq.tasks t JOIN dtq.attempts a ON a.key = t.key AND a.fence = 1"
        " WHERE t.key LIKE %s",
        (run_id + "/%",),
    )
    out = {}
    for key, created, claimed, worker, ended, free in rows:
        step = key.split("/")[1]
        out[step] = {
            "created": float(created),
            "claimed": float(claimed),
            "exited": float(ended) if ended is not None else None,
            "worker": worker,
            "worker_free": float(free) if free is not None else None,
        }
    return out


def wait_ledger_settled(stack: Any, run_id: str, n: int, timeout: float = 60) -> None:
    """The run can finish before the last worker records its child's exit; the next run must
    not start while a worker still holds a slot of this one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = stack.query(
            "SELECT count(*) FILTER (WHERE state IN ('queued','running')), count(*)"
            " FROM dtq.tasks WHERE key LIKE %s",
            (run_id + "/%",),
        )
        busy, total = rows[0]
        if busy == 0 and total >= n:
            return
        time.sleep(0.1)
    raise TimeoutError(f"ledger rows of run {run_id} did not settle in {timeout:.0f}s")


def measure_run(
    variant: Variant, rnd: int, run_id: str, wall: float, status: str, stack: Any, instance: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    import dagster_bench_jobs as jobs  # noqa: PLC0415

    steps, run_events = event_times(instance, run_id)
    ledger = ledger_times(stack, run_id) if variant.executor == "dtq" else {}
    rows = []
    for step in jobs.OP_NAMES:
        ev = steps.get(step, {})
        r: dict[str, Any] = {"variant": variant.name, "round": rnd, "run_id": run_id, "step": step}
        r["launch"] = ev.get("STEP_WORKER_STARTING")
        r["worker_started"] = ev.get("STEP_WORKER_STARTED")
        r["step_start"] = ev.get("STEP_START")
        r["step_success"] = ev.get("STEP_SUCCESS")
        r["overhead"] = diff(r["step_start"], r["launch"])
        r["op_time"] = diff(r["step_success"], r["step_start"])
        r["seen_success"] = SEEN.get((run_id, step, "STEP_SUCCESS"))
        r["exited"] = SEEN.get((run_id, step, "EXITED"))
        lg = ledger.get(step)
        if lg:
            r.update(lg)
            free = lg["worker_free"]
            ready = max(lg["created"], free) if free is not None else lg["created"]
            r["submit"] = diff(lg["created"], r["launch"])
            r["queue_wait"] = diff(lg["claimed"], lg["created"])
            r["capacity_wait"] = ready - lg["created"]
            r["dispatch"] = diff(lg["claimed"], ready)
            r["process_start"] = diff(r["step_start"], lg["claimed"])
            r["python_up"] = diff(r["worker_started"], lg["claimed"])
            r["overhead_net"] = diff(r["overhead"], r["capacity_wait"])
        else:
            r["overhead_net"] = r["overhead"]
            r["process_start"] = r["overhead"]
            r["python_up"] = diff(r["worker_started"], r["launch"])
        r["detect"] = diff(r["seen_success"], r["step_success"])
        r["exit_lag"] = diff(r["exited"], r["step_success"])
        rows.append(r)
    by_step = {r["step"]: r for r in rows}
    works = [r for r in rows if r["step"].startswith("bench_work_")]
    first_work_launch = min((r["launch"] for r in works if r["launch"]), default=None)
    last_work_success = max((r["step_success"] for r in works if r["step_success"]), default=None)
    run_row = {
        "variant": variant.name,
        "round": rnd,
        "run_id": run_id,
        "status": status,
        "wall": wall,
        "run": diff(run_events.get("RUN_SUCCESS"), run_events.get("RUN_START")),
        # executor latency between a step's success and the launch of what it unblocks
        "fan_out_handoff": diff(first_work_launch, by_step["bench_start"]["step_success"]),
        "fan_in_handoff": diff(by_step["bench_gather"]["launch"], last_work_success),
    }
    return run_row, rows


def diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def execute(
    variant: Variant, rnd: int, args: argparse.Namespace, stack: Any, instance: Any, cpu: CpuMeter
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    import dagster_bench_jobs as jobs  # noqa: PLC0415
    from dagster import execute_job, reconstructable  # noqa: PLC0415

    job = jobs.bench_fan_out_dtq if variant.executor == "dtq" else jobs.bench_fan_out_mp
    config = jobs.run_config(variant.executor, args.op_seconds, args.max_concurrent)
    config["execution"]["config"].update(variant.executor_config)
    saved = {k: os.environ.get(k) for k in variant.env}
    os.environ.update(variant.env)
    load_before = os.getloadavg()[0]
    cpu_before = cpu.sample()
    t0 = time.perf_counter()
    try:
        with execute_job(
            reconstructable(job),
            instance=instance,
            run_config=config,
            tags={"dtq/bench": variant.name, "dtq/bench_round": str(rnd)},
        ) as result:
            wall = time.perf_counter() - t0
            run_id = result.run_id
            status = "SUCCESS" if result.success else "FAILURE"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    load_after = os.getloadavg()[0]
    if variant.executor == "dtq":
        wait_ledger_settled(stack, run_id, len(jobs.OP_NAMES))
    cpu_after = cpu.sample()
    run_row, step_rows = measure_run(variant, rnd, run_id, wall, status, stack, instance)
    for k, v in cpu_after.items():
        run_row[f"cpu_{k}"] = v - cpu_before[k]
    run_row["load1_before"] = load_before
    run_row["load1_after"] = load_after
    return run_row, step_rows


# -- the report -------------------------------------------------------------------------------


def stats(values: list[float | None]) -> tuple[float, float, float] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def fmt(s: tuple[float, float, float] | None) -> str:
    if s is None:
        return "-"
    return f"{s[0]:6.2f} {s[1]:6.2f} {s[2]:6.2f}"


CPU_PARTS = ("orchestrator", "steps", "workers", "shim", "moto", "postgres")


def paired_ratios(runs: list[dict], a: str, b: str) -> list[float]:
    """wall(a) / wall(b) of the runs of one round: the two ran back to back, under about the
    same load from the rest of the machine."""
    by_round: dict[Any, dict[str, float]] = {}
    for r in runs:
        by_round.setdefault(r["round"], {})[r["variant"]] = r["wall"]
    return [w[a] / w[b] for w in by_round.values() if a in w and b in w and w[b]]


def report(runs: list[dict], steps: list[dict], names: list[str]) -> str:
    lines = []
    width = 44
    header = f"{'seconds (median min max)':<{width}}" + "".join(f"  {n:>20}" for n in names)
    ratio_of = None
    if "dtq" in names and "multiprocess" in names:
        ratio_of = ("dtq", "multiprocess")
        header += "  dtq/mp"
    lines.append(header)

    def row(label: str, table: list[dict], key: str, filt=lambda r: True) -> None:
        per = {}
        for n in names:
            per[n] = stats([r.get(key) for r in table if r["variant"] == n and filt(r)])
        line = f"{label:<{width}}" + "".join(f"  {fmt(per[n]):>20}" for n in names)
        if ratio_of and per[ratio_of[0]] and per[ratio_of[1]] and per[ratio_of[1]][0]:
            line += f"  {per[ratio_of[0]][0] / per[ratio_of[1]][0]:6.2f}"
        lines.append(line)

    ok_runs = [r for r in runs if r["status"] == "SUCCESS"]
    for r in ok_runs:
        r["cpu_total"] = sum(r.get(f"cpu_{p}") or 0.0 for p in CPU_PARTS)
    row("wall time per run (execute_job)", ok_runs, "wall")
    row("  RUN_START -> RUN_SUCCESS", ok_runs, "run")
    row("  handoff start ok -> first work launch", ok_runs, "fan_out_handoff")
    row("  handoff last work ok -> gather launch", ok_runs, "fan_in_handoff")
    row("step: launch -> STEP_START (overhead)", steps, "overhead")
    row("  the same less the wait for a free worker", steps, "overhead_net")
    row("  dtq: submit (launch -> ledger row)", steps, "submit")
    row("  dtq: queue wait (row -> claim)", steps, "queue_wait")
    row("    of which waiting for a free worker", steps, "capacity_wait")
    row("    of which dispatch (free -> claim)", steps, "dispatch")
    row("  process start (claim/launch -> STEP_START)", steps, "process_start")
    row("    of which Python up (-> WORKER_STARTED)", steps, "python_up")
    row("step run time (STEP_START -> STEP_SUCCESS)", steps, "op_time")
    row("STEP_SUCCESS -> orchestrator sees it", steps, "detect")
    row("STEP_SUCCESS -> process exit (slot free)", steps, "exit_lag")
    for part in CPU_PARTS:
        row(f"CPU s per run: {part}", ok_runs, f"cpu_{part}")
    row("CPU s per run: all of the above", ok_runs, "cpu_total")
    if ratio_of:
        pairs = stats(paired_ratios(ok_runs, *ratio_of))
        if pairs:
            lines.append(f"wall dtq/mp of the runs of one round (median min max): {fmt(pairs)}")
    bad = [r for r in runs if r["status"] != "SUCCESS"]
    if bad:
        lines.append(f"FAILED runs (excluded): {[(r['variant'], r['run_id']) for r in bad]}")
    return "\n".join(lines)


def write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else fmt_cell(r.get(k))) for k in fields})


def fmt_cell(v: Any) -> Any:
    return f"{v:.4f}" if isinstance(v, float) else v


# -- commands ---------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    variants = [Variant.parse(s, args.max_concurrent) for s in args.variants.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="dtq-dagbench-"))
    print(f"# stack in {tmp}; {args.workers} dtq workers x concurrency 1", flush=True)
    services, stack = start_stack(args.workers, tmp)
    install_probes()
    cpu = CpuMeter(stack)
    runs: list[dict] = []
    steps: list[dict] = []
    try:
        with stack.instance() as instance:
            for rnd in range(-args.warmup, args.runs):
                order = variants if rnd % 2 == 0 else list(reversed(variants))
                for v in order:
                    run_row, step_rows = execute(v, rnd, args, stack, instance, cpu)
                    tag = "warm-up" if rnd < 0 else f"round {rnd + 1}/{args.runs}"
                    print(
                        f"# {tag} {v.name:>16}: {run_row['status']} wall {run_row['wall']:.2f}s"
                        f" (load {run_row['load1_before']:.2f})",
                        flush=True,
                    )
                    if rnd >= 0:
                        runs.append(run_row)
                        steps.extend(step_rows)
    finally:
        stack.teardown()
        services.stop()
        if os.environ.get("KEEP") != "1" and all(r["status"] == "SUCCESS" for r in runs):
            shutil.rmtree(tmp, ignore_errors=True)  # worker logs, DAGSTER_HOME: KEEP=1 keeps
    write_csv(out / "dagster_bench_runs.csv", RUN_FIELDS, runs)
    write_csv(out / "dagster_bench_steps.csv", STEP_FIELDS, steps)
    text = report(runs, steps, [v.name for v in variants])
    loads = [r["load1_before"] for r in runs]
    summary = (
        f"{args.runs} runs per variant (+{args.warmup} warm-up), 20 ops of {args.op_seconds}s,"
        f" {args.workers} dtq workers x 1 / multiprocess max_concurrent {args.max_concurrent};"
        f" cores {os.cpu_count()}, 1-min load during runs {min(loads):.2f}..{max(loads):.2f}"
    )
    print(summary)
    print(text)
    (out / "dagster_bench.txt").write_text(summary + "\n" + text + "\n")
    print(f"# CSV: {out / 'dagster_bench_runs.csv'}, {out / 'dagster_bench_steps.csv'}")
    return 0 if all(r["status"] == "SUCCESS" for r in runs) else 1


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV this script wrote, numbers as floats and empty cells as None."""

    def value(k: str, v: str) -> Any:
        if v == "":
            return None
        if k in ("variant", "run_id", "step", "status", "worker"):
            return v
        try:
            return float(v)
        except ValueError:
            return v

    with open(path) as f:
        return [{k: value(k, v) for k, v in row.items()} for row in csv.DictReader(f)]


def cmd_report(args: argparse.Namespace) -> int:
    """The table again, from the CSVs of an earlier run."""
    out = Path(args.dir)
    runs = read_csv(out / "dagster_bench_runs.csv")
    steps = read_csv(out / "dagster_bench_steps.csv")
    print(report(runs, steps, list(dict.fromkeys(r["variant"] for r in runs))))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """Wall times, step overheads, and a timeline of the median run of each variant
    (needs matplotlib only, not Dagster)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    def num(v: str) -> float | None:
        return float(v) if v else None

    with open(args.runs_csv) as f:
        runs = [r for r in csv.DictReader(f) if r["status"] == "SUCCESS"]
    with open(args.steps_csv) as f:
        steps = list(csv.DictReader(f))
    names = list(dict.fromkeys(r["variant"] for r in runs))
    fig, axes = plt.subplots(1, 2 + len(names), figsize=(5 * (2 + len(names)), 5.5))
    axes[0].boxplot([[num(r["wall"]) for r in runs if r["variant"] == n] for n in names])
    axes[0].set_xticks(range(1, len(names) + 1), names)
    axes[0].set_title("wall time per run (s)")
    axes[1].boxplot(
        [
            [num(r["overhead_net"]) for r in steps if r["variant"] == n and r["overhead_net"]]
            for n in names
        ]
    )
    axes[1].set_xticks(range(1, len(names) + 1), names)
    axes[1].set_title("per step: launch -> STEP_START,\nless the wait for a free worker (s)")
    longest = max(num(r["wall"]) or 0 for r in runs)
    for ax, n in zip(axes[2:], names, strict=True):
        mine = sorted((r for r in runs if r["variant"] == n), key=lambda r: float(r["wall"]))
        median_run = mine[len(mine) // 2]
        rows = [r for r in steps if r["run_id"] == median_run["run_id"]]
        t0 = min(num(r["launch"]) or 0 for r in rows if r["launch"])
        for i, r in enumerate(rows):
            launch, start, ok = num(r["launch"]), num(r["step_start"]), num(r["step_success"])
            if launch is None or start is None or ok is None:
                continue
            claimed = num(r.get("claimed", "")) or launch
            ax.barh(i, claimed - launch, left=launch - t0, color="#cccccc")
            ax.barh(i, start - claimed, left=claimed - t0, color="#f4a261")
            ax.barh(i, ok - start, left=start - t0, color="#2a9d8f")
        ax.set_yticks(range(len(rows)), [r["step"].replace("bench_", "") for r in rows])
        ax.invert_yaxis()
        ax.set_xlim(0, longest)
        ax.set_xlabel("s since the first launch")
        ax.set_title(f"{n}: median run ({float(median_run['wall']):.1f} s)")
    fig.text(
        0.5,
        0.01,
        "grey: queued, waiting for a free dtq worker; orange: step process start (launch or"
        " claim -> STEP_START); green: STEP_START -> STEP_SUCCESS",
        ha="center",
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(args.png, dpi=90)
    print(f"# plot: {args.png}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="start the stack and run the benchmark")
    r.add_argument("--runs", type=int, default=int(os.environ.get("RUNS", "5")))
    r.add_argument("--warmup", type=int, default=int(os.environ.get("WARMUP", "1")))
    r.add_argument("--op-seconds", type=float, default=float(os.environ.get("OP_SECONDS", "0.5")))
    r.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "4")))
    r.add_argument("--max-concurrent", type=int, default=int(os.environ.get("MAX_CONCURRENT", "4")))
    r.add_argument("--variants", default=os.environ.get("VARIANTS", "dtq,multiprocess"))
    r.add_argument("--out", default=os.environ.get("OUT", str(REPO / "build" / "bench")))
    rp = sub.add_parser("report", help="print the table again from the CSVs in DIR")
    rp.add_argument("dir")
    pl = sub.add_parser("plot", help="draw the PNG from the CSVs (matplotlib only)")
    pl.add_argument("steps_csv")
    pl.add_argument("runs_csv")
    pl.add_argument("png")
    args = p.parse_args()
    return {"run": cmd_run, "report": cmd_report, "plot": cmd_plot}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
