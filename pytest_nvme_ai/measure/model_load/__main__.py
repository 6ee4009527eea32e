"""`python -m pytest_nvme_ai.measure.model_load JOB.json RESULT.json`: one write or one cold load (child.py)."""
from __future__ import annotations

import sys

from pytest_nvme_ai.measure.model_load.child import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
