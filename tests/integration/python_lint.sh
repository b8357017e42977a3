#!/usr/bin/env bash
# The Dagster plugin stays ruff-clean (lint and format), as Dagster's own code is.
set -uo pipefail
. "$(dirname "$0")/../lib/harness.sh"
check "ruff check python/" "$DTQ_VENV/bin/ruff" check --no-cache python
check "ruff format --check python/" "$DTQ_VENV/bin/ruff" format --check --no-cache python
exit 0
