"""The write side of the raw checks: fio sequential write with direct I/O, sized to fit the target.

Offloaded training writes as much as it reads (optimizer states go back to the drive every step),
so the drive's write bandwidth is half of what bounds a training step. fio writes its own file in
the target's private workdir (the fio runner's write fence), which is removed right after, and the
result is recorded as `write_bw`, never as `bw` (that name stays read bandwidth).

Publishes ("fio_write_bw", target label) in the session cache, as the fio runner publishes read
bandwidth under ("fio_bw", label), for the training suite's I/O bound.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_nvme_ai.core.cache import CacheKey
from pytest_nvme_ai.measure.checkpoint import FREE_SHARE, SPACE_RESERVE
from pytest_nvme_ai.measure.fio.job import FioJob, FioResult, format_size

if TYPE_CHECKING:
    from pytest_nvme_ai.measure.fio.runner import FioRunner

MIN_WRITE_BYTES = 64 << 20
WRITE_BS = "1M"
WRITE_QD = 16


class WriteDoesNotFit(Exception):
    """Too little free space for a meaningful write; the message has the figures."""


# (target label) -> fio sequential write bandwidth this session, for the training suite's I/O bound
FIO_WRITE_BW = CacheKey[float]("fio_write_bw", "fio sequential write bw on the target this session")

def write_size(wanted: int, directory: Path) -> tuple[int, str | None]:
    """`wanted` bytes, or what half of the free space allows (whole MiB); a note when capped."""
    free = shutil.disk_usage(directory).free
    budget = int(max(free - SPACE_RESERVE, 0) * FREE_SHARE) // (1 << 20) * (1 << 20)
    if wanted <= budget:
        return wanted, None
    if budget < MIN_WRITE_BYTES:
        raise WriteDoesNotFit(f"{directory} has {free / 2**20:.0f} MiB free; the fio write check needs at least "
                              f"{MIN_WRITE_BYTES >> 20} MiB within half of it after a {SPACE_RESERVE >> 20} MiB reserve "
                              f"(the profile asks for {wanted / 2**20:.0f} MiB)")
    return budget, f"fio write capped by free space: {format_size(budget)} instead of {format_size(wanted)}"


def seq_write_job(size: int, name: str = "seqwrite") -> FioJob:
    return FioJob(name=name, rw="write", bs=WRITE_BS, iodepth=WRITE_QD, size=size, direct=True)


def run_seq_write(fio: "FioRunner", size: int, repeat: int | None = None, name: str = "seqwrite") -> FioResult:
    """fio sequential write of `size` bytes into its own file in the workdir, removed afterwards.
    Nothing is recorded here (the caller records `write_bw`); the bandwidth is published for the bounds."""
    path = fio.target.inside(f"fio-write-{format_size(size)}.bin")
    job = replace(seq_write_job(size, name), filename=str(path))
    try:
        result = fio.run(job, repeat=repeat, record=False)
    finally:
        path.unlink(missing_ok=True)
    fio.cache.put(FIO_WRITE_BW, result.bw_bytes, fio.target.label)
    return result
