"""`python -m pytest_nvme_ai.zero_inference JOB.json RESULT.json`: one run in this process (see child.py)."""
from __future__ import annotations

import sys

from .child import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
