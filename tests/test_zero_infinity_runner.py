"""The ZeRO-Infinity runner: a child that hangs, is killed or fails becomes a recorded outcome; a real
training run (opt-tiny shape, parameters and optimizer on the file-backed target) shows the loss
falling and bytes written every step; a child killed mid-run leaves no swap files and no process."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.core import procutil
from pytest_nvme_ai.core.targets import Target
from pytest_nvme_ai.measure.zero_infinity.runner import ZeroInfinityRunner, training_missing_reason
from pytest_nvme_ai.measure.zero_infinity.spec import TrainingSpec

from tests.test_zero_inference_runner import rec_of, recorder, set_options


@pytest.fixture
def runner(tmp_path: Path) -> ZeroInfinityRunner:
    if training_missing_reason():
        pytest.skip(training_missing_reason() or "")
    (tmp_path / "target").mkdir()
    (tmp_path / "artifacts").mkdir()
    target = Target(path=tmp_path / "target", label="t", run_id="test")
    rec = recorder(tmp_path / "artifacts", nodeid="tests/test_x.py::test_train[opt-tiny]")
    return ZeroInfinityRunner(target, rec)


def hooked(hook: str) -> TrainingSpec:
    # host-memory offload: the hook fires before any op or model is needed
    return TrainingSpec(model="opt-tiny", offload_param="cpu", offload_optimizer="cpu", test_hook=hook)


def test_hanging_child_times_out(runner: ZeroInfinityRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "unavailable", lambda spec: None)  # no op builds for a child that only sleeps
    set_options(runner, timeout=2)
    t0 = time.monotonic()
    result = runner.run(hooked("sleep:600"))
    assert time.monotonic() - t0 < 60
    assert result.outcome == "timeout" and "killed after 2 s" in (result.error or "")
    assert rec_of(runner).extra["run_outcome"] == "timeout"
    assert not rec_of(runner).recorded
    assert {"log", "spec", "ds_config"} <= set(rec_of(runner).artifacts)


@pytest.mark.parametrize("hook, outcome, words", [("sigkill", "oom", "SIGKILL"), ("memory_error", "oom", "MemoryError"),
                                                  ("crash", "error", "simulated crash")])
def test_failures_are_outcomes(runner: ZeroInfinityRunner, monkeypatch: pytest.MonkeyPatch, hook: str, outcome: str,
                               words: str) -> None:
    monkeypatch.setattr(runner, "unavailable", lambda spec: None)
    result = runner.run(hooked(hook))
    if hook == "sigkill":  # a kill -9, not the OOM killer's (oom only where the machine cannot tell, and says so)
        outcome = "oom" if "cannot tell" in (result.error or "") else "error"
    assert result.outcome == outcome and words in (result.error or "")
    assert not result.metrics


def _swap_dir(runner: ZeroInfinityRunner) -> Path:
    return runner.target.workdir / "zero_infinity"


def _swap_files_left(runner: ZeroInfinityRunner) -> list[Path]:
    return list(_swap_dir(runner).rglob("*")) if _swap_dir(runner).exists() else []


def _training_children() -> list[int]:
    """This process's descendants that run the training child."""
    out = []
    for pid, _ in procutil.descendants(os.getpid()):
        try:
            if b"zero_infinity" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
        except OSError:  # exited meanwhile
            pass
    return out


def test_real_run_trains_and_writes_every_step(runner: ZeroInfinityRunner) -> None:
    """opt-tiny shape, batch 2 × 64, parameters and optimizer states on the target, 1 warm-up + 3 steps."""
    result = runner.run(TrainingSpec(model="opt-tiny", steps=3, warmup=1))
    assert result.ok, f"{result.outcome}: {result.error}\n{result.log_tail}"
    losses = result.losses
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    assert all(s.write_bytes > 0 and s.read_bytes > 0 for s in result.steps)
    assert result.facts.get("basic_optimizer") == "DeepSpeedCPUAdam"
    assert any("optimizer" in f["path"] for f in result.swap_files)  # optimizer states were swapped to the target
    rec = rec_of(runner)
    assert rec.recorded["target_write_bytes"].value > 0
    assert rec.recorded["step_time"].n == 3 and rec.extra["loss_curve"] == losses
    assert not _swap_files_left(runner)


def test_killed_child_leaves_no_swap_files_and_no_process(runner: ZeroInfinityRunner) -> None:
    """Kill the child once its swap files exist: the outcome is recorded, the swap dir removed, nothing left running."""
    spec = TrainingSpec(model="opt-tiny", test_hook="hang_after_init")
    out: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: out.setdefault("result", runner.run(spec)), daemon=True)
    worker.start()
    deadline = time.monotonic() + 600
    victim = None
    while time.monotonic() < deadline and worker.is_alive():
        if _swap_dir(runner).exists() and any(_swap_dir(runner).rglob("*.swp")):
            victim = next(iter(_training_children()), None)
            if victim:
                break
        time.sleep(0.5)
    assert victim is not None, "the child never created its swap files"
    os.kill(victim, 9)
    worker.join(120)
    assert not worker.is_alive()
    result = out["result"]
    # someone else's kill -9: not the OOM killer's (oom only where the machine cannot tell, and says so)
    assert result.outcome == ("oom" if "cannot tell" in (result.error or "") else "error")
    assert "SIGKILL" in (result.error or "")
    assert not _swap_files_left(runner), "swap files left behind"
    assert not _training_children(), "a training process was left behind"
