"""Cold model load (suites/test_model_load.py): a model's safetensors file read from the drive with the page
cache evicted, by each loader in its own process. Bytes the loader had storage read are `target_read_bytes`
(catalog/zero_inference.py: the same /proc/self/io counter, over the load)."""
from __future__ import annotations

from pytest_nvme_ai.core.catalog.base import MetricSpec

ORDER = 45
METRICS = {
    "load_bw": MetricSpec("B/s", "higher", True,
                          "model file bytes / wall time of one cold load (page cache evicted and checked empty)"),
    "load_vs_fio": MetricSpec("ratio", "higher", True,
                              "cold load bandwidth / fio direct sequential read of the same file, same round"),
    "ttft_cold": MetricSpec("s", "lower", True,
                            "from_pretrained from cold to the first generated token (load + prefill + one step)"),
}
