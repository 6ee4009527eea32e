"""Catalog metrics (core/catalog/kv_cache.py) from one run's record: pure arithmetic, no I/O."""
from __future__ import annotations

import numpy as np

from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.measure.kv_cache.result import KvResult


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples, dtype=float), q))


def serving_metrics(result: KvResult) -> dict[str, Metric]:
    """Per reuse request (round >= 1: the user's own history is in the tiers)."""
    reuse = [q for q in result.serving if q.round >= 1]
    if not reuse:
        return {}
    prompt = sum(q.prompt_tokens for q in reuse)
    return {
        "kv_ttft_cold": Metric.of("kv_ttft_cold", [q.ttft_cold for q in reuse]),
        "kv_ttft_warm": Metric.of("kv_ttft_warm", [q.ttft_warm for q in reuse]),
        "kv_ttft_warm_vs_cold": Metric.of("kv_ttft_warm_vs_cold", [q.ttft_warm / q.ttft_cold for q in reuse]),
        "kv_hit_rate": Metric.of("kv_hit_rate", [sum(q.hit_tokens for q in reuse) / prompt]),
        "kv_restore_match": Metric.of("kv_restore_match", [sum(q.token_match for q in reuse) / len(reuse)]),
    }


def storage_metrics(result: KvResult) -> dict[str, Metric]:
    seqs = result.storage
    if not seqs:
        return {}
    device = [s.retrieve_device_seconds for s in seqs]
    out = {
        "kv_store_tokens_per_s": Metric.of("kv_store_tokens_per_s", [s.tokens / s.store_seconds for s in seqs]),
        "kv_retrieve_tokens_per_s": Metric.of("kv_retrieve_tokens_per_s",
                                              [s.hit_tokens / s.retrieve_seconds for s in seqs]),
        "kv_retrieve_host_p95": Metric.of("kv_retrieve_host_p95",
                                          [percentile([s.retrieve_host_seconds for s in seqs], 95)]),
    }
    for q in (50, 95, 99):
        out[f"kv_retrieve_device_p{q}"] = Metric.of(f"kv_retrieve_device_p{q}", [percentile(device, q)])
    return out


def tier_metrics(result: KvResult) -> dict[str, Metric]:
    t = result.tier
    out = {"kv_disk_write_bytes": Metric.of("kv_disk_write_bytes", [t.bytes_written]),
           "kv_disk_read_bytes": Metric.of("kv_disk_read_bytes", [t.bytes_read])}
    if t.tokens_stored:
        out["kv_write_bytes_per_token"] = Metric.of("kv_write_bytes_per_token", [t.bytes_written / t.tokens_stored])
    if t.tokens_hit_disk:
        out["kv_read_bytes_per_token"] = Metric.of("kv_read_bytes_per_token", [t.bytes_read / t.tokens_hit_disk])
    if t.tokens_hit:
        out["kv_disk_hit_fraction"] = Metric.of("kv_disk_hit_fraction", [t.tokens_hit_disk / t.tokens_hit])
    return out


def kv_metrics(result: KvResult) -> dict[str, Metric]:
    """Every catalog metric this run measured (none for a run that did not finish)."""
    if not result.ok:
        return {}
    return {**serving_metrics(result), **storage_metrics(result), **tier_metrics(result)}
