"""Qualification rigor: several drives at once (measure/fio/multi.py; the set's `bw` is its last-done figure,
per-drive figures are custom `bw_drive_<label>` metrics, report-only) and ZeRO-Inference read amplification."""
from __future__ import annotations

from pytest_nvme_ai.core.catalog.base import MetricSpec

ORDER = 15
METRICS = {
    "bw_first_done": MetricSpec("B/s", "higher", False,
                                "all drives' rates summed while all were reading (elbencho first-done)"),
    "read_amplification": MetricSpec("ratio", "lower", False,
                                     "bytes read from the target per decode pass / offloaded bytes"),
}
