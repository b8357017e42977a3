"""The demo driver: launch the 20-op fan-out/fan-in job on the local stack, show its progress,
then print one line per step (worker, queue wait, run time) and the Dagster UI address.

    compose/local/up.sh && $DTQ_VENV/bin/python python/examples/run_demo.py

The run is submitted through the Dagster webserver's GraphQL API, as the UI's Launch button
does; the instance's DtqRunLauncher makes the run worker a dtq task, and dtq_executor makes
each step one. Settings come from .demo/env (written by up.sh), or from the environment.
Exit status 0 when the run succeeds.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def load_env_file(path: Path) -> None:
    """Applies the `export NAME='value' ...` lines of .demo/env to this process."""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line.startswith("export "):
            continue
        for word in shlex.split(line[len("export ") :]):
            name, sep, value = word.partition("=")
            if not sep:
                continue
            value = value.replace("$PATH", os.environ.get("PATH", ""))
            os.environ[name] = value


def ledger_rows(keys: list[str]) -> dict[str, dict[str, Any]]:
    """Rows of the dtq ledger, through the real `dtq executor-shim status`."""
    if not keys:
        return {}
    dtq = os.environ.get("DTQ_BIN", "dtq")
    rows: dict[str, dict[str, Any]] = {}
    for i in range(0, len(keys), 50):
        out = subprocess.run(
            [dtq, "executor-shim", "status", *keys[i : i + 50]],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        rows.update({t["key"]: t for t in json.loads(out)["tasks"]})
    return rows


def submit(ui: str, job: str, location: str, run_config: dict[str, Any]) -> str:
    from dagster_graphql import DagsterGraphQLClient  # noqa: PLC0415 (slow import)

    match = re.match(r"https?://([^:/]+):(\d+)", ui)
    if not match:
        raise SystemExit(f"cannot read host and port from {ui}")
    client = DagsterGraphQLClient(match.group(1), port_number=int(match.group(2)), timeout=60)
    for _ in range(60):  # the code location may still be loading
        try:
            return client.submit_job_execution(
                job, repository_location_name=location, run_config=run_config
            )
        except Exception as exc:
            last = exc
            time.sleep(2)
    raise SystemExit(f"could not submit {job} through {ui}: {last}")


def progress_line(instance: Any, run_id: str, started: float, width: int) -> tuple[str, str]:
    run = instance.get_run_by_id(run_id)
    stats = {s.step_key: s for s in instance.get_run_step_stats(run_id)}
    done = sum(1 for s in stats.values() if s.status and s.status.value == "SUCCESS")
    failed = sum(1 for s in stats.values() if s.status and s.status.value == "FAILURE")
    running = sum(1 for s in stats.values() if s.status and s.status.value == "IN_PROGRESS")
    bar = "#" * int(width * done / 20) + "." * (width - int(width * done / 20))
    status = run.status.value
    text = (
        f"[{time.monotonic() - started:6.1f}s] {status:<9} [{bar}] {done:2d}/20 done,"
        f" {running:2d} running, {failed} failed"
    )
    return status, text


def worker_of_steps(instance: Any, run_id: str) -> dict[str, str]:
    """dtq key -> worker id, from the engine events the plugin writes per step attempt."""
    from dagster._core.events import DagsterEventType  # noqa: PLC0415

    found = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        if event is None or not (event.message or "").startswith("dtq worker"):
            continue
        meta = event.engine_event_data.metadata or {}
        key, worker = meta.get("dtq key"), meta.get("dtq worker id")
        if key is not None and worker is not None:
            found[str(key.value)] = str(worker.value)
    return found


def step_table(instance: Any, run_id: str) -> tuple[list[str], set[str]]:
    from dagster._core.events import DagsterEventType  # noqa: PLC0415

    from dagster_dtq.health import queue_wait_seconds, run_seconds  # noqa: PLC0415

    keys = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_WORKER_STARTING):
        meta = entry.dagster_event.engine_event_data.metadata or {}
        if "dtq key" in meta:
            keys.append(str(meta["dtq key"].value))
    # The run ends when Dagster sees the last step's event, a moment before the workers record
    # their step processes' exits: give the ledger a few seconds to settle.
    deadline = time.monotonic() + 15
    rows = ledger_rows(keys)
    while time.monotonic() < deadline and any(
        r.get("state") in ("queued", "running") for r in rows.values()
    ):
        time.sleep(1)
        rows = ledger_rows(keys)
    workers = worker_of_steps(instance, run_id)
    lines = [f"{'step':<10} {'try':>3}  {'worker':<22} {'queue wait':>10} {'run time':>9}  state"]
    for key in keys:
        row = rows.get(key, {})
        step, attempt = key.split("/")[1], key.split("/")[2]
        wait, took = queue_wait_seconds(row), run_seconds(row)
        lines.append(
            f"{step:<10} {attempt:>3}  {workers.get(key, '?'):<22}"
            f" {'-' if wait is None else f'{wait:8.2f}s':>10}"
            f" {'-' if took is None else f'{took:7.2f}s':>9}  {row.get('state', '?')}"
        )
    return lines, set(workers.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", type=Path, default=None, help="settings file (.demo/env)")
    parser.add_argument("--job", default="fan_out_fan_in")
    parser.add_argument("--location", default="dtq_examples")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the run")
    args = parser.parse_args()

    env_file = args.env or Path(os.environ.get("DTQ_DEMO_DIR", REPO / ".demo")) / "env"
    if env_file.exists():
        load_env_file(env_file)
    for path in (REPO / "python", REPO / "python" / "examples"):
        sys.path.insert(0, str(path))
    if not os.environ.get("DAGSTER_HOME"):
        raise SystemExit("DAGSTER_HOME is not set: start the stack with compose/local/up.sh")
    ui = os.environ.get("DTQ_DEMO_UI", "http://127.0.0.1:3000")

    from dagster import DagsterInstance  # noqa: PLC0415

    run_id = submit(ui, args.job, args.location, {})
    print(f"launched {args.job}: run {run_id}")
    print(f"  watch it live: {ui}/runs/{run_id}")
    started = time.monotonic()
    with DagsterInstance.get() as instance:
        status, shown = "", ""
        tty = sys.stdout.isatty()
        while time.monotonic() - started < args.timeout:
            status, text = progress_line(instance, run_id, started, 20)
            if tty:
                print("\r" + text, end="", flush=True)
            elif text.split("] ", 1)[1] != shown:  # a log file gets changes only
                print(text, flush=True)
                shown = text.split("] ", 1)[1]
            if status in TERMINAL:
                break
            time.sleep(1)
        if tty:
            print()
        elapsed = time.monotonic() - started
        lines, workers = step_table(instance, run_id)
    print()
    print("\n".join(lines))
    print()
    print(f"run {run_id}: {status} in {elapsed:.1f}s, steps on {len(workers)} dtq worker(s)")
    print(f"Dagster UI: {ui}/runs/{run_id}")
    return 0 if status == "SUCCESS" else 1


if __name__ == "__main__":
    sys.exit(main())
