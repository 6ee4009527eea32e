"""Recording helpers every workload runner shares (pytest side)."""
from __future__ import annotations

from pytest_nvme_ai.core.metrics import Metric


def prefixed(metric: Metric, prefix: str) -> Metric:
    """The same metric under `<prefix>_<name>` (pairing tests record two runs in one test)."""
    return Metric(f"{prefix}_{metric.name}", metric.unit, metric.better, metric.samples, metric.gated)
