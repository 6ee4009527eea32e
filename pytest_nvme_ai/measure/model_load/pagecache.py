"""Evicting a file from the page cache, and proving it left.

A cold load is only cold if none of the file is in the page cache: `fsync` (dirty pages cannot be
dropped), `posix_fadvise(POSIX_FADV_DONTNEED)`, then `mincore(2)` over a read-only mapping of the file
counts the pages still resident. Mapping a file does not fault it in, so counting does not disturb
what it counts. A file whose pages stay (tmpfs is RAM; another process may hold them mapped) is
refused with `StillCached`: a "cold" figure read from memory would be a lie.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

WINDOW_BYTES = 1 << 30   # mincore in windows: a 132 GB file needs no 132 GB mapping or 32 MiB vector at once


class StillCached(RuntimeError):
    """Pages of a file stayed in the page cache after eviction; the message has the counts."""


@lru_cache(maxsize=1)
def _libc() -> Any:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    return libc


def resident_bytes(path: Path) -> int:
    """Bytes of `path` in the page cache now (whole pages; the last one counts whole)."""
    size = path.stat().st_size
    if size == 0:
        return 0
    libc, page = _libc(), mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        pages = 0
        for off in range(0, size, WINDOW_BYTES):
            pages += _resident_pages(libc, fd, off, min(WINDOW_BYTES, size - off), page)
    finally:
        os.close(fd)
    return pages * page


def _resident_pages(libc: Any, fd: int, offset: int, length: int, page: int) -> int:
    failed = ctypes.c_void_p(-1).value
    addr = libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, offset)
    if addr in (None, failed):
        err = ctypes.get_errno()
        raise OSError(err, f"mmap for mincore failed: {os.strerror(err)}")
    try:
        n = (length + page - 1) // page
        vec = (ctypes.c_ubyte * n)()
        if libc.mincore(ctypes.c_void_p(addr), length, vec) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mincore failed: {os.strerror(err)}")
        return _count_low_bits(bytes(vec))
    finally:
        libc.munmap(ctypes.c_void_p(addr), length)


def _count_low_bits(raw: bytes) -> int:
    # Only bit 0 of each byte means "resident" (the others are reserved): clear them before counting.
    import numpy as np

    return int((np.frombuffer(raw, dtype=np.uint8) & 1).sum())


def evict(path: Path) -> None:
    """Write back and drop `path`'s pages from the page cache (what `vmtouch -e` does)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)   # DONTNEED skips dirty pages: write them back first
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def evict_verified(paths: Iterable[Path], tries: int = 3) -> dict[str, int]:
    """Evict every file and check with mincore that none of it stays cached; returns each file's resident
    bytes *before* eviction. Raises StillCached (with the counts) when pages stay after `tries` evictions
    (a page being written back when DONTNEED ran can need a second pass)."""
    before: dict[str, int] = {}
    left: dict[str, int] = {}
    for p in paths:
        before[str(p)] = resident_bytes(p)
        for _ in range(tries):
            evict(p)
            left[str(p)] = resident_bytes(p)
            if not left[str(p)]:
                break
    stuck = {p: n for p, n in left.items() if n}
    if stuck:
        what = ", ".join(f"{p}: {n} B of {Path(p).stat().st_size} B" for p, n in stuck.items())
        raise StillCached(f"pages stay in the page cache after fsync + posix_fadvise(DONTNEED) ({what}); a load "
                          "now would read memory, not the drive. Is the target on tmpfs, or is the file mapped "
                          "by another process? Use a directory on the drive under test.")
    return before
