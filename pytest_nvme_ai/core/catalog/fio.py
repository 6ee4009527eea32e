"""fio (and anything measuring a read the same way, like the aio suite's `bw`)."""
from __future__ import annotations

from pytest_nvme_ai.core.catalog.base import MetricSpec

ORDER = 10
METRICS = {
    "bw": MetricSpec("B/s", "higher", True, "read bandwidth"),
    "iops": MetricSpec("IO/s", "higher", False, "I/O operations per second"),
    "clat_p50": MetricSpec("ns", "lower", False, "completion latency, median"),
    "clat_p99": MetricSpec("ns", "lower", False, "completion latency, 99th percentile"),
    "clat_p999": MetricSpec("ns", "lower", False, "completion latency, 99.9th percentile"),
}
