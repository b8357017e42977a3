"""The JSON-lines client of `dtq executor-shim --serve` (dagster_dtq.shim), tested against a
scripted subprocess (scripted_shim.py): framing, ids, errors, restarts, timeouts, and that
secrets travel in the environment, not on the command line. This is a protocol test only;
what the shim does is tested end to end against the real one (tests/e2e)."""

import os
import sys
import threading
from pathlib import Path

import pytest

from dagster_dtq.shim import (
    ShimClient,
    ShimError,
    ShimUnavailableError,
    retry_transient,
    shared_client,
)

SCRIPT = str(Path(__file__).with_name("scripted_shim.py"))


def client(plan, tmp_path=None, timeout=5.0, **env):
    full_env = dict(os.environ)
    full_env["SCRIPTED_SHIM_PLAN"] = __import__("json").dumps(plan)
    if tmp_path is not None:
        full_env["SCRIPTED_SHIM_MARK"] = str(tmp_path / "mark")
    full_env.update(env)
    return ShimClient([sys.executable, SCRIPT, "--serve"], full_env, timeout=timeout)


def test_request_framing_and_result():
    c = client(["echo"], DTQ_LEDGER_DSN="host=db password=s3cret")
    try:
        result = c.submit({"key": "r/s/0", "task_name": "dagster.execute_step", "kwargs": {}})
        req = result["request"]
        assert req["op"] == "submit" and req["key"] == "r/s/0" and isinstance(req["id"], int)
        # Secrets reach the co-process through its environment, never its argv.
        assert result["secret"] == "host=db password=s3cret"
        assert not any("s3cret" in a for a in result["argv"])
        assert c.ping()["request"]["op"] == "ping"
        assert c.starts == 1  # one co-process for every request
    finally:
        c.close()


def test_ids_increase_and_answers_split_across_reads_are_reassembled():
    c = client(["split"])
    try:
        first = c.cancel("k1")["request"]
        second = c.cancel("k2")["request"]
        assert (first["op"], first["key"]) == ("cancel", "k1")
        assert second["id"] == first["id"] + 1
    finally:
        c.close()


def test_status_checks_one_task_per_key():
    c = client(["echo"])
    try:
        with pytest.raises(ShimError) as err:
            c.status(["a", "b"])  # the echo has no "tasks": a bad answer, not a crash
        assert err.value.code == "BAD_RESPONSE"
    finally:
        c.close()


@pytest.mark.parametrize(
    ("code", "transient"),
    [
        ("LEDGER_UNAVAILABLE", True),
        ("QUEUE_UNAVAILABLE", True),
        ("INTERNAL", False),
        ("KEY_REUSE", False),
        ("NOT_FOUND", False),
        ("BAD_REQUEST", False),
        ("SCHEMA_OUTDATED", False),
    ],
)
def test_error_answers_raise_with_their_code(code, transient):
    c = client([f"error:{code}"])
    try:
        with pytest.raises(ShimError) as err:
            c.cancel("k")
        assert err.value.code == code
        assert err.value.transient is transient
        # An error answer is part of the protocol: the co-process is kept.
        with pytest.raises(ShimError):
            c.cancel("k")
        assert c.starts == 1
    finally:
        c.close()


def test_a_dead_coprocess_is_restarted_and_the_request_sent_again(tmp_path):
    c = client(["die_once"], tmp_path)
    try:
        assert c.ping()["request"]["op"] == "ping"
        assert c.starts == 2
    finally:
        c.close()


def test_a_coprocess_that_keeps_dying_is_reported_unavailable():
    c = client(["die"])
    try:
        with pytest.raises(ShimUnavailableError) as err:
            c.ping()
        assert err.value.transient and err.value.code == "SHIM_UNAVAILABLE"
        assert "exit status 3" in str(err.value)
    finally:
        c.close()


@pytest.mark.parametrize("action", ["wrong_id", "garbage"])
def test_out_of_protocol_answers_restart_the_coprocess(action):
    c = client([action])
    try:
        with pytest.raises(ShimUnavailableError):
            c.ping()
        assert c.starts == 2  # tried once more on a fresh co-process
    finally:
        c.close()


def test_a_silent_coprocess_times_out():
    c = client(["silent"], timeout=0.5)
    try:
        with pytest.raises(ShimUnavailableError) as err:
            c.ping()
        assert "no answer within" in str(err.value)
    finally:
        c.close()


def test_a_missing_binary_is_unavailable_not_a_crash():
    c = ShimClient(["/nonexistent/dtq", "executor-shim", "--serve"], {}, timeout=1)
    with pytest.raises(ShimUnavailableError) as err:
        c.ping()
    assert err.value.transient


def test_concurrent_requests_share_one_coprocess_safely():
    c = client(["echo"])
    errors = []

    def hammer(i):
        try:
            for j in range(20):
                assert c.cancel(f"k{i}-{j}")["request"]["key"] == f"k{i}-{j}"
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors and c.starts == 1
    finally:
        c.close()


def test_close_ends_the_coprocess():
    c = client(["echo"])
    pid = c.ping()["pid"]
    c.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_shared_client_is_one_per_command_and_environment():
    a = shared_client(["x", "executor-shim", "--serve"], {"DTQ_QUEUE_URL": "q1"})
    b = shared_client(["x", "executor-shim", "--serve"], {"DTQ_QUEUE_URL": "q1"})
    c = shared_client(["x", "executor-shim", "--serve"], {"DTQ_QUEUE_URL": "q2"})
    assert a is b and a is not c


def test_retry_transient():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ShimError("LEDGER_UNAVAILABLE", "down", retryable=True)
        return "ok"

    assert retry_transient(flaky, attempts=4, sleep=lambda _: None) == "ok"
    assert len(calls) == 3

    def permanent():
        raise ShimError("KEY_REUSE", "no")

    with pytest.raises(ShimError):
        retry_transient(permanent, sleep=lambda _: None)

    def always_down():
        raise ShimUnavailableError("gone")

    with pytest.raises(ShimUnavailableError):
        retry_transient(always_down, attempts=2, sleep=lambda _: None)
