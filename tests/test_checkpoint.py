"""The checkpoint-shaped write (real files in a temp dir) and the free-space caps of the write checks."""
from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import pytest

from pytest_nvme_ai.measure import checkpoint, write_check
from pytest_nvme_ai.measure.checkpoint import (CheckpointDoesNotFit, CheckpointJob, fit_to_space, run_checkpoint)

Usage = namedtuple("Usage", "total used free")


def test_checkpoint_writes_fsyncs_reads_back_and_removes(tmp_path: Path) -> None:
    job = CheckpointJob(files=3, file_bytes=4 << 20)
    where = tmp_path / "fence" / "ckpt"
    result = run_checkpoint(job, where, tmp_path / "fence")
    assert len(result.files) == 3 and all(f.fsync_s >= 0 and f.read_s > 0 for f in result.files)
    assert result.write_bw > 0 and result.readback_bw > 0 and len(result.fsync_latencies) == 3
    assert result.readback_method in ("O_DIRECT", "fadvise-DONTNEED")
    assert not where.exists()  # removed afterwards


def test_checkpoint_refuses_to_write_outside_the_fence(tmp_path: Path) -> None:
    (tmp_path / "fence").mkdir()
    with pytest.raises(PermissionError, match="outside the target directory"):
        run_checkpoint(CheckpointJob(1, 1 << 20), tmp_path / "elsewhere", tmp_path / "fence")
    assert not (tmp_path / "elsewhere").exists()


def test_files_removed_after_a_failed_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(paths: list[Path], job: CheckpointJob) -> None:
        assert all(p.stat().st_size == job.file_bytes for p in paths)
        raise OSError(5, "simulated read error")

    monkeypatch.setattr(checkpoint, "read_back", broken)
    with pytest.raises(OSError, match="simulated"):
        run_checkpoint(CheckpointJob(2, 1 << 20), tmp_path / "c", tmp_path)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("bad, message", [({"files": 0}, "files=0"), ({"file_bytes": 1000}, "whole number of blocks"),
                                          ({"block_bytes": 1000}, "multiple of 4096")])
def test_bad_job_is_refused(bad: dict, message: str) -> None:
    kw = {"files": 2, "file_bytes": 1 << 20, **bad}
    with pytest.raises(ValueError, match=message):
        CheckpointJob(**kw)


def test_sizes_are_capped_by_free_space_or_skip_with_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = CheckpointJob(4, 64 << 20)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: Usage(0, 0, 10 << 30))
    assert fit_to_space(job, tmp_path) == (job, None)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: Usage(0, 0, 512 << 20))
    shrunk, note = fit_to_space(job, tmp_path)
    assert shrunk.files == 4 and shrunk.total_bytes <= (512 - 256) << 19 and "capped by free space" in (note or "")
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: Usage(0, 0, 260 << 20))
    with pytest.raises(CheckpointDoesNotFit, match=r"has 260 MiB free; a checkpoint of 4 files needs at least 4 MiB"):
        fit_to_space(job, tmp_path)
    monkeypatch.setattr(write_check.shutil, "disk_usage", lambda p: Usage(0, 0, 300 << 20))
    with pytest.raises(write_check.WriteDoesNotFit, match="has 300 MiB free"):
        write_check.write_size(256 << 20, tmp_path)
