"""The storage-shaped case, in the child: KV tensors of a real model's per-token size stored and
retrieved through LMCache without the model.

Each sequence has its own tokens (no shared prefix) and its own KV, drawn from a seeded generator so
it can be drawn again to check the retrieve bit for bit. All sequences are stored (each until its
chunk files are written), then retrieved oldest first: the memory tier holds little more than one
sequence, so every retrieve of an older one reads the drive. A retrieve's time is split into the time
with at least one chunk read in flight (device) and the rest (host: hashing, allocation, copying into
the KV layout), the split MLPerf Storage's KV-cache discussion asks for.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pytest_nvme_ai.measure.kv_cache.child_engine import Engine, busy_seconds, proc_io, tier_stats, wait_for_puts
from pytest_nvme_ai.measure.kv_cache.result import KvResult, StorageSequence
from pytest_nvme_ai.measure.kv_cache.spec import KvSpec


def tokens_of(spec: KvSpec, i: int) -> Any:
    import torch

    return torch.arange(spec.seq_tokens, dtype=torch.long) + i * spec.seq_tokens + 1


def kv_of(spec: KvSpec, i: int) -> Any:
    """Sequence i's KV as LMCache lays it out, [2, layers, tokens, kv_heads*head_dim] in bf16: random
    16-bit patterns (cheaper than normal draws, and every bit of every chunk differs between sequences)."""
    import torch

    kv = spec.kv
    g = torch.Generator().manual_seed(spec.seed * 1000 + i)
    shape = (2, kv.layers, spec.seq_tokens, kv.kv_heads * kv.head_dim)
    return torch.randint(-(1 << 15), 1 << 15, shape, dtype=torch.int16, generator=g).view(torch.bfloat16)


def store_all(spec: KvSpec, eng: Engine) -> list[float]:
    times = []
    for i in range(spec.sequences):
        tokens, kv = tokens_of(spec, i), kv_of(spec, i)
        t0 = time.perf_counter()
        eng.engine.store(tokens, kv=kv)
        wait_for_puts(eng)
        times.append(time.perf_counter() - t0)
        del kv
    return times


def retrieve_one(spec: KvSpec, eng: Engine, i: int, store_seconds: float) -> StorageSequence:
    import torch

    kv = spec.kv
    out = torch.zeros(2, kv.layers, spec.seq_tokens, kv.kv_heads * kv.head_dim, dtype=torch.bfloat16)
    tokens = tokens_of(spec, i)
    mark = eng.audit.mark()
    t0 = time.perf_counter()
    mask = eng.engine.retrieve(tokens, kv=out)
    t1 = time.perf_counter()
    reads = [(a, b) for op, a, b, _ in eng.audit.since(mark) if op == "read"]
    device = busy_seconds(reads, t0, t1)
    hit = int(mask.sum())
    exact = hit == spec.seq_tokens and torch.equal(out.view(torch.int16), kv_of(spec, i).view(torch.int16))
    return StorageSequence(tokens=spec.seq_tokens, store_seconds=store_seconds, retrieve_seconds=t1 - t0,
                           retrieve_device_seconds=device, retrieve_host_seconds=max(0.0, (t1 - t0) - device),
                           hit_tokens=hit, disk_chunks=len(reads), bit_exact=bool(exact))


def run_storage(spec: KvSpec, eng: Engine, cache_dir: Path | None, setup_started: float) -> KvResult:
    setup = time.perf_counter() - setup_started
    io0 = proc_io()
    store_times = store_all(spec, eng)
    mark = eng.audit.mark()
    seqs = tuple(retrieve_one(spec, eng, i, store_times[i]) for i in range(spec.sequences))
    chunk_reads = tuple(b - a for op, a, b, _ in eng.audit.since(mark) if op == "read")
    hit = sum(s.hit_tokens for s in seqs)
    hit_disk = min(hit, sum(s.disk_chunks for s in seqs) * spec.chunk_size)
    tier = tier_stats(eng, io0, tokens_stored=spec.sequences * spec.seq_tokens, tokens_hit=hit,
                      tokens_hit_disk=hit_disk, cache_dir=cache_dir)
    return KvResult(spec=spec.to_dict(), outcome="ok", tier=tier, storage=seqs, chunk_read_seconds=chunk_reads,
                    setup_seconds=setup)
