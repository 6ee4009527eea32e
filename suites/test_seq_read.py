"""Sequential read with direct I/O: the raw bandwidth every offload figure is judged against.

ZeRO-Inference streams parameters from the SSD in large sequential reads, so
this suite measures exactly that shape with fio (libaio, O_DIRECT, no page
cache) across block sizes and queue depths, and records `bw`, `iops` and the
completion-latency tails per point. The grid depends on the profile:

* quick     – bs 128K/1M/2M/16M at iodepth 16, one job: CI on a laptop-class VM.
* standard  – adds iodepth 64 and 4 parallel jobs, plus the seed point.
* full      – adds iodepth 1 (latency-bound reads show what the queue buys).

The seed point (`bs2M-qd8-j16`): the seed study ran DeepSpeed aio with a 2 MB
block and 16 threads ("not the library default"), keeping the default queue
depth of 8. Each DeepSpeed aio thread submits its own share of a read with its
own queue, which is fio's `numjobs` (separate submitters, each on its own slice
of the file), not `iodepth` (one submitter with more requests in flight); so
the point is numjobs=16 at iodepth 8.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_nvme_ai.core.profiles import Profile
from pytest_nvme_ai.measure.fio.runner import FioJob
from pytest_nvme_ai.run.session import profile_of

BLOCK_SIZES = ("128K", "1M", "2M", "16M")


@dataclass(frozen=True)
class Point:
    bs: str
    iodepth: int
    numjobs: int

    @property
    def id(self) -> str:
        return f"bs{self.bs}-qd{self.iodepth}-j{self.numjobs}"


SEED_POINT = Point("2M", 8, 16)


def grid(profile: Profile) -> list[Point]:
    """The measured points for a profile, in a stable order (ids and baselines depend on it)."""
    points = [Point(bs, qd, nj) for nj in profile.fio_numjobs for qd in profile.fio_depths for bs in BLOCK_SIZES]
    return points + ([SEED_POINT] if profile.fio_seed_point else [])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"bs", "iodepth", "numjobs"} <= set(metafunc.fixturenames):
        points = grid(profile_of(metafunc.config))
        metafunc.parametrize("bs,iodepth,numjobs", [(p.bs, p.iodepth, p.numjobs) for p in points],
                             ids=[p.id for p in points])


def test_seq_read(fio, offload_target, nvme_ai, bs: str, iodepth: int, numjobs: int) -> None:
    job = fio.complete(FioJob(name="seqread", rw="read", bs=bs, iodepth=iodepth, numjobs=numjobs, direct=True))
    # The data file is the suite's own, inside the private workdir of the target under test.
    assert offload_target.workdir.resolve() in Path(job.filename).resolve().parents

    result = fio.run(job)

    assert len(result.repetitions) == nvme_ai.repeat
    for i, rep in enumerate(result.repetitions, 1):
        assert rep.error == 0, f"repetition {i}: fio reported error {rep.error}"
        # fio moved data, at least one full block per job, and timed it: the figures are measurements.
        assert rep.io_bytes >= job.bs_bytes * numjobs, f"repetition {i} read only {rep.io_bytes} bytes"
        assert rep.runtime_ms > 0 and rep.bw_bytes > 0
        assert rep.clat_p50 is not None and rep.clat_p50 <= rep.clat_p99 <= rep.clat_p999  # type: ignore[operator]
    assert set(nvme_ai.metrics()) >= {"bw", "iops", "clat_p50", "clat_p99", "clat_p999"}
    assert nvme_ai.metrics()["bw"].n == nvme_ai.repeat
