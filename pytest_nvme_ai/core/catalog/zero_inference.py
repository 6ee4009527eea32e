"""ZeRO-Inference generate() runs, their I/O pairing with fio, and the CPU-vs-NVMe pairing."""
from __future__ import annotations

from pytest_nvme_ai.core.catalog.base import MetricSpec

ORDER = 30
METRICS = {
    "prefill_latency": MetricSpec("s", "lower", True, "first forward pass (prompt)"),
    "decode_latency": MetricSpec("s", "lower", True, "generation after the first token"),
    "total_latency": MetricSpec("s", "lower", True, "whole generate() call"),
    "prefill_throughput": MetricSpec("tokens/s", "higher", True, "batch*prompt/prefill"),
    "decode_throughput": MetricSpec("tokens/s", "higher", True, "batch*(gen-1)/decode"),
    "total_throughput": MetricSpec("tokens/s", "higher", True, "batch*gen/total"),
    "peak_gpu_mem": MetricSpec("B", "lower", True, "peak CUDA memory allocated"),
    "peak_rss": MetricSpec("B", "lower", False, "peak resident memory of the run"),
    "target_read_bytes": MetricSpec("B", "lower", False, "bytes read from the target during the run"),
    "target_read_bw": MetricSpec("B/s", "higher", False, "bytes read from the target / total latency"),
    "offloaded_bytes": MetricSpec("B", "lower", False, "parameter bytes in DeepSpeed's swap files on the target"),
    "nvme_vs_cpu_throughput": MetricSpec("ratio", "higher", True, "NVMe-offload / CPU-offload total throughput"),
}
