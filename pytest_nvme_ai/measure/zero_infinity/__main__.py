"""`python -m pytest_nvme_ai.measure.zero_infinity JOB.json RESULT.json`: one training run in this process (see remote.py: child side)."""
from __future__ import annotations

import sys

from pytest_nvme_ai.measure.zero_infinity.remote import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
