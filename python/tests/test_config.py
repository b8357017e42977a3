"""Executor and run-launcher configuration (schemas, env sources, what reaches the shim)."""

import pytest
from dagster import ExecutorRequirement
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.execution.retries import RetryMode
from dagster._serdes import ConfigurableClassData

from dagster_dtq import DtqRunLauncher, dtq_executor, make_dtq_executor
from dagster_dtq.config import ShimSettings
from dagster_dtq.executor import DtqStepDelegatingExecutor, DtqStepHandler


def executor_config(value):
    result = process_config(dtq_executor.config_schema.config_type, value)
    assert result.success, result.errors
    return result.value


def test_executor_definition():
    assert dtq_executor.name == "dtq"
    reqs = dtq_executor.get_requirements(executor_config({}))
    assert ExecutorRequirement.RECONSTRUCTABLE_JOB in reqs
    assert ExecutorRequirement.NON_EPHEMERAL_INSTANCE in reqs
    assert ExecutorRequirement.PERSISTENT_OUTPUTS in reqs


def test_every_key_is_optional_with_sane_defaults():
    cfg = executor_config({})
    assert cfg["dtq_path"] == "dtq"
    assert cfg["retries"] == {"enabled": {}}
    assert cfg["health_check_interval"] == 20
    assert cfg["exit_grace"] == 10
    assert cfg["event_tailer_offset"] == 200
    assert "queue_url" not in cfg and "max_concurrent" not in cfg


def test_env_sourced_values(monkeypatch):
    monkeypatch.setenv("MY_QUEUE", "http://127.0.0.1:5000/123456789012/steps")
    monkeypatch.setenv("MY_DSN", "host=db password=secret")
    monkeypatch.setenv("MY_MAX", "5")
    cfg = executor_config(
        {
            "queue_url": {"env": "MY_QUEUE"},
            "ledger_dsn": {"env": "MY_DSN"},
            "max_attempts": {"env": "MY_MAX"},
            "max_concurrent": 4,
            "step_timeout": 600,
            "region": "eu-west-1",
            "endpoint_url": "http://127.0.0.1:5000",
            "dtq_path": "/opt/dtq/bin/dtq",
            "shim_env": {"DTQ_LOG_LEVEL": "debug"},
            "tag_concurrency_limits": [{"key": "database", "value": "pg", "limit": 2}],
            "retries": {"disabled": {}},
        }
    )
    assert cfg["queue_url"].endswith("/steps") and cfg["max_attempts"] == 5
    settings = ShimSettings.from_config(cfg)
    assert settings.argv == ["/opt/dtq/bin/dtq", "executor-shim", "--serve"]
    assert settings.env == {
        "DTQ_QUEUE_URL": "http://127.0.0.1:5000/123456789012/steps",
        "DTQ_LEDGER_DSN": "host=db password=secret",
        "DTQ_AWS_REGION": "eu-west-1",
        "DTQ_AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "DTQ_LOG_LEVEL": "debug",
    }
    # The secret is in the co-process's environment, not in its command line.
    assert not any("secret" in a for a in settings.argv)
    executor = make_dtq_executor(cfg)
    assert isinstance(executor, DtqStepDelegatingExecutor)
    assert isinstance(executor.step_handler, DtqStepHandler)
    assert executor.retries == RetryMode.DISABLED
    assert executor._max_concurrent == 4
    assert executor._tag_concurrency_limits == [{"key": "database", "value": "pg", "limit": 2}]
    assert executor._should_verify_step is True
    assert executor._check_step_health_interval_seconds == 20
    storage = type("S", (), {"default_run_scoped_event_tailer_offset": lambda self: 0})()
    inst = type("I", (), {"event_log_storage": storage})()
    assert executor._get_pop_events_offset(inst) == 200
    monkeypatch.setenv("DAGSTER_EXECUTOR_POP_EVENTS_OFFSET", "7")
    assert executor._get_pop_events_offset(inst) == 7
    assert executor.step_handler._max_attempts == 5
    assert executor.step_handler._step_timeout == 600


def test_poll_interval_is_the_executors_sleep(monkeypatch):
    monkeypatch.delenv("DAGSTER_STEP_DELEGATING_EXECUTOR_SLEEP_SECONDS", raising=False)
    # Unset: Dagster's own default (1 s), or its environment variable.
    assert make_dtq_executor(executor_config({}))._sleep_seconds == 1.0
    monkeypatch.setenv("DAGSTER_STEP_DELEGATING_EXECUTOR_SLEEP_SECONDS", "0.5")
    assert make_dtq_executor(executor_config({}))._sleep_seconds == 0.5
    # Set: it wins over the variable, and an integer is taken as seconds too.
    assert make_dtq_executor(executor_config({"poll_interval": 0.1}))._sleep_seconds == 0.1
    assert make_dtq_executor(executor_config({"poll_interval": 2}))._sleep_seconds == 2.0
    for bad in (0, -1.0, 61):
        with pytest.raises(DagsterInvalidConfigError, match="poll_interval"):
            make_dtq_executor(executor_config({"poll_interval": bad}))
    schema = dtq_executor.config_schema.config_type
    assert not process_config(schema, {"poll_interval": "x"}).success


def test_bad_values_are_refused():
    for bad in ({"max_concurrent": "many"}, {"no_such_key": 1}, {"retries": {"maybe": {}}}):
        assert not process_config(dtq_executor.config_schema.config_type, bad).success


def test_process_env_inherits_the_run_workers_environment():
    settings = ShimSettings(env={"DTQ_QUEUE_URL": "mine"})
    env = settings.process_env({"PATH": "/bin", "DTQ_QUEUE_URL": "theirs", "AWS_REGION": "x"})
    assert env == {"PATH": "/bin", "DTQ_QUEUE_URL": "mine", "AWS_REGION": "x"}
    assert ShimSettings().queue_url({"DTQ_QUEUE_URL": "q"}) == "q"
    assert ShimSettings().queue_url({}) is None


def test_run_launcher_from_dagster_yaml(monkeypatch):
    monkeypatch.setenv("RUN_QUEUE", "http://127.0.0.1:5000/123456789012/runs")
    yaml = (
        "queue_url: {env: RUN_QUEUE}\n"
        "ledger_dsn: host=db\n"
        "dtq_path: /usr/local/bin/dtq\n"
        "max_attempts: 2\n"
        "run_timeout: 7200\n"
    )
    launcher = ConfigurableClassData("dagster_dtq", "DtqRunLauncher", yaml).rehydrate()
    assert isinstance(launcher, DtqRunLauncher)
    assert launcher._settings.env["DTQ_QUEUE_URL"].endswith("/runs")
    assert launcher._settings.dtq_path == "/usr/local/bin/dtq"
    assert launcher._max_attempts == 2 and launcher._run_timeout == 7200
    assert launcher.supports_check_run_worker_health and launcher.supports_resume_run
    assert launcher.inst_data is not None


def test_run_launcher_refuses_unknown_keys():
    with pytest.raises(DagsterInvalidConfigError):
        ConfigurableClassData("dagster_dtq", "DtqRunLauncher", "nonsense: 1\n").rehydrate()
