"""fio: the typed job/result model (job.py) and the runner with its session data files (runner.py)."""
from __future__ import annotations

from pytest_nvme_ai.measure.fio.job import FioError, FioJob, FioResult

__all__ = ["FioError", "FioJob", "FioResult"]
