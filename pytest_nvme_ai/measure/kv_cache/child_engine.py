"""The child's LMCache engine and the audit of its disk backend (runs in the KV child only).

The audit wraps the disk backend's `write_file`/`read_file` (LMCache's bytes, and each chunk I/O's
interval: the device side of a retrieve) and reads the kernel's flags of every chunk file descriptor
it opens from /proc/self/fdinfo (O_DIRECT as the kernel holds it, not as the code asked for it).
"""
from __future__ import annotations

import importlib
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pytest_nvme_ai.measure.kv_cache.result import TierStats
from pytest_nvme_ai.measure.kv_cache.spec import KvSpec

ENGINE_ID = "nvme-ai-kv"
PUT_TIMEOUT_S = 600.0


def quiet_lmcache_env() -> None:
    """Before LMCache is imported: no usage telemetry (it would phone stats.lmcache.ai), warnings only."""
    os.environ.setdefault("LMCACHE_TRACK_USAGE", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("LMCACHE_LOG_LEVEL", "WARNING")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# ---- the audit of LMCache's disk backend ----------------------------------------------------------
@dataclass
class DiskAudit:
    """Bytes, intervals and O_DIRECT of the chunk files under `cache_dir` (thread-safe: LMCache writes
    from its disk worker threads and reads from a thread pool)."""

    cache_dir: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    ios: list[tuple[str, float, float, int]] = field(default_factory=list)   # (op, t0, t1, bytes)
    opens_direct: int = 0
    opens_buffered: int = 0

    def note_fd(self, path: Any, fd: int) -> None:
        if not str(path).startswith(self.cache_dir):
            return
        text = Path(f"/proc/self/fdinfo/{fd}").read_text()
        m = re.search(r"^flags:\s*([0-7]+)", text, re.MULTILINE)
        direct = bool(m and int(m.group(1), 8) & os.O_DIRECT)
        with self.lock:
            if direct:
                self.opens_direct += 1
            else:
                self.opens_buffered += 1

    def timed(self, op: str, fn: Callable[..., Any], nbytes: int, *args: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args)
        t1 = time.perf_counter()
        with self.lock:
            self.ios.append((op, t0, t1, nbytes))
        return out

    def install(self, backend: Any) -> None:
        """Wrap this backend instance's chunk I/O and its module's opens (only that module's)."""
        import builtins

        module: Any = sys.modules[type(backend).__module__]
        write_file, read_file = backend.write_file, backend.read_file
        audit = self

        def audited_write(buffer: Any, path: str) -> None:
            audit.timed("write", write_file, memoryview(buffer).nbytes, buffer, path)

        def audited_read(key: Any, buffer: Any, path: str) -> None:
            if os.path.exists(path):   # LMCache swallows a missing file: count only reads that happened
                audit.timed("read", read_file, memoryview(buffer).nbytes, key, buffer, path)
            else:
                read_file(key, buffer, path)

        class FdFlagsOs:
            """`os` for the backend module: os.open notes the kernel's flags of the new descriptor."""

            def __getattr__(self, name: str) -> Any:
                return getattr(os, name)

            def open(self, path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
                fd = os.open(path, flags, mode, **kw)
                audit.note_fd(path, fd)
                return fd

        def audited_open(file: Any, *args: Any, **kw: Any) -> Any:
            fh = builtins.open(file, *args, **kw)
            if isinstance(file, (str, os.PathLike)):
                audit.note_fd(file, fh.fileno())
            return fh

        backend.write_file, backend.read_file = audited_write, audited_read
        module.os = FdFlagsOs()       # module globals: only LMCache's disk backend sees these
        module.open = audited_open

    def since(self, mark: int) -> list[tuple[str, float, float, int]]:
        with self.lock:
            return list(self.ios[mark:])

    def mark(self) -> int:
        with self.lock:
            return len(self.ios)


def busy_seconds(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    """Time in [start, end] covered by at least one interval (reads run in parallel threads: a sum
    would count overlapping I/O twice)."""
    spans = sorted((max(a, start), min(b, end)) for a, b in intervals if b > start and a < end)
    total, cur_a, cur_b = 0.0, None, None
    for a, b in spans:
        if cur_b is None or a > cur_b:
            if cur_b is not None and cur_a is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None and cur_a is not None:
        total += cur_b - cur_a
    return total


def proc_io() -> tuple[int, int]:
    """(read_bytes, write_bytes) the kernel accounted to this process at the storage layer."""
    fields = dict(line.split(": ", 1) for line in Path("/proc/self/io").read_text().splitlines() if ": " in line)
    return int(fields.get("read_bytes", 0)), int(fields.get("write_bytes", 0))


def fs_type(path: Path) -> str:
    """The file system type of the mount that holds `path` (longest mount point that is a prefix)."""
    real = str(Path(path).resolve())
    best, kind = "", ""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        parts = left.split()
        if len(parts) < 5 or not right:
            continue
        mnt = parts[4].replace("\\040", " ")
        if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, kind = mnt, right.split()[0]
    return kind


# ---- the engine -----------------------------------------------------------------------------------
@dataclass
class Engine:
    """One LMCache engine and what the child needs of it."""

    engine: Any
    disk: Any | None                     # the LocalDiskBackend, or None when the disk tier is off
    audit: DiskAudit


class FlatKvConnector:
    """LMCache's "GPU connector" for a KV tensor in host memory laid out as LMCache's chunks are,
    [2, layers, tokens, kv_heads*head_dim]: a chunk is a slice on the token axis, copied in or out."""

    def __init__(self, kv_shape: Any) -> None:
        self.layers, self.hidden = kv_shape.layers, kv_shape.kv_heads * kv_shape.head_dim

    def from_gpu(self, memory_obj: Any, start: int, end: int, **kw: Any) -> None:
        memory_obj.tensor.copy_(kw["kv"][:, :, start:end])

    def to_gpu(self, memory_obj: Any, start: int, end: int, **kw: Any) -> None:
        kw["kv"][:, :, start:end].copy_(memory_obj.tensor)

    def batched_from_gpu(self, memory_objs: Any, starts: Any, ends: Any, **kw: Any) -> None:
        for m, s, e in zip(memory_objs, starts, ends):
            self.from_gpu(m, s, e, **kw)

    def batched_to_gpu(self, memory_objs: Any, starts: Any, ends: Any, **kw: Any) -> None:
        for m, s, e in zip(memory_objs, starts, ends):
            self.to_gpu(m, s, e, **kw)

    def get_shape(self, num_tokens: int) -> Any:
        import torch

        return torch.Size([2, self.layers, num_tokens, self.hidden])


def build_engine(spec: KvSpec, cache_dir: Path | None) -> Engine:
    """LMCache with its memory tier (`cpu_tier_mib`) and, unless switched off, its disk tier in cache_dir."""
    import torch

    # LMCache lives in the KV environment only (no stubs in the main one): imported by name.
    LMCacheEngineBuilder = importlib.import_module("lmcache.v1.cache_engine").LMCacheEngineBuilder
    LMCacheEngineConfig = importlib.import_module("lmcache.v1.config").LMCacheEngineConfig
    GPUConnectorInterface = importlib.import_module("lmcache.v1.gpu_connector").GPUConnectorInterface
    LMCacheMetadata = importlib.import_module("lmcache.v1.metadata").LMCacheMetadata

    kv = spec.kv
    disk = spec.disk_tier and cache_dir is not None
    cfg = LMCacheEngineConfig.from_defaults(
        chunk_size=spec.chunk_size, local_cpu=True, max_local_cpu_size=spec.cpu_tier_mib / 1024,
        local_disk=str(cache_dir) if disk else None,
        max_local_disk_size=spec.disk_tier_bytes / 2**30 if disk else 0.0,
        extra_config={"use_odirect": spec.odirect, "force_store_wait": True}, save_unfull_chunk=False)
    meta = LMCacheMetadata(model_name=spec.shape, world_size=1, local_world_size=1, worker_id=0, local_worker_id=0,
                           kv_dtype=torch.bfloat16, kv_shape=(kv.layers, 2, spec.chunk_size, kv.kv_heads, kv.head_dim))
    connector_cls = type("FlatKvConnectorImpl", (FlatKvConnector, GPUConnectorInterface), {})
    engine = LMCacheEngineBuilder.get_or_create(ENGINE_ID, cfg, meta, connector_cls(kv),
                                                lambda t, r: None, lambda o, r: o)
    engine.post_init()
    backends = engine.storage_manager.storage_backends
    backend = backends.get("LocalDiskBackend")
    audit = DiskAudit(str(cache_dir.resolve()) if cache_dir is not None else "\0")
    if backend is not None:
        audit.install(backend)
    elif disk:
        raise RuntimeError(f"LMCache built no LocalDiskBackend for {cache_dir} (backends: {', '.join(backends)})")
    return Engine(engine, backend, audit)


def close_engine() -> None:
    importlib.import_module("lmcache.v1.cache_engine").LMCacheEngineBuilder.destroy(ENGINE_ID)


def wait_for_puts(eng: Engine, timeout: float = PUT_TIMEOUT_S) -> None:
    """Block until every chunk the disk backend accepted is written (its puts are asynchronous)."""
    if eng.disk is None:
        return
    worker, deadline = eng.disk.disk_worker, time.monotonic() + timeout
    while True:
        with worker.put_lock:
            pending = len(worker.put_tasks)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{pending} chunk writes still pending after {timeout:.0f} s")
        time.sleep(0.0005)


def tier_stats(eng: Engine, io0: tuple[int, int], tokens_stored: int, tokens_hit: int, tokens_hit_disk: int,
               cache_dir: Path | None) -> TierStats:
    ios = eng.audit.since(0)
    io1 = proc_io()
    files = sum(1 for p in cache_dir.rglob("*") if p.is_file()) if cache_dir is not None and cache_dir.exists() else 0
    return TierStats(
        chunk_files_written=sum(1 for op, *_ in ios if op == "write"),
        chunk_files_read=sum(1 for op, *_ in ios if op == "read"),
        bytes_written=sum(n for op, _, _, n in ios if op == "write"),
        bytes_read=sum(n for op, _, _, n in ios if op == "read"),
        opens_direct=eng.audit.opens_direct, opens_buffered=eng.audit.opens_buffered,
        proc_read_bytes=io1[0] - io0[0], proc_write_bytes=io1[1] - io0[1],
        tokens_stored=tokens_stored, tokens_hit=tokens_hit, tokens_hit_disk=tokens_hit_disk, files_left=files)


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("lmcache", "torch", "transformers", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out
