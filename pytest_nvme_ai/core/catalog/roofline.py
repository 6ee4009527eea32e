"""The two-bound (roofline) model of an offloaded run and drive-speed emulation (docs/roofline.md).

Report-only by default: they explain a throughput; the throughputs themselves are what the gate
compares. `roofline_efficiency` and `bound` are functions of these and are never metrics.
"""
from __future__ import annotations

from pytest_nvme_ai.core.catalog.base import MetricSpec

ORDER = 35
METRICS = {
    "roofline_throughput": MetricSpec("tokens/s", "higher", False, "decode: batch / max(t_io, t_compute)"),
    "read_bw_vs_fio": MetricSpec("ratio", "higher", False, "I/O utilization of decode: t_io / t_step"),
    "accelerator_utilization": MetricSpec("ratio", "higher", False, "decode: t_compute / t_step (MLPerf's AU)"),
    "overlap": MetricSpec("ratio", "higher", False,
                          "decode: (t_io + t_compute - t_step) / min(t_io, t_compute), clipped to [0, 1]",
                          domain=(0.0, 1.0)),
    "prefill_roofline_throughput": MetricSpec("tokens/s", "higher", False,
                                              "prefill: batch*prompt / max(t_io, t_compute)"),
    "prefill_read_bw_vs_fio": MetricSpec("ratio", "higher", False, "I/O utilization of prefill: t_io / t_step"),
    "prefill_accelerator_utilization": MetricSpec("ratio", "higher", False, "prefill: t_compute / t_step"),
    "prefill_overlap": MetricSpec("ratio", "higher", False, "prefill: share of the shorter bound hidden"),
    "bandwidth_sensitivity": MetricSpec("ratio", "higher", False,
                                        "decode throughput gain from doubling the read bandwidth (between caps)",
                                        domain=(-1.0, float("inf"))),  # a ratio minus 1: lower throughput is < 0
}
