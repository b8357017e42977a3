"""Regenerates the TaskIQ test vectors in this directory with the real taskiq package.

    $DTQ_VENV/bin/python tests/vectors/taskiq/make_vectors.py

Every *.json message here is the exact SQS body a TaskIQ producer sends: the bytes that
TaskIQ's default formatter (ProxyFormatter + JSONSerializer) or its JSONFormatter hands to
broker.kick(), captured by a broker whose kick() keeps them. taskiq-aio-sqs sends
broker_message.message.decode() as the MessageBody, so these are SQS bodies byte for byte.
Task ids are fixed so that the output is reproducible.
"""
import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import zlib
from importlib.metadata import version

from taskiq import AsyncBroker

from taskiq.formatters.json_formatter import JSONFormatter
from taskiq.labels import parse_label, prepare_label
from taskiq.message import TaskiqMessage

HERE = os.path.dirname(os.path.abspath(__file__))
# The key of signed_python.json (a test key, nothing else).
SIGNING_KEY = b"dtq-test-signing-key"


class CaptureBroker(AsyncBroker):
    """A broker that keeps the bytes it is asked to send."""

    def __init__(self):
        super().__init__()
        self.sent = []

    async def kick(self, message):
        self.sent.append(message.message)

    async def listen(self):  # pragma: no cover - never listens
        if False:
            yield b""


def write(name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


async def kicked(broker, task, task_id, *args, **kwargs):
    await task.kicker().with_task_id(task_id).kiq(*args, **kwargs)
    return broker.sent.pop()


def step_args():
    """A stand-in for base64(zlib(serialize_value(ExecuteStepArgs))), as Dagster makes it."""
    raw = json.dumps({"__class__": "ExecuteStepArgs", "pipeline_run_id": "6a1f0c2e",
                      "step_keys_to_execute": ["op_a"], "should_verify_step": True,
                      "print_serialized_events": False}, separators=(",", ":"))
    return base64.b64encode(zlib.compress(raw.encode())).decode()


def run_args():
    return json.dumps({"__class__": "ExecuteRunArgs", "pipeline_origin": {"__class__": "PipelinePythonOrigin",
                       "pipeline_name": "my_job"}, "pipeline_run_id": "6a1f0c2e", "instance_ref": None,
                       "set_exit_code_on_failure": True}, separators=(",", ":"))


def resume_args():
    return json.dumps({"__class__": "ResumeRunArgs", "pipeline_origin": {"__class__": "PipelinePythonOrigin",
                       "pipeline_name": "my_job"}, "pipeline_run_id": "6a1f0c2e", "instance_ref": None,
                       "set_exit_code_on_failure": None}, separators=(",", ":"))


async def messages():
    broker = CaptureBroker()

    @broker.task(task_name="dagster.execute_step", dtq_key="6a1f0c2e/op_a/1", run_id="6a1f0c2e",
                 step_key="op_a", timeout=3600, max_attempts=3)
    async def execute_step(execute_step_args: str) -> None: ...

    @broker.task(task_name="dagster.execute_run", dtq_key="6a1f0c2e/run/1", run_id="6a1f0c2e",
                 timeout=7200.5)
    async def execute_run(execute_run_args: str) -> None: ...

    @broker.task(task_name="dagster.resume_run", dtq_key="6a1f0c2e/run/resume/1",
                 run_id="6a1f0c2e", resume_attempt="1", timeout=7200.5)
    async def resume_run(resume_run_args: str) -> None: ...

    @broker.task(task_name="dtq.exec", dtq_key="loadsim/000001", timeout=30, max_attempts=2)
    async def exec_kw(argv: list) -> None: ...

    @broker.task(task_name="dtq.exec")
    async def exec_args(*argv: str) -> None: ...

    @broker.task(task_name="app.tasks:add", retry_on_error=True, max_retries=3, timeout=1.5,
                 delay=7, blob=b"\x00\x01", note="x")
    async def add(a: int, b: int, c: int = 0) -> int: ...

    write("execute_step.json", await kicked(broker, execute_step, "0f3c6c1e2b7d4f60a9e8d7c6b5a49382",
                                            execute_step_args=step_args()))
    write("execute_run.json", await kicked(broker, execute_run, "1a2b3c4d5e6f47808192a3b4c5d6e7f8",
                                           execute_run_args=run_args()))
    write("resume_run.json", await kicked(broker, resume_run, "6f708192a3b44c5d8e6f708192a3b4c5",
                                          resume_run_args=resume_args()))
    write("exec_kwargs.json", await kicked(broker, exec_kw, "2b3c4d5e6f7048819203b4c5d6e7f809",
                                           argv=["/bin/echo", "héllo", "wörld"]))
    # a plain TaskIQ producer: no dtq_key, so task_id is the key
    write("exec_args.json", await kicked(broker, exec_args, "3c4d5e6f708149920314c5d6e7f8091a",
                                         "/bin/sleep", "0.1"))
    write("plain_add.json", await kicked(broker, add, "4d5e6f70819240a31425d6e7f8091a2b", 1, 2, c=3))

    compact = CaptureBroker().with_formatter(JSONFormatter())

    @compact.task(task_name="dagster.execute_step", dtq_key="6a1f0c2e/op_b/2", run_id="6a1f0c2e",
                  step_key="op_b", timeout=60.25, max_attempts=5)
    async def execute_step_c(execute_step_args: str) -> None: ...

    write("execute_step_jsonformatter.json",
          await kicked(compact, execute_step_c, "5e6f708192a341b42536e7f8091a2b3c",
                       execute_step_args=step_args()))


def appendix_b():
    """The message of docs/reference Appendix B, built from taskiq's own model."""
    labels, types_ = {}, {}
    for k, v in {"retry_on_error": True, "max_retries": 3, "timeout": 1.5, "delay": 7,
                 "blob": b"\x00\x01", "note": "x"}.items():
        labels[k], types_[k] = prepare_label(v)
    m = TaskiqMessage(task_id="0f3c00000000000000000000000000aa", task_name="app.tasks:add",
                      labels=labels, labels_types=types_, args=[1, 2], kwargs={"c": 3})
    write("appendix_b.json", json.dumps(m.model_dump(mode="json")))


def label_cases():
    """What taskiq.labels.parse_label makes of a value and a type code."""
    strings = {
        2: ["7", " 7\n", "-0", "+5", "1_000", "0_1", "007", "1__0", "_1", "1_", "0x10", "1.0",
            "", " ", "9223372036854775807", "-9223372036854775808", "9223372036854775808",
            "\u0663"],
        4: ["1.5", "1_0.5", "1._5", "1_e5", "1e5_0", "inf", "-Infinity", "+nan", "NaN", "5.", ".5",
            ".", "e5", "1e", "1e+", "0x1p3", "nan(1)", " 2.5 ", "1e999", "-1e-999", "3600", "", "1,5"],
        5: ["True", "true", "TRUE", "tRuE", "False", "yes", "1", "", " true"],
        6: ["AAE=", "AAE", "A A E =", "AB=C=", "QQ==QQ==", "Q===", "=QQ==", "QUJD", "QUJ", "Q",
            "!!!!", "", "QU\nJD", "QQ"],
        1: ["anything", ""],
        3: ["x", ""],
    }
    cases = []
    for t, values in strings.items():
        for v in values:
            cases.append(case(v, t))
    for v, t in [(True, 5), (False, 5), (1, 5), (None, 5), (3.7, 2), (-3.7, 2), (True, 2), (None, 2),
                 (2, 4), (False, 4), ("x", 7), ("x", 0), (1, 6), (None, 3), (True, 3), (12, 3)]:
        cases.append(case(v, t))
    write("labels_cases.json", json.dumps(cases, indent=1, ensure_ascii=True) + "\n")


def case(value, type_):
    try:
        out = parse_label(value, type_)
    except Exception as exc:  # noqa: BLE001 - every failure is a refusal
        return {"value": value, "type": type_, "ok": False, "error": type(exc).__name__}
    if isinstance(out, bytes):
        res = {"bytes_b64": base64.b64encode(out).decode()}
    elif isinstance(out, bool):
        res = {"bool": out}
    elif isinstance(out, int):
        res = {"int": str(out)}
    elif isinstance(out, float):
        res = {"float": repr(out)}
    else:
        res = {"str": out}
    d = {"value": value, "type": type_, "ok": True}
    d.update(res)
    return d


def sign_like_a_third_party(body: bytes) -> bytes:
    """docs/wire-format.md, "For other producers": the signed bytes are the message without
    labels.dtq_sig and labels_types.dtq_sig, printed compactly in its own key order."""
    msg = json.loads(body)
    msg["labels"].pop("dtq_sig", None)
    if isinstance(msg.get("labels_types"), dict):
        msg["labels_types"].pop("dtq_sig", None)
    signed = json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode()
    mac = hmac.new(SIGNING_KEY, signed, hashlib.sha256).hexdigest()
    msg["labels"]["dtq_sig"] = "v1:" + mac
    if isinstance(msg.get("labels_types"), dict):
        msg["labels_types"]["dtq_sig"] = 3
    return json.dumps(msg).encode()  # any spacing: the receiver re-prints


def main():
    asyncio.run(messages())
    appendix_b()
    label_cases()
    with open(os.path.join(HERE, "exec_kwargs.json"), "rb") as f:
        write("signed_python.json", sign_like_a_third_party(f.read()))
    with open(os.path.join(HERE, "execute_step.json"), "rb") as f:
        write("signed_python_step.json", sign_like_a_third_party(f.read()))
    with open(os.path.join(HERE, "appendix_b.json"), "rb") as f:  # integers in args/kwargs
        write("signed_python_appendix_b.json", sign_like_a_third_party(f.read()))
    write("VERSIONS", f"taskiq {version('taskiq')}\npydantic {version('pydantic')}\n"
                      f"python {sys.version.split()[0]}\n")


if __name__ == "__main__":
    main()
