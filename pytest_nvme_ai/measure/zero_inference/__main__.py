"""`python -m pytest_nvme_ai.measure.zero_inference JOB.json RESULT.json`: one run in this process (worker.py)."""
from __future__ import annotations

import sys

from pytest_nvme_ai.measure.zero_inference.worker import one_shot_main

if __name__ == "__main__":
    sys.exit(one_shot_main(sys.argv[1:]))
