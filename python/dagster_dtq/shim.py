"""Client of `dtq executor-shim --serve`, the JSON-lines co-process (docs/executor-shim.md).

One co-process per run worker: it is started lazily on the first request, restarted when it
has died, and guarded by a lock so the orchestrator's threads can share it. Settings and
secrets reach it through its environment, never its argv, where `ps` would show them.

Every operation of the protocol is idempotent (submit of the same key and payload returns
the existing row), so a request whose answer was lost is simply sent again once on a fresh
co-process. Errors are raised as ShimError; `transient` tells a caller whether trying again
later can help (the ledger or the queue is unreachable, the co-process died) or not (a bad
request, a reused key, an outdated schema).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

# Codes of docs/executor-shim.md that trying again can cure (the shim also marks them
# "retryable"); SHIM_UNAVAILABLE is ours: the co-process could not be started, died, timed
# out or broke the protocol. INTERNAL (a database error, SQS refusing the message) is not.
TRANSIENT_CODES = frozenset({"LEDGER_UNAVAILABLE", "QUEUE_UNAVAILABLE", "SHIM_UNAVAILABLE"})

_MAX_LINE = 64 * 1024 * 1024  # a status answer for many keys is still far below this

T = TypeVar("T")


class ShimError(Exception):
    """An operation failed: the shim's error object, or the co-process itself failed."""

    def __init__(self, code: str, message: str, retryable: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable

    @property
    def transient(self) -> bool:
        return self.retryable or self.code in TRANSIENT_CODES


class ShimUnavailableError(ShimError):
    """The co-process could not be reached: not started, died, silent or out of protocol."""

    def __init__(self, message: str) -> None:
        super().__init__("SHIM_UNAVAILABLE", message, retryable=True)


class ShimClient:
    """A `dtq executor-shim --serve` co-process and the JSON-lines protocol to it.

    argv is the full command (e.g. ["dtq", "executor-shim", "--serve"]); env is the complete
    environment of the co-process. timeout bounds each request, in seconds.
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        self._argv = list(argv)
        self._env = dict(env) if env is not None else None
        self._timeout = timeout
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner_pid = 0
        self._buf = b""
        self._next_id = 1
        self.starts = 0  # co-processes started so far (tests and diagnostics)

    @property
    def argv(self) -> list[str]:
        return list(self._argv)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- operations ---------------------------------------------------------------------

    def submit(self, task: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("submit", task)

    def status(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        result = self.request("status", {"keys": list(keys)})
        tasks = result.get("tasks")
        if not isinstance(tasks, list) or len(tasks) != len(keys):
            raise ShimError("BAD_RESPONSE", f"status answer without one task per key: {result}")
        return [dict(t) for t in tasks]

    def cancel(self, key: str) -> dict[str, Any]:
        return self.request("cancel", {"key": key})

    def ping(self) -> dict[str, Any]:
        return self.request("ping", {})

    def request(self, op: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Sends one request and returns its result object, or raises ShimError."""
        with self._lock:
            try:
                return self._exchange(op, fields)
            except ShimUnavailableError:
                # The co-process died or desynchronised; every operation is idempotent, so
                # one more try on a fresh co-process is safe.
                self._stop_locked()
                return self._exchange(op, fields)

    def close(self) -> None:
        """Ends the co-process: end of input makes it exit 0; killed if it lingers."""
        with self._lock:
            self._stop_locked(graceful=True)

    # -- internals ----------------------------------------------------------------------

    def _exchange(self, op: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        proc = self._ensure_started()
        req_id = self._next_id
        self._next_id += 1
        line = json.dumps({**fields, "id": req_id, "op": op}, separators=(",", ":")) + "\n"
        deadline = time.monotonic() + self._timeout
        try:
            self._write_all(proc, line.encode(), deadline)
            raw = self._read_line(proc, deadline)
        except ShimUnavailableError:
            self._stop_locked()
            raise
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            self._stop_locked()
            raise ShimUnavailableError(f"unparseable answer {raw[:200]!r}: {exc}") from exc
        if not isinstance(answer, dict) or answer.get("id") != req_id:
            self._stop_locked()
            raise ShimUnavailableError(
                f"answer {str(answer)[:200]} does not match request {req_id}"
            )
        if answer.get("ok") is True:
            result = answer.get("result")
            if not isinstance(result, dict):
                raise ShimError("BAD_RESPONSE", f"ok answer without a result object: {answer}")
            return result
        err = answer.get("error")
        if not isinstance(err, dict):
            raise ShimError("BAD_RESPONSE", f"failed answer without an error object: {answer}")
        raise ShimError(
            str(err.get("code", "INTERNAL")),
            str(err.get("message", "")),
            bool(err.get("retryable", False)),
        )

    def _ensure_started(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is not None and proc.poll() is None and self._owner_pid == os.getpid():
            return proc
        if proc is not None and self._owner_pid == os.getpid():
            self._stop_locked()
        # After a fork the child must not share the parent's pipes: it starts its own.
        self._proc = None
        self._buf = b""
        try:
            proc = subprocess.Popen(
                self._argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,  # the shim logs to stderr: the run worker's own log
                env=self._env,
                close_fds=True,
                # Its own session: a signal to the run worker's process group (Ctrl-C, the
                # worker stopping a run) must not kill the door that terminate_step needs.
                # It still ends with the run worker: its stdin reaches end of file.
                start_new_session=True,
            )
        except OSError as exc:
            raise ShimUnavailableError(f"cannot start {self._argv[0]!r}: {exc}") from exc
        assert proc.stdin is not None and proc.stdout is not None
        os.set_blocking(proc.stdin.fileno(), False)
        self._proc = proc
        self._owner_pid = os.getpid()
        self.starts += 1
        return proc

    def _write_all(self, proc: subprocess.Popen[bytes], data: bytes, deadline: float) -> None:
        assert proc.stdin is not None
        fd = proc.stdin.fileno()
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ShimUnavailableError(f"co-process took no input for {self._timeout:.0f}s")
            _, writable, _ = select.select([], [fd], [], remaining)
            if not writable:
                continue
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                continue
            except OSError as exc:  # EPIPE: it exited
                raise ShimUnavailableError(f"co-process gone ({self._exit_note(proc)})") from exc
            view = view[n:]

    def _read_line(self, proc: subprocess.Popen[bytes], deadline: float) -> bytes:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ShimUnavailableError(f"no answer within {self._timeout:.0f}s")
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise ShimUnavailableError(
                    f"co-process closed its output ({self._exit_note(proc)})"
                )
            self._buf += chunk
            if len(self._buf) > _MAX_LINE:
                raise ShimUnavailableError("answer line too long")
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    @staticmethod
    def _exit_note(proc: subprocess.Popen[bytes]) -> str:
        try:
            rc = proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return "still running"
        return f"exit status {rc}"

    def _stop_locked(self, graceful: bool = False) -> None:
        """Ends the co-process: gracefully (end of input) on close, at once after a failure,
        when it may be hung or out of step with us."""
        proc, self._proc = self._proc, None
        self._buf = b""
        if proc is None or self._owner_pid != os.getpid():
            return
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        if not graceful:
            proc.kill()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def retry_transient(
    fn: Callable[[], T],
    attempts: int = 4,
    first_delay: float = 0.5,
    max_delay: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Calls fn, again after a growing pause while it raises a transient ShimError."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except ShimError as exc:
            if not exc.transient or attempt == attempts:
                raise
        sleep(delay)
        delay = min(delay * 2, max_delay)
    raise AssertionError("unreachable")


_clients: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], ShimClient] = {}
_clients_lock = threading.Lock()


def shared_client(argv: Sequence[str], env: Mapping[str, str], timeout: float = 60.0) -> ShimClient:
    """The process's one co-process for this command and environment (made on first use)."""
    key = (tuple(argv), tuple(sorted(env.items())))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = ShimClient(argv, env, timeout)
            _clients[key] = client
        return client


@atexit.register
def _close_all() -> None:
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        with contextlib.suppress(Exception):
            client.close()
