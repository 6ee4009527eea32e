"""`python -m pytest_nvme_ai.measure.zero_inference JOB.json RESULT.json`: one run in this process (remote_worker.py: child side)."""
from __future__ import annotations

import sys

from pytest_nvme_ai.measure.zero_inference.remote_worker import one_shot_main

if __name__ == "__main__":
    sys.exit(one_shot_main(sys.argv[1:]))
