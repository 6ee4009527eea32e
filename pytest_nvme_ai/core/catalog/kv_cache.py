"""The KV cache on the drive (measure/kv_cache): LMCache's disk tier under a serving workload and
under real models' KV sizes. Time to first token and cached tokens/s are gated; tails, the host side
of a retrieve, hit rates and byte counts are report-only."""
from __future__ import annotations

from pytest_nvme_ai.core.catalog.base import MetricSpec

ORDER = 45
METRICS = {
    # serving case: one sample per reuse request (a user's second round and later)
    "kv_ttft_cold": MetricSpec("s", "lower", True, "time to first token with a full prefill of the prompt"),
    "kv_ttft_warm": MetricSpec("s", "lower", True, "time to first token with the prefix restored from LMCache's tiers"),
    "kv_ttft_warm_vs_cold": MetricSpec("ratio", "lower", True, "warm / cold time to first token, per request"),
    "kv_hit_rate": MetricSpec("ratio", "higher", False, "prompt tokens restored from LMCache / prompt tokens"),
    "kv_restore_match": MetricSpec("ratio", "higher", False,
                                   "requests whose first token after a restore equals the full prefill's"),
    # storage case: one sample per sequence (store, retrieve), percentiles over sequences
    "kv_store_tokens_per_s": MetricSpec("tokens/s", "higher", True, "cached tokens stored per second, until on the drive"),
    "kv_retrieve_tokens_per_s": MetricSpec("tokens/s", "higher", True, "cached tokens retrieved per second"),
    "kv_retrieve_device_p50": MetricSpec("s", "lower", True, "retrieve time with chunk reads in flight (the I/O), median"),
    "kv_retrieve_device_p95": MetricSpec("s", "lower", False, "retrieve time with chunk reads in flight, 95th percentile"),
    "kv_retrieve_device_p99": MetricSpec("s", "lower", False, "retrieve time with chunk reads in flight, 99th percentile"),
    "kv_retrieve_host_p95": MetricSpec("s", "lower", False,
                                       "retrieve time with no chunk read in flight (hashing, copies), 95th percentile"),
    # both cases: what LMCache's disk backend moved
    "kv_write_bytes_per_token": MetricSpec("B", "lower", False, "bytes LMCache wrote per cached token (endurance)"),
    "kv_read_bytes_per_token": MetricSpec("B", "lower", False, "bytes LMCache read per token restored from the drive"),
    "kv_disk_hit_fraction": MetricSpec("ratio", "higher", False, "restored tokens read from the drive / restored tokens"),
    "kv_disk_write_bytes": MetricSpec("B", "lower", False, "bytes of chunk files LMCache wrote"),
    "kv_disk_read_bytes": MetricSpec("B", "lower", False, "bytes of chunk files LMCache read"),
}
