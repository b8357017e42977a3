"""Configuration shared by the executor and the run launcher, and how it reaches the shim.

Every dtq setting is optional here: what the Dagster config leaves out, `dtq executor-shim`
reads from its own environment (`DTQ_QUEUE_URL`, `DTQ_LEDGER_DSN`, `AWS_REGION`...) or from
its `--config` file, exactly like every dtq applet (docs/configuration.md). Values given here
are handed to the shim as those same environment variables, so secrets never appear on a
command line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dagster import Field, IntSource, Map, StringSource

# Dagster config key -> the shim's environment variable (src/config.c).
SHIM_ENV_OF = {
    "queue_url": "DTQ_QUEUE_URL",
    "ledger_dsn": "DTQ_LEDGER_DSN",
    "region": "DTQ_AWS_REGION",
    "endpoint_url": "DTQ_AWS_ENDPOINT_URL",
    "config_file": "DTQ_CONFIG",
    "signing_key_file": "DTQ_SIGNING_KEY_FILE",
}

DEFAULT_DTQ_PATH = "dtq"
DEFAULT_REQUEST_TIMEOUT = 60


def shim_config_fields() -> dict[str, Field]:
    """Config fields that say how to reach dtq (the queue, the ledger, AWS, the binary)."""
    return {
        "queue_url": Field(
            StringSource,
            is_required=False,
            description="URL of the SQS task queue. Default: the shim's DTQ_QUEUE_URL.",
        ),
        "ledger_dsn": Field(
            StringSource,
            is_required=False,
            description=(
                "PostgreSQL connection string of the dtq ledger. Default: the shim's"
                " DTQ_LEDGER_DSN. Prefer {env: ...}: the value is a secret."
            ),
        ),
        "region": Field(
            StringSource,
            is_required=False,
            description="AWS region. Default: AWS_REGION, else taken from the queue URL.",
        ),
        "endpoint_url": Field(
            StringSource,
            is_required=False,
            description="AWS endpoint (LocalStack, moto). Default: AWS_ENDPOINT_URL or AWS.",
        ),
        "config_file": Field(
            StringSource,
            is_required=False,
            description="A dtq configuration file (`key = value` lines), read by the shim.",
        ),
        "signing_key_file": Field(
            StringSource,
            is_required=False,
            description="File holding the HMAC key that signs task messages.",
        ),
        "dtq_path": Field(
            StringSource,
            is_required=False,
            default_value=DEFAULT_DTQ_PATH,
            description="The dtq executable (a name looked up in PATH, or a path).",
        ),
        "shim_env": Field(
            Map(str, str),
            is_required=False,
            description=(
                "More environment variables for `dtq executor-shim` (any DTQ_* or AWS_*"
                " setting). The shim inherits the run worker's environment as well."
            ),
        ),
        "request_timeout": Field(
            IntSource,
            is_required=False,
            default_value=DEFAULT_REQUEST_TIMEOUT,
            description="Seconds one shim request may take before the co-process is restarted.",
        ),
    }


@dataclass(frozen=True)
class ShimSettings:
    """How to start the executor-shim: its command, its environment overrides, a timeout."""

    dtq_path: str = DEFAULT_DTQ_PATH
    env: Mapping[str, str] = field(default_factory=dict)
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ShimSettings:
        env: dict[str, str] = {}
        for key, var in SHIM_ENV_OF.items():
            value = config.get(key)
            if value is not None and value != "":
                env[var] = str(value)
        for var, value in (config.get("shim_env") or {}).items():
            env[str(var)] = str(value)
        return cls(
            dtq_path=str(config.get("dtq_path") or DEFAULT_DTQ_PATH),
            env=env,
            request_timeout=float(config.get("request_timeout") or DEFAULT_REQUEST_TIMEOUT),
        )

    @property
    def argv(self) -> list[str]:
        return [self.dtq_path, "executor-shim", "--serve"]

    def process_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The co-process's environment: the run worker's, with ours on top."""
        env = dict(os.environ if base is None else base)
        env.update(self.env)
        return env

    def queue_url(self, base: Mapping[str, str] | None = None) -> str | None:
        """The queue the shim will use, for messages shown to users."""
        return self.process_env(base).get("DTQ_QUEUE_URL") or None
