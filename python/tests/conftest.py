"""pytest set-up shared by the unit and end-to-end tests of dagster_dtq.

The package and the example code location are imported from the source tree, so the tests
run whether or not `pip install -e python` has been done."""

import sys
from pathlib import Path

PYTHON_DIR = Path(__file__).resolve().parents[1]
REPO = PYTHON_DIR.parent

for path in (PYTHON_DIR, PYTHON_DIR / "examples"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
