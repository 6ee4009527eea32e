"""Issue 22, sweep 3: a full target during ZeRO-Infinity training. DeepSpeed's swap writes fail silently
on a full disk and a later read aborts (SIGABRT, an assertion); the runner refuses a target too small
before it starts, and names a target that filled up during the run, with what the case needs.

The target is a tmpfs of 4 MiB (root with CAP_SYS_ADMIN; skipped with the reason otherwise)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from pytest_nvme_ai.core.targets import Target
from pytest_nvme_ai.measure.deepspeed.launch import ChildRun
from pytest_nvme_ai.measure.deepspeed.outcome import ChildExit
from pytest_nvme_ai.measure.zero_infinity.ds_config import model_info, swap_bytes_estimate
from pytest_nvme_ai.measure.zero_infinity.runner import SPACE_MARGIN, ZeroInfinityRunner, training_missing_reason
from pytest_nvme_ai.measure.zero_infinity.spec import TrainingSpec

sys.path.insert(0, str(Path(__file__).parent))
from test_zero_inference_runner import recorder  # noqa: E402

SPEC = TrainingSpec(model="opt-tiny", steps=1, warmup=1)     # parameters and optimizer on the target


@pytest.fixture
def small_target(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a 4 MiB tmpfs here (needs root with CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _runner(target: Path, tmp_path: Path) -> ZeroInfinityRunner:
    (tmp_path / "artifacts").mkdir(exist_ok=True)
    return ZeroInfinityRunner(Target(path=target, label="t", run_id="full"),
                              recorder(tmp_path / "artifacts", nodeid="tests/x.py::test_train[opt-tiny]", timeout=600))


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def test_a_target_too_small_is_refused_before_the_run_with_the_figures(small_target: Path, tmp_path: Path) -> None:
    swap = swap_bytes_estimate(model_info(SPEC), SPEC)
    why = _runner(small_target, tmp_path).space_shortfall(SPEC)
    assert why is not None and why.startswith(f"target {small_target} has ")
    assert f"needs about {_mib(swap + SPACE_MARGIN)}: {_mib(swap)} of swap files" in why, why
    assert f"a margin of {_mib(SPACE_MARGIN)}" in why and "use a larger target" in why


def test_enospc_in_the_log_is_named_target_full(small_target: Path, tmp_path: Path) -> None:
    runner = _runner(small_target, tmp_path)
    log = tmp_path / "child.log"
    log.write_text("Traceback ...\nOSError: [Errno 28] No space left on device: '/t/x.swp'\n")
    run: ChildRun = ChildRun(None, ChildExit(1, False, 3.0), log, "error", "the child exited with status 1")
    out = runner.explain_full_target(SPEC, run)
    assert out.outcome == "error" and (out.error or "").startswith(f"target full: {small_target} filled up"), out
    assert "No space left on device: '/t/x.swp'" in (out.error or "") and "of swap files" in (out.error or "")
    log.write_text("RuntimeError: something else\n")
    assert runner.explain_full_target(SPEC, run) is run                   # another failure is left as it was


def test_a_target_that_fills_up_during_training_is_named_with_the_need(small_target: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The real child on the 4 MiB target, the check skipped as if another writer filled the target after it."""
    if (why := training_missing_reason()) is not None:
        pytest.skip(why)
    runner = _runner(small_target, tmp_path)
    monkeypatch.setattr(runner, "space_shortfall", lambda spec: None)
    result = runner.run(SPEC)
    swap = swap_bytes_estimate(model_info(SPEC), SPEC)
    error = result.error or ""
    assert result.outcome == "error" and error.startswith(f"target full: {small_target} filled up during the run"), (
        error, result.log_tail)
    assert f"needs about {_mib(swap + SPACE_MARGIN)}" in error and "of 4.0 MiB" in error, error
    assert runner.recorder.extra["run_error"] == error  # type: ignore[attr-defined]
    assert not list(small_target.rglob("*.swp"))                          # its swap files removed
