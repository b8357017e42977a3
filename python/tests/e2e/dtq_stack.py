"""The end-to-end stack: real PostgreSQL and moto_server (from tests/lib/harness.sh), a ledger
migrated by `dtq migrate`, a queue and DLQ made by `dtq queue create`, a DAGSTER_HOME with
dagster-postgres storage and DtqRunLauncher, and real `dtq worker` processes.

Nothing here stands in for a dtq applet: when build/dtq lacks one, the tests are skipped
(conftest.py), never run against something else.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
from dagster import DagsterInstance

PYTHON_DIR = Path(__file__).resolve().parents[2]
REPO = PYTHON_DIR.parent
HARNESS = REPO / "tests" / "lib" / "harness.sh"
VENV = Path(os.environ.get("DTQ_VENV", REPO / ".venv"))
NEEDED_APPLETS = ("executor-shim", "worker", "queue", "migrate")


def dtq_bin() -> Path:
    return Path(os.environ.get("DTQ_BIN") or REPO / "build" / "dtq")


def listed_applets(binary: Path) -> set[str]:
    """Applets `dtq --help` lists (the build registers an applet only when it works)."""
    try:
        out = subprocess.run(
            [str(binary), "--help"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return set()
    names: set[str] = set()
    in_list = False
    for line in out.splitlines():
        if line.strip() == "applets:":
            in_list = True
            continue
        if in_list:
            match = re.match(r"^\s{2,}([a-z][a-z0-9-]*)\s", line + " ")
            if not match:
                break
            names.add(match.group(1))
    return names


def missing_applets(binary: Path | None = None) -> list[str]:
    have = listed_applets(binary or dtq_bin())
    return [a for a in NEEDED_APPLETS if a not in have]


class Services:
    """PostgreSQL and moto_server: the runner's (tests/run.sh exports them), or our own,
    started by the harness in a shell that lives until we close its stdin."""

    def __init__(self) -> None:
        self._shell: subprocess.Popen[str] | None = None
        self.env: dict[str, str] = {}

    def start(self) -> None:
        names = ("DTQ_TEST_PG_URL", "DTQ_TEST_PG_DSN", "DTQ_TEST_SQS_ENDPOINT")
        if all(os.environ.get(n) for n in names):
            self.env = {n: os.environ[n] for n in os.environ if n.startswith(("DTQ_TEST_", "AWS_"))}
            return
        script = (
            f". {HARNESS}; harness_init; harness_start_pg && harness_start_moto || exit 1;"
            " env | grep -E '^(DTQ_TEST_|AWS_)'; echo READY; read -r _"
        )
        self._shell = subprocess.Popen(
            ["bash", "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "DTQ_VENV": str(VENV)},
        )
        assert self._shell.stdout is not None
        for raw in self._shell.stdout:
            line = raw.rstrip("\n")
            if line == "READY":
                return
            name, _, value = line.partition("=")
            self.env[name] = value
        raise RuntimeError("the harness could not start PostgreSQL and moto_server")

    def stop(self) -> None:
        if self._shell is not None and self._shell.stdin is not None:
            self._shell.stdin.close()  # `read` returns; the harness's EXIT trap stops both
            try:
                self._shell.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._shell.kill()


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Stack:
    """One isolated set-up: its own database, ledger, queue and DAGSTER_HOME."""

    services: Services
    tmp: Path
    dtq: Path = field(default_factory=dtq_bin)
    suffix: str = field(default_factory=lambda: secrets.token_hex(4))
    workers: list[Worker] = field(default_factory=list)
    # Workers ever started: names never repeat, even after the tests killed and replaced some
    # (two workers with one id would share a lease owner and a log).
    started: int = 0
    env: dict[str, str] = field(default_factory=dict)
    queue_url: str = ""
    dlq_url: str = ""
    db_url: str = ""

    # -- set-up ---------------------------------------------------------------------------

    def setup(self) -> None:
        svc = self.services.env
        db = f"dtq_e2e_{self.suffix}"
        admin_url = svc["DTQ_TEST_PG_URL"]
        self._psql(admin_url, f"CREATE DATABASE {db}")
        self.db_url = admin_url.rsplit("/", 1)[0] + "/" + db
        self.dagster_home = self.tmp / "dagster_home"
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        self.counter_dir = self.tmp / "counters"
        self.counter_dir.mkdir(exist_ok=True)
        path = os.pathsep.join([str(self.dtq.parent), str(VENV / "bin"), os.environ["PATH"]])
        self.env = {
            "PATH": path,
            "HOME": os.environ.get("HOME", str(self.tmp)),
            "LANG": "C.UTF-8",
            "PYTHONPATH": os.pathsep.join([str(PYTHON_DIR), str(PYTHON_DIR / "examples")]),
            "DAGSTER_HOME": str(self.dagster_home),
            # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; the venv has psycopg2.
            "DAGSTER_PG_URL": self.db_url.replace("postgresql://", "postgresql+psycopg2://", 1),
            "DTQ_LEDGER_DSN": self.db_url,
            "AWS_ENDPOINT_URL": svc["DTQ_TEST_SQS_ENDPOINT"],
            "AWS_ACCESS_KEY_ID": svc.get("AWS_ACCESS_KEY_ID", "testing"),
            "AWS_SECRET_ACCESS_KEY": svc.get("AWS_SECRET_ACCESS_KEY", "testing"),
            "AWS_REGION": svc.get("AWS_REGION", "us-east-1"),
            "DTQ_LOG_LEVEL": "info",
            # Short leases so a killed worker is noticed in seconds; set for every applet, in
            # case the shim judges a worker's liveness by its own lease setting.
            "DTQ_LEASE": "6s",
        }
        self.run_dtq(["migrate"])
        self.queue_url, self.dlq_url = self.create_queue(f"e2e-{self.suffix}")
        self.env["DTQ_QUEUE_URL"] = self.queue_url
        self.env["DTQ_DLQ_URL"] = self.dlq_url
        self.write_dagster_yaml()
        os.environ.update(self.env)  # the test process is a Dagster client of this instance

    def _psql(self, url: str, sql: str) -> None:
        conn = psycopg2.connect(url)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = psycopg2.connect(self.db_url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def run_dtq(
        self, args: Sequence[str], stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.dtq), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"dtq {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def create_queue(self, name: str) -> tuple[str, str]:
        out = self.run_dtq(["queue", "create", name, "--dlq", f"{name}-dlq", "--max-receive", "5"])
        return parse_queue_urls(out.stdout, name)

    def write_dagster_yaml(self) -> None:
        (self.dagster_home / "dagster.yaml").write_text(
            dagster_yaml(dtq_path=str(self.dtq), poll_interval=5)
        )

    # -- workers --------------------------------------------------------------------------

    def worker_env(self, **overrides: str) -> dict[str, str]:
        env = dict(self.env)
        env.update(
            {
                "DTQ_WORKER_CONCURRENCY": "4",
                "DTQ_DAGSTER_ENTRYPOINT": str(VENV / "bin" / "dagster"),
                "DTQ_ENV_ALLOW": WORKER_ENV_ALLOW,
                "DTQ_HEARTBEAT_INTERVAL": "2s",
                "DTQ_RECEIVE_WAIT": "1s",
                "DTQ_SHUTDOWN_GRACE": "5s",
                "DTQ_RETRY_BACKOFF": "1s",
                "DTQ_HEALTH_ADDR": "",
            }
        )
        env.update(overrides)
        return env

    def start_workers(self, n: int = 3, **overrides: str) -> list[Worker]:
        started = []
        for _ in range(n):
            self.started += 1
            name = f"e2e-{self.suffix}-w{self.started}"
            log = self.tmp / f"{name}.log"
            proc = subprocess.Popen(
                [str(self.dtq), "worker"],
                env=self.worker_env(DTQ_WORKER_ID=name, **overrides),
                stdin=subprocess.DEVNULL,
                stdout=open(log, "ab"),  # noqa: SIM115 (lives as long as the worker)
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            worker = Worker(name, proc, log)
            self.workers.append(worker)
            started.append(worker)
        return started

    def stop_workers(self, workers: Iterable[Worker] | None = None, timeout: float = 30) -> None:
        chosen = list(self.workers if workers is None else workers)
        for w in chosen:
            if w.alive():
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for w in chosen:
            try:
                w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                kill_group(w.proc.pid)
                w.proc.wait(timeout=10)
        self.workers = [w for w in self.workers if w not in chosen]

    def teardown(self) -> None:
        self.stop_workers()

    def worker_logs(self, about: str | None = None, lines: int = 40) -> str:
        """The last lines of each log, or only those that mention `about` (a run id), without
        the step processes' Dagster DEBUG chatter: what a failing test needs to say why."""
        out = []
        for log in sorted(self.tmp.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()
            if about:
                text = [t for t in text if about in t and " - DEBUG - " not in t]
            out.append(f"--- {log.name}\n" + "\n".join(text[-lines:]))
        return "\n".join(out)

    def ledger_rows(self, prefix: str) -> list[str]:
        """Every task and execution row whose key starts with `prefix`, one line each."""
        tasks = self.query(
            "SELECT key, state, attempts, fence, owner, cancel_requested, exit_code, error,"
            " round(extract(epoch FROM lease_until - now())::numeric, 1) AS lease_left_s"
            " FROM dtq.tasks WHERE key LIKE %s ORDER BY created_at",
            (prefix + "%",),
        )
        attempts = self.query(
            "SELECT key, fence, worker, to_char(started_at, 'HH24:MI:SS.MS'),"
            " round(extract(epoch FROM ended_at - started_at)::numeric, 1) AS took_s, outcome,"
            " exit_code, error FROM dtq.attempts WHERE key LIKE %s ORDER BY started_at",
            (prefix + "%",),
        )
        return [f"task {r}" for r in tasks] + [f"attempt {r}" for r in attempts]

    # -- Dagster --------------------------------------------------------------------------

    def instance(self) -> Any:
        return DagsterInstance.from_config(str(self.dagster_home))

    def run_worker_env(self) -> dict[str, str]:
        return dict(self.env)

    def status(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        """Ledger rows through the real one-shot `dtq executor-shim status`."""
        out = self.run_dtq(["executor-shim", "status", *keys])
        return list(json.loads(out.stdout)["tasks"])

    def attempt_workers(self, key: str) -> list[str]:
        """The worker of each execution of a key, oldest first (a finished row has no owner)."""
        rows = self.query("SELECT worker FROM dtq.attempts WHERE key = %s ORDER BY fence", (key,))
        return [str(r[0]) for r in rows]

    def attempt_rows(self, key: str) -> int:
        """Executions recorded for a key (the ledger's attempts table)."""
        return int(self.query("SELECT count(*) FROM dtq.attempts WHERE key = %s", (key,))[0][0])


WORKER_ENV_ALLOW = (
    "PATH,HOME,LANG,LC_ALL,TZ,PYTHONPATH,DAGSTER_HOME,DAGSTER_PG_*,"
    "DTQ_QUEUE_URL,DTQ_LEDGER_DSN,DTQ_SIGNING_KEY,AWS_*"
)


def dagster_yaml(dtq_path: str, poll_interval: int = 30, max_resume: int = 0) -> str:
    """dagster.yaml of the stack: Postgres storage, DtqRunLauncher, run monitoring on."""
    return f"""\
storage:
  postgres:
    postgres_url: {{env: DAGSTER_PG_URL}}
run_launcher:
  module: dagster_dtq
  class: DtqRunLauncher
  config:
    queue_url: {{env: DTQ_QUEUE_URL}}
    ledger_dsn: {{env: DTQ_LEDGER_DSN}}
    dtq_path: {dtq_path}
# Required with DtqRunLauncher: a run message delivered twice is then ignored by Dagster
# instead of failing the run, and dead run workers are detected through the ledger.
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_resume_run_attempts: {max_resume}
  poll_interval_seconds: {poll_interval}
telemetry:
  enabled: false
"""


def parse_queue_urls(text: str, name: str) -> tuple[str, str]:
    """(queue URL, DLQ URL) from `dtq queue create` (text lines or --json)."""
    text = text.strip()
    if text.startswith("{"):
        obj = json.loads(text)
        return obj["queue_url"], obj.get("dlq_url") or ""
    urls = re.findall(r"https?://\S+", text)
    queue = next((u for u in urls if u.rstrip("/").endswith("/" + name)), "")
    dlq = next((u for u in urls if u.rstrip("/").endswith("/" + name + "-dlq")), "")
    if not queue:
        raise RuntimeError(f"no URL of queue {name} in `dtq queue create` output: {text!r}")
    return queue, dlq


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; it only waits for its parent.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(predicate: Any, timeout: float, interval: float = 0.5, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)


def python() -> str:
    exe = VENV / "bin" / "python"
    return str(exe) if exe.exists() else sys.executable


def which_dagster() -> str:
    return (
        str(VENV / "bin" / "dagster")
        if (VENV / "bin" / "dagster").exists()
        else (shutil.which("dagster") or "dagster")
    )


def iter_events(instance: Any, run_id: str, types: Iterable[Any] | None = None) -> Iterator[Any]:
    of_type = set(types) if types is not None else None
    for entry in instance.all_logs(run_id, of_type=of_type):
        if entry.dagster_event is not None:
            yield entry.dagster_event


def metadata_text(event: Any, label: str) -> str | None:
    meta: Mapping[str, Any] = event.engine_event_data.metadata or {}
    value = meta.get(label)
    if value is None:
        return None
    return str(getattr(value, "value", value))
