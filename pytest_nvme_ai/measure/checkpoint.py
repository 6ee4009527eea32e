"""A checkpoint-shaped write, as MLPerf Storage's checkpointing workload: N files written and fsync'd,
then read back from the drive, not from the page cache.

A training job saves its state as a handful of large files, each made durable with fsync before the
checkpoint counts; a restart reads them back cold. So, per file:

    write   buffered write() calls of `block_bytes`, then fsync (what torch.save + os.fsync do)
    fsync   timed on its own: where the bytes actually reach the drive      -> fsync_latency [s]
    evict   posix_fadvise(DONTNEED) on the clean pages, so the read-back cannot hit them
    read    with O_DIRECT into a page-aligned buffer where the filesystem allows it, else a plain read
            after the eviction above (the method is recorded)

    write_bw    = total bytes / (write + fsync time of all files)          [B/s]
    readback_bw = total bytes / read time of all files                      [B/s]

Files are written only inside the directory given (the target's private workdir, checked with the
suite's write fence) and removed before returning, also on an error.
"""
from __future__ import annotations

import errno
import mmap
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pytest_nvme_ai.core.fsutil import ensure_inside, is_block_device

BLOCK_BYTES = 1 << 20        # one write()/read() call; a multiple of any logical block size O_DIRECT needs
MIN_FILE_BYTES = BLOCK_BYTES
SPACE_RESERVE = 256 << 20    # never fill a target to the last block
FREE_SHARE = 0.5             # a check uses at most half of what is free


class CheckpointDoesNotFit(Exception):
    """The target has too little free space for even a minimal checkpoint; the message has the figures."""


@dataclass(frozen=True)
class CheckpointJob:
    files: int
    file_bytes: int
    block_bytes: int = BLOCK_BYTES

    def __post_init__(self) -> None:
        if isinstance(self.files, bool) or not isinstance(self.files, int) or self.files < 1:
            raise ValueError(f"files={self.files!r} must be a whole number of at least 1")
        if self.block_bytes < 4096 or self.block_bytes % 4096:
            raise ValueError(f"block_bytes={self.block_bytes} must be a positive multiple of 4096 (O_DIRECT alignment)")
        if self.file_bytes < self.block_bytes or self.file_bytes % self.block_bytes:
            raise ValueError(f"file_bytes={self.file_bytes} must be a whole number of blocks of {self.block_bytes}")

    @property
    def total_bytes(self) -> int:
        return self.files * self.file_bytes

    def params(self) -> dict[str, int]:
        return {"files": self.files, "file_bytes": self.file_bytes, "block_bytes": self.block_bytes}


@dataclass(frozen=True)
class FileTiming:
    write_s: float     # write() calls, before fsync
    fsync_s: float
    read_s: float


@dataclass(frozen=True)
class CheckpointResult:
    job: CheckpointJob
    files: tuple[FileTiming, ...]
    readback_method: str            # "O_DIRECT" | "fadvise-DONTNEED"

    @property
    def write_bw(self) -> float:
        return self.job.total_bytes / max(sum(f.write_s + f.fsync_s for f in self.files), 1e-12)

    @property
    def readback_bw(self) -> float:
        return self.job.total_bytes / max(sum(f.read_s for f in self.files), 1e-12)

    @property
    def fsync_latencies(self) -> list[float]:
        return [f.fsync_s for f in self.files]


def fit_to_space(job: CheckpointJob, directory: Path) -> tuple[CheckpointJob, str | None]:
    """The job, shrunk (smaller files, same count) to at most half of the free space; a note when shrunk.
    Raises CheckpointDoesNotFit, with the figures, when not even one block per file fits."""
    free = shutil.disk_usage(directory).free
    budget = int(max(free - SPACE_RESERVE, 0) * FREE_SHARE)
    if job.total_bytes <= budget:
        return job, None
    per_file = budget // job.files // job.block_bytes * job.block_bytes
    if per_file < MIN_FILE_BYTES:
        raise CheckpointDoesNotFit(
            f"{directory} has {free / 2**20:.0f} MiB free; a checkpoint of {job.files} files needs at least "
            f"{job.files * MIN_FILE_BYTES / 2**20:.0f} MiB within half of the free space after a "
            f"{SPACE_RESERVE >> 20} MiB reserve (the profile asks for {job.total_bytes / 2**20:.0f} MiB)")
    shrunk = CheckpointJob(job.files, per_file, job.block_bytes)
    return shrunk, (f"checkpoint capped by free space: {job.files} x {per_file / 2**20:.0f} MiB instead of "
                    f"{job.files} x {job.file_bytes / 2**20:.0f} MiB ({free / 2**30:.2f} GiB free)")


def run_checkpoint(job: CheckpointJob, directory: Path, fence: Path) -> CheckpointResult:
    """Write, fsync and read back `job.files` files in `directory` (inside `fence`); remove them after."""
    directory = ensure_inside(Path(directory), Path(fence))
    if is_block_device(directory):
        raise PermissionError(f"refusing to write to block device {directory}: pass a directory on a filesystem")
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"ckpt-{i:03d}.bin" for i in range(job.files)]
    payload = os.urandom(job.block_bytes)  # incompressible, so a compressing drive cannot shortcut it
    try:
        writes = [write_file(p, job, payload) for p in paths]
        method, reads = read_back(paths, job)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return CheckpointResult(job, tuple(FileTiming(w, f, r) for (w, f), r in zip(writes, reads)), method)


def write_file(path: Path, job: CheckpointJob, payload: bytes) -> tuple[float, float]:
    """(write seconds, fsync seconds) of one checkpoint file; its clean pages are evicted afterwards."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        t0 = time.perf_counter()
        for _ in range(job.file_bytes // job.block_bytes):
            _write_all(fd, payload)
        t1 = time.perf_counter()
        os.fsync(fd)
        t2 = time.perf_counter()
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return t1 - t0, t2 - t1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_back(paths: list[Path], job: CheckpointJob) -> tuple[str, list[float]]:
    """Read every file whole; O_DIRECT when the filesystem takes it, else plain reads of evicted pages."""
    with mmap.mmap(-1, job.block_bytes) as buf:  # page-aligned, as O_DIRECT requires
        try:
            return "O_DIRECT", [_read_file(p, job, buf, direct=True) for p in paths]
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
        for p in paths:  # the filesystem refuses O_DIRECT (tmpfs, some FUSE): evict again, then read
            fd = os.open(p, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        return "fadvise-DONTNEED", [_read_file(p, job, buf, direct=False) for p in paths]


def _read_file(path: Path, job: CheckpointJob, buf: mmap.mmap, direct: bool) -> float:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECT", 0) if direct else 0)
    fd = os.open(path, flags)
    try:
        t0 = time.perf_counter()
        offset = 0
        while offset < job.file_bytes:
            n = os.preadv(fd, [buf], offset)
            if n <= 0:
                raise OSError(errno.EIO, f"{path}: short read at {offset} of {job.file_bytes} bytes")
            offset += n
        return time.perf_counter() - t0
    finally:
        os.close(fd)
