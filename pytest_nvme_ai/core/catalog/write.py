"""The write side of the raw checks (suites/test_write.py): fio sequential write and the checkpoint
workload. `bw` (catalog/fio.py) stays read bandwidth."""
from __future__ import annotations

from pytest_nvme_ai.core.catalog.base import MetricSpec

ORDER = 35
METRICS = {
    "write_bw": MetricSpec("B/s", "higher", True, "sequential write bandwidth (direct I/O; checkpoint: write + fsync)"),
    "fsync_latency": MetricSpec("s", "lower", False, "fsync of one checkpoint file after writing it"),
    "readback_bw": MetricSpec("B/s", "higher", True, "checkpoint read back, page cache bypassed"),
}
