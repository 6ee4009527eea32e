"""DeepSpeed aio reads (bandwidth itself is `bw`, from the fio module)."""
from __future__ import annotations

from pytest_nvme_ai.core.catalog.base import MetricSpec

ORDER = 20
METRICS = {
    "read_latency": MetricSpec("s", "lower", False, "time to read the whole file once"),
    "aio_vs_fio": MetricSpec("ratio", "higher", True, "DeepSpeed aio bandwidth / fio bandwidth"),
}
