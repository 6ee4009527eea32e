"""ZeRO-Infinity training steps (measure/zero_infinity), one sample per step. `target_read_bytes`,
`target_read_bw` and `peak_rss` are the inference names (catalog/zero_inference.py), per step here."""
from __future__ import annotations

from pytest_nvme_ai.core.catalog.base import MetricSpec

ORDER = 40
METRICS = {
    "step_time": MetricSpec("s", "lower", True, "one training step: forward, backward, optimizer step"),
    "train_throughput": MetricSpec("tokens/s", "higher", True, "batch*seq_len/step_time"),
    "target_write_bytes": MetricSpec("B", "lower", False, "bytes written to the target during the step"),
    "target_write_bw": MetricSpec("B/s", "higher", False, "bytes written to the target / step time"),
    "loss": MetricSpec("loss", "lower", False, "training loss of the step (shows the run trained)"),
    "nvme_vs_cpu_step": MetricSpec("ratio", "lower", True, "NVMe-offload step time / CPU-offload step time"),
    "step_io_bound": MetricSpec("s", "lower", False, "the step's bytes read/written at fio's read/write bandwidth"),
    "step_io_fraction": MetricSpec("ratio", "higher", False, "step_io_bound / measured step time"),
}
