"""Write-side raw checks, beside the reads: fio sequential write and a checkpoint-shaped workload.

Offloaded training writes as much as it reads (ZeRO-Infinity swaps the optimizer states back to
the drive every step), and a training job saves checkpoints: N large files, each fsync'd, read
back cold on restart (MLPerf Storage's checkpointing workload). Metrics:

* `write_bw`      – fio sequential write, libaio, direct I/O, bs 1M, iodepth 16 (B/s, gated);
                    the checkpoint's write bandwidth (write + fsync of every file) in its own test
* `fsync_latency` – fsync of one checkpoint file after writing it (s, one sample per file)
* `readback_bw`   – the checkpoint read back with O_DIRECT (or after fadvise DONTNEED where the
                    filesystem refuses O_DIRECT), so it measures the drive, not the page cache

`bw` stays read bandwidth. Sizes come from the profile (`fio_file_bytes`, `ckpt_files` ×
`ckpt_file_bytes`), capped by half of the target's free space; a check that does not fit even
then skips with the figures. Everything is written inside the private workdir and removed after.
"""
from __future__ import annotations

from typing import Any

import pytest

from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.measure.checkpoint import CheckpointDoesNotFit, CheckpointJob, fit_to_space, run_checkpoint
from pytest_nvme_ai.measure.write_check import WriteDoesNotFit, run_seq_write, seq_write_job, write_size


def test_seq_write(fio: Any, offload_target: Any, nvme_ai: Any) -> None:
    try:
        size, capped = write_size(nvme_ai.profile.fio_file_bytes, offload_target.workdir)
    except WriteDoesNotFit as exc:
        pytest.skip(str(exc))
    if capped:
        nvme_ai.note(capped)
    result = run_seq_write(fio, size)

    assert len(result.repetitions) == nvme_ai.repeat
    for i, rep in enumerate(result.repetitions, 1):
        assert rep.error == 0, f"repetition {i}: fio reported error {rep.error}"
        assert rep.io_bytes >= (1 << 20) and rep.runtime_ms > 0 and rep.bw_bytes > 0, f"repetition {i} wrote nothing"
    nvme_ai.set_params(**seq_write_job(size).params())
    nvme_ai.set_extra("fio_version", result.fio_version)
    nvme_ai.set_extra("fio_runs", [r.summary() for r in result.repetitions])
    nvme_ai.record(Metric.of("write_bw", result.samples("bw_bytes")))
    for p in sorted(nvme_ai.artifact_dir.glob("seqwrite-*")):
        nvme_ai.add_artifact(f"fio {p.name}", p)
    assert "bw" not in nvme_ai.metrics()  # `bw` is read bandwidth; a write is write_bw
    assert not list(offload_target.workdir.glob("fio-write-*")), "the fio write file was not removed"


def test_checkpoint(offload_target: Any, nvme_ai: Any) -> None:
    profile = nvme_ai.profile
    try:
        job, capped = fit_to_space(CheckpointJob(profile.ckpt_files, profile.ckpt_file_bytes), offload_target.workdir)
    except CheckpointDoesNotFit as exc:
        pytest.skip(str(exc))
    if capped:
        nvme_ai.note(capped)
    nvme_ai.set_params(**job.params())
    where = offload_target.inside("checkpoint")
    results = [run_checkpoint(job, where, offload_target.workdir) for _ in range(nvme_ai.repeat)]

    assert not where.exists(), "checkpoint files were left behind"
    for r in results:
        assert len(r.files) == job.files
        assert all(f.write_s + f.fsync_s > 0 and f.read_s > 0 for f in r.files)
    nvme_ai.record(Metric.of("write_bw", [r.write_bw for r in results]))
    nvme_ai.record(Metric.of("readback_bw", [r.readback_bw for r in results]))
    nvme_ai.record(Metric.of("fsync_latency", [x for r in results for x in r.fsync_latencies]))
    nvme_ai.set_extra("readback_method", results[0].readback_method)
    nvme_ai.set_extra("checkpoint_bytes", job.total_bytes)
