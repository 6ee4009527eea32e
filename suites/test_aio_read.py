"""DeepSpeed aio reads (the `ds_io` path ZeRO-Inference uses), next to fio on the same file.

Each point reads the whole data file with DeepSpeed's AsyncIO op — O_DIRECT via
libaio into a page-locked buffer, `intra_op_parallelism` threads each reading
an equal slice with `queue_depth` blocks of `block_size` in flight — and, in
the same test, with fio shaped the same way (numjobs = parallelism, each job on
its own slice, iodepth = queue depth, bs = block size). Repetitions alternate
the order (aio, fio / fio, aio) so drift hits both alike; each pair gives one
sample of `aio_vs_fio`, the gated figure that says whether DeepSpeed's I/O path
keeps up with the drive. The grid depends on the profile:

* quick     – bs {1M, 16M} × qd {8, 32} × par {1, 2} on 256 MiB: CI, under a minute.
* standard  – bs {128K, 1M, 8M, 16M} × qd {8, 32, 128} × par {1, 8}, plus the seed
              study's point (2M, qd 8, 16 threads) and ZeRO-Inference's script
              default (16M, qd 64, 8 threads), on 2 GiB.
* full      – bs {128K, 1M, 2M, 8M, 16M} × qd {8, 32, 64, 128} × par {1, 2, 4, 8, 16}, on 4 GiB.
The file is read into one page-locked buffer, so it is capped at a quarter of
available memory.
"""
from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pytest

from pytest_nvme_ai.core.extras import AioSuiteExtra
from pytest_nvme_ai.core.profiles import Profile
from pytest_nvme_ai.measure.aio.runner import AioRunner, AioSettings, aio_missing_reason, file_bytes, twin_fio_job
from pytest_nvme_ai.measure.fio.runner import FioResult, fio_missing_reason, format_size, run_fio
from pytest_nvme_ai.run.session import profile_of

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class Point:
    block_size: int
    queue_depth: int
    parallelism: int

    @property
    def id(self) -> str:
        return f"bs{format_size(self.block_size)}-qd{self.queue_depth}-par{self.parallelism}"


def _product(bss: tuple[int, ...], qds: tuple[int, ...], pars: tuple[int, ...]) -> list[Point]:
    return [Point(b, q, p) for p, q, b in itertools.product(pars, qds, bss)]


SEED_POINT = Point(2 * MiB, 8, 16)          # the seed study's DeepSpeed aio setting
# DeepSpeedExamples run_model.py's aio block (16 MiB, qd 64, thread_count 8). Note: since DeepSpeed 0.16.4
# its `thread_count` key is ignored (parallelism 1); this point measures what the script *meant*.
ZI_SCRIPT_POINT = Point(16 * MiB, 64, 8)


def grid(profile: Profile) -> list[Point]:
    """The measured points for a profile, in a stable order (ids and baselines depend on it)."""
    points = _product(profile.aio_block_sizes, profile.aio_depths, profile.aio_parallelism)
    return points + ([SEED_POINT, ZI_SCRIPT_POINT] if profile.aio_reference_points else [])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"block_size", "queue_depth", "parallelism"} <= set(metafunc.fixturenames):
        points = grid(profile_of(metafunc.config))
        metafunc.parametrize("block_size,queue_depth,parallelism",
                             [(p.block_size, p.queue_depth, p.parallelism) for p in points],
                             ids=[p.id for p in points])


@pytest.fixture(scope="module", autouse=True)
def _aio_op_loaded(request: pytest.FixtureRequest) -> Iterator[None]:
    """Load (on first use: build) the op before the first test, saying so on the terminal: a silent
    multi-minute build looks like a hang. ds_aio then finds the answer cached."""
    from pytest_nvme_ai.measure.aio.runner import release_shared_worker
    from pytest_nvme_ai.fixtures import terminal_progress

    aio_missing_reason(progress=terminal_progress(request.config))
    yield
    release_shared_worker()  # give back its page-locked buffer before the ZeRO-Inference suite runs


def interleaved(repeat: int, first: Callable[[], Any], second: Callable[[], Any]) -> Iterator[tuple[Any, Any]]:
    """ABBA order: (first, second), (second, first), ... so a drifting drive favours neither side."""
    for i in range(repeat):
        if i % 2 == 0:
            a = first()
            b = second()
        else:
            b = second()
            a = first()
        yield a, b


def test_aio_read(ds_aio: AioRunner, offload_target: Any, nvme_ai: Any, block_size: int, queue_depth: int,
                  parallelism: int) -> None:
    size = file_bytes(nvme_ai.profile)
    file = ds_aio.data_file(size)
    assert offload_target.workdir.resolve() in file.resolve().parents  # reads only our own file
    nvme_ai.set_extra("file_bytes", size)

    fio_reason = fio_missing_reason()
    job = twin_fio_job(file, size, AioSettings(block_size, queue_depth, parallelism))
    runs = iter(range(1, 1 << 30))

    def aio_once() -> Any:
        return ds_aio.read(file, block_size, queue_depth, parallelism, repeat=1)

    def fio_once() -> FioResult | None:
        if fio_reason:
            return None
        return run_fio(job, offload_target.workdir, nvme_ai.artifact_dir, nvme_ai.timeout,
                       stem=f"aio-twin-{next(runs)}")

    pairs = list(interleaved(nvme_ai.repeat, aio_once, fio_once))

    for aio, _ in pairs:
        assert aio.nbytes == size and aio.verified, "aio read fewer bytes than the file, or wrong ones"
        assert all(s > 0 for s in aio.seconds) and aio.bw > 0
    assert nvme_ai.metrics()["bw"].n == nvme_ai.repeat
    assert nvme_ai.metrics()["read_latency"].n == nvme_ai.repeat

    if fio_reason:
        nvme_ai.note(f"aio_vs_fio not measured: {fio_reason}")
        return
    for _, fio in pairs:
        assert fio.error == 0 and fio.io_bytes == size, f"fio read {fio.io_bytes} of {size} bytes"
        assert fio.bw_bytes > 0
    fio_bw = [fio.bw_bytes for _, fio in pairs]
    ratios = [aio.bw / fio.bw_bytes for aio, fio in pairs]
    nvme_ai.record_samples("aio_vs_fio", ratios)
    nvme_ai.set_extra(AioSuiteExtra.FIO_BW, statistics.median(fio_bw))
    nvme_ai.set_extra(AioSuiteExtra.FIO_BW_SAMPLES, fio_bw)
    nvme_ai.add_artifact("fio twin job file", nvme_ai.artifact_dir / "aio-twin-1.fio")
    assert all(r > 0 for r in ratios)
