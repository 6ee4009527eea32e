"""What reached the drive: block-layer bytes of a measured child on the target's disk (measure.io_cgroup),
against what the application asked for (core.devtruth). Ungated: they check the measurement itself."""
from __future__ import annotations

from pytest_nvme_ai.core.catalog.base import MetricSpec

ORDER = 35
METRICS = {
    "device_read_bytes": MetricSpec("B", "lower", False,
                                    "bytes the target's disk read for the child's own cgroup (per loop or step)"),
    "device_write_bytes": MetricSpec("B", "lower", False,
                                     "bytes the target's disk wrote for the child's own cgroup (per loop or step)"),
    "device_read_ratio": MetricSpec("ratio", "higher", False,
                                    "device read bytes / the child's own block-layer reads (/proc/self/io)"),
    "write_bytes_per_step": MetricSpec("B", "lower", False, "device bytes written per training step"),
    "endurance_life_days": MetricSpec("days", "higher", False,
                                      "days to the drive's rated TBW at this run's write rate, run continuously",
                                      domain=(0.0, float("inf"))),
    "endurance_run_share": MetricSpec("ratio", "lower", False, "share of the drive's rated TBW this run wrote"),
}
