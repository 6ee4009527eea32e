"""The ZeRO-Inference runner's parent side: a child that hangs, is killed or fails becomes a recorded
outcome and pytest carries on. The child's test hooks fire before any heavy import, so these are fast."""
from __future__ import annotations

import sys
from dataclasses import replace
import time
import types
from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.core.recorder import MemoryRecorder
from pytest_nvme_ai.core.targets import Target
from pytest_nvme_ai.measure.zero_inference.runner import ZeroInferenceRunner, inference_missing_reason
from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec, SpecError


NODEID = "tests/test_x.py::test_case[opt-tiny-bs1]"


def recorder(artifact_dir: Path, **kw: Any) -> MemoryRecorder:
    """The in-memory Recorder (core.recorder) the runner tests record into."""
    return MemoryRecorder(artifact_dir, nodeid=kw.pop("nodeid", NODEID), **kw)


def rec_of(runner: Any) -> MemoryRecorder:
    assert isinstance(runner.recorder, MemoryRecorder)
    return runner.recorder


def set_options(runner: Any, **changes: Any) -> None:
    """What a setting (--nvme-ai-aio, --nvme-ai-engine-reuse, a marker's timeout) gives the runner."""
    runner.options = replace(runner.options, **changes)


@pytest.fixture
def runner(tmp_path: Path) -> ZeroInferenceRunner:
    if inference_missing_reason():
        pytest.skip(inference_missing_reason() or "")
    (tmp_path / "target").mkdir()
    (tmp_path / "artifacts").mkdir()
    target = Target(path=tmp_path / "target", label="t", run_id="test")
    return ZeroInferenceRunner(target, recorder(tmp_path / "artifacts"))


@pytest.fixture(params=[True, False], ids=["worker", "one-shot"])
def either_runner(request: pytest.FixtureRequest, runner: ZeroInferenceRunner) -> ZeroInferenceRunner:
    """The runner on both paths: the persistent worker (default) and the one-shot child (--nvme-ai-engine-reuse 0)."""
    set_options(runner, engine_reuse=request.param)
    return runner


def hooked(hook: str) -> InferenceSpec:
    # offload "cpu": no aio op needed; the hook fires before the model exists anyway
    return InferenceSpec(model="opt-tiny", offload="cpu", prompt_len=16, gen_len=4, loops=1, warmup=0, test_hook=hook)


def test_hanging_child_times_out_and_is_killed(either_runner: ZeroInferenceRunner) -> None:
    set_options(either_runner, timeout=2)
    t0 = time.monotonic()
    result = either_runner.run(hooked("sleep:600"))
    assert time.monotonic() - t0 < 60  # killed, not waited for
    assert result.outcome == "timeout" and "killed after 2 s" in (result.error or "")
    rec = rec_of(either_runner)
    assert rec.extra["run_outcome"] == "timeout"
    assert "test hook 'sleep:600'" in rec.extra["log_tail"]
    assert not rec.recorded  # no metrics from a run that did not finish
    assert {"log", "spec", "ds_config"} <= set(rec.artifacts)


def test_sigkilled_child_is_killed_by_a_signal_not_oom(either_runner: ZeroInferenceRunner) -> None:
    result = either_runner.run(hooked("sigkill"))  # the child's own kill -9: no OOM kill in the kernel log
    # oom only where the machine cannot tell who sent it (no kernel log, OOM kills counted), and says so
    assert result.outcome == ("oom" if "cannot tell" in (result.error or "") else "error")
    assert "SIGKILL" in (result.error or "")
    assert result.returncode == -9


def test_memory_error_is_oom_with_log_tail(either_runner: ZeroInferenceRunner) -> None:
    result = either_runner.run(hooked("memory_error"))
    assert result.outcome == "oom" and "MemoryError" in (result.error or "")
    assert "MemoryError" in result.log_tail


def test_crash_is_error_with_traceback(either_runner: ZeroInferenceRunner) -> None:
    result = either_runner.run(hooked("crash"))
    assert result.outcome == "error" and "simulated crash" in (result.error or "")
    assert "Traceback" in result.log_tail
    assert rec_of(either_runner).extra["run_outcome"] == "error"


def test_not_applicable_spec_skips_with_reason(runner: ZeroInferenceRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    from pytest_nvme_ai.measure.zero_inference import runner as runner_mod

    runner_mod.detect_accelerator.cache_clear()
    try:
        with pytest.raises(pytest.skip.Exception, match="KV-cache offload needs CUDA"):
            runner.run(InferenceSpec(model="opt-tiny", offload="cpu", prompt_len=16, gen_len=4, kv_offload=True))
    finally:
        runner_mod.detect_accelerator.cache_clear()
    assert rec_of(runner).extra["run_outcome"] == "not_applicable"


# ---- --nvme-ai-aio -------------------------------------------------------------------------------

def nvme_spec() -> InferenceSpec:
    return InferenceSpec(model="opt-tiny", offload="nvme")


def test_aio_default_leaves_spec_alone(runner: ZeroInferenceRunner) -> None:
    assert runner.with_aio(nvme_spec()).aio is None


def test_aio_json_is_validated_and_rewritten(runner: ZeroInferenceRunner) -> None:
    set_options(runner, aio='{"block_size": 2097152, "thread_count": 16}')
    aio = runner.with_aio(nvme_spec()).aio
    assert aio is not None and aio["block_size"] == 2 << 20
    assert aio.get("intra_op_parallelism", aio.get("thread_count")) == 16


def test_aio_json_bad_key_fails_naming_it(runner: ZeroInferenceRunner) -> None:
    set_options(runner, aio='{"blocksize": 2097152}')
    with pytest.raises(SpecError, match=r"--nvme-ai-aio: unknown aio key\(s\) 'blocksize'; accepted: block_size"):
        runner.with_aio(nvme_spec())


def test_aio_ignored_for_cpu_offload(runner: ZeroInferenceRunner) -> None:
    set_options(runner, aio='{"blocksize": 1}')
    assert runner.with_aio(InferenceSpec(offload="cpu")).aio is None


def test_aio_auto_without_tuner_falls_back_with_a_note(runner: ZeroInferenceRunner,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pytest_nvme_ai.measure.aio.tune", None)  # import fails: no tuner installed
    set_options(runner, aio="auto")
    assert runner.with_aio(nvme_spec()).aio is None
    assert any("no tuner" in n for n in rec_of(runner).notes)


def test_aio_auto_uses_the_tuner(runner: ZeroInferenceRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def tuned_aio_block(target: Any, recorder: Any, max_block_size: int | None = None) -> dict[str, Any]:
        calls.append((target, max_block_size))  # the tuner caches per target itself, records extras in each test
        return {"block_size": 1 << 20, "queue_depth": 32, "thread_count": 8}

    monkeypatch.setitem(sys.modules, "pytest_nvme_ai.measure.aio.tune",
                        types.SimpleNamespace(tuned_aio_block=tuned_aio_block, BLOCK_SIZES=(1 << 20, 2 << 20, 16 << 20)))
    set_options(runner, aio="auto")
    first, second = runner.with_aio(nvme_spec()), runner.with_aio(nvme_spec().with_(batch_size=2))
    assert first.aio == second.aio and first.aio is not None and first.aio["queue_depth"] == 32
    assert first.aio.get("intra_op_parallelism", first.aio.get("thread_count")) == 8
    # opt-tiny at 16 bits swaps only its 25.7 MB embeddings... and a 1 MiB table: no block above 1 MiB
    # offloads the same tensors, so the tuner searches block sizes up to 1 MiB (equal offloaded bytes)
    assert calls == [(runner.target, 1 << 20), (runner.target, 1 << 20)]


def test_equal_offload_block_bound_follows_the_smallest_swapped_matrix() -> None:
    from pytest_nvme_ai.measure.aio.tune import BLOCK_SIZES
    from pytest_nvme_ai.measure.deepspeed.models import equal_offload_max_block, resolve_model

    mib = 1 << 20
    # opt-125m: 768 x 768 bf16 = 1.18 MB, the smallest swapped matrix: a 2 MiB block would keep it resident
    assert equal_offload_max_block(resolve_model("opt-125m"), 2, BLOCK_SIZES) == mib
    # opt-1.3b: 2048 x 2048 bf16 = 8.4 MB (the REFERENCE table: resident at a 16 MiB block)
    assert equal_offload_max_block(resolve_model("opt-1.3b"), 2, BLOCK_SIZES) == 8 * mib
    # opt-13b: every matrix is >= 52 MB: any block of the grid keeps the same set
    assert equal_offload_max_block(resolve_model("opt-13b"), 2, BLOCK_SIZES) == 16 * mib


def test_full_target_skips_before_running(runner: ZeroInferenceRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 << 30, 10 << 30, 1 << 20))
    reason = runner.space_shortfall(InferenceSpec(model="opt-1.3b", offload="nvme"))
    assert reason is not None and "GiB free" in reason and "opt-1.3b" in reason and "free space" in reason


def test_enough_space_is_no_reason(runner: ZeroInferenceRunner) -> None:
    assert runner.space_shortfall(InferenceSpec(model="opt-tiny", offload="nvme")) is None


def test_partly_written_swap_file_fails_the_run() -> None:
    from pytest_nvme_ai.measure.zero_inference.remote import check_swap_files_complete

    check_swap_files_complete([{"path": "a.swp", "bytes": 4096, "allocated": 4096}])
    with pytest.raises(RuntimeError, match=r"only partly written \(0 of 4096 bytes.*target is full"):
        check_swap_files_complete([{"path": "a.swp", "bytes": 4096, "allocated": 4096},
                                   {"path": "b.swp", "bytes": 4096, "allocated": 0}])
