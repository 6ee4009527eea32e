"""`python -m pytest_nvme_ai.measure.kv_cache JOB.json RESULT.json`: one KV-cache run in this process (child.py)."""
from __future__ import annotations

import sys

from pytest_nvme_ai.measure.kv_cache.child import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
