"""The code location: `dagster dev -m dtq_examples.definitions` (with python/ and
python/examples/ importable), or the workspace.yaml that compose/local/up.sh writes."""

from dagster import Definitions

from dtq_examples.jobs import ALL_JOBS

defs = Definitions(jobs=ALL_JOBS)
