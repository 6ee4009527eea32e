"""Figures the gate works out (gate/window.py) rather than a test measures: shown next to each compared metric."""
from __future__ import annotations

from pytest_nvme_ai.core.catalog.base import MetricSpec

ORDER = 90
METRICS = {
    # Per compared metric, from the baseline window: the smallest change caught 9 times in 10 on this runner.
    "min_detectable_change": MetricSpec("%", "lower", False,
                                        "smallest change the gate flags on this runner, from the baseline window"),
}
