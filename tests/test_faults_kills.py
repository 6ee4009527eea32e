"""Issue 22, sweep 3: who killed a DeepSpeed child, and a timed-out case is never reused.

A SIGKILL reads the same in an exit status whether the kernel's OOM killer or `kill -9` sent it; the
runner asks the kernel (measure/deepspeed/outcome.py `sigkill_cause`). Here a real OOM kill (a memory
cgroup with a small limit, root only) and a real `kill -9` are told apart, and a persistent
ZeRO-Inference worker killed from outside mid-case is recorded as killed by a signal, not as `oom`.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from pytest_nvme_ai.measure.deepspeed.launch import classify
from pytest_nvme_ai.measure.deepspeed.outcome import KMSG, KillCause, oom_kills, sigkill_cause

HOG = "b = bytearray(512 << 20)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\nprint('survived')\n"


def _kmsg_reason() -> str | None:
    try:
        oom_kills()
    except OSError as exc:
        return f"the kernel log {KMSG} cannot be read here ({exc.strerror}): only the fallback applies"
    return None


@pytest.fixture
def small_memcg() -> Iterator[Path]:
    """A cgroup v1 memory cgroup of 48 MiB under ours (root), removed afterwards."""
    own = next((line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines()
                if line.split(":", 2)[1] == "memory"), None)
    base = Path("/sys/fs/cgroup/memory")
    if os.geteuid() != 0 or own is None or not (base / own.lstrip("/") / "memory.limit_in_bytes").exists():
        pytest.skip("needs root and a cgroup v1 memory hierarchy of ours, to make a real OOM kill")
    cg = base / own.lstrip("/") / f"nvme-ai-oomtest-{secrets.token_hex(4)}"
    try:
        cg.mkdir()
        (cg / "memory.limit_in_bytes").write_text(str(48 << 20))
    except OSError as exc:
        pytest.skip(f"cannot make a memory cgroup here: {exc}")
    try:
        yield cg
    finally:
        for _ in range(50):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def test_without_the_kernel_log_the_kernel_counter_decides_or_it_says_it_cannot_tell(tmp_path: Path) -> None:
    vmstat = tmp_path / "vmstat"
    vmstat.write_text("nr_free_pages 1\noom_kill 0\n")
    none_ever = sigkill_cause(3.0, 1234, kmsg=tmp_path / "no-kmsg", vmstat=vmstat)
    assert none_ever.oom is False and "oom_kill 0" in none_ever.why and "not by the OOM killer" in none_ever.why
    vmstat.write_text("oom_kill 2\n")
    unsure = sigkill_cause(3.0, 1234, kmsg=tmp_path / "no-kmsg", vmstat=vmstat)
    assert unsure.oom is None and "cannot tell" in unsure.why and "counts 2 OOM kill(s)" in unsure.why


def test_classify_calls_only_the_oom_killers_sigkill_oom() -> None:
    kill = -signal.SIGKILL
    assert classify(kill, False, None, "", KillCause(True, "killed by the kernel's OOM killer (…)"))[0] == "oom"
    other = classify(kill, False, None, "", KillCause(False, "killed by a signal (SIGKILL), not by the OOM killer"))
    assert other == ("error", "the child was killed by a signal (SIGKILL), not by the OOM killer")
    assert classify(kill, False, None, "", KillCause(None, "… cannot tell …"))[0] == "oom"  # as before, said so


# ---- the real worker, killed from outside mid-case ----------------------------------------------------
@pytest.fixture
def inference_runner(tmp_path: Path) -> object:
    from pytest_nvme_ai.core.targets import Target
    from pytest_nvme_ai.measure.zero_inference.runner import ZeroInferenceRunner, inference_missing_reason
    from test_zero_inference_runner import recorder

    if (why := inference_missing_reason()) is not None:
        pytest.skip(why)
    (tmp_path / "target").mkdir()
    (tmp_path / "artifacts").mkdir()
    return ZeroInferenceRunner(Target(path=tmp_path / "target", label="t", run_id="kill"),
                               recorder(tmp_path / "artifacts", timeout=300))


def _kill_the_worker_when_it_runs(stop: threading.Event, killed: list[int]) -> None:
    from pytest_nvme_ai.measure.zero_inference.pool import shared_pool

    while not stop.wait(0.2):
        for w in list(shared_pool().workers.values()):
            if w.alive and "test hook 'sleep:120'" in w.log_path.read_text(errors="replace"):
                os.kill(w.pid, signal.SIGKILL)   # someone else's kill -9, mid-case
                killed.append(w.pid)
                return


def test_a_worker_killed_by_sigkill_mid_case_is_not_called_oom(inference_runner: object) -> None:
    from pytest_nvme_ai.measure.zero_inference.pool import shared_pool
    from pytest_nvme_ai.measure.zero_inference.runner import ZeroInferenceRunner
    from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec

    assert isinstance(inference_runner, ZeroInferenceRunner)
    if (why := _kmsg_reason()) is not None:
        pytest.skip(why)
    stop, killed = threading.Event(), []
    watcher = threading.Thread(target=_kill_the_worker_when_it_runs, args=(stop, killed), daemon=True)
    watcher.start()
    try:
        spec = InferenceSpec(model="opt-tiny", offload="cpu", prompt_len=16, gen_len=4, loops=1, warmup=0,
                             test_hook="sleep:120")
        t0 = time.monotonic()
        result = inference_runner.run(spec)
    finally:
        stop.set()
        watcher.join(5)
        shared_pool().close_all()
    assert killed, "the worker never reached its case"
    assert time.monotonic() - t0 < 110           # ended by the kill, not by the hook's sleep
    assert result.outcome == "error" and result.returncode == -signal.SIGKILL, (result.outcome, result.error)
    assert "killed by a signal (SIGKILL), not by the OOM killer" in (result.error or ""), result.error
    assert inference_runner.recorder.extra["run_outcome"] == "error"  # type: ignore[attr-defined]


# ---- a stopped worker fails one case, not two -----------------------------------------------------------
def test_a_timed_out_reference_is_measured_afresh_by_the_next_case(inference_runner: object) -> None:
    """The roofline's resident-weights reference is run with reuse=True: a timed-out run of it (its worker
    stopped) must not stand in for the next case's reference."""
    from dataclasses import replace

    from pytest_nvme_ai.measure.zero_inference.pool import shared_pool
    from pytest_nvme_ai.measure.zero_inference.runner import ZeroInferenceRunner
    from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec

    runner = inference_runner
    assert isinstance(runner, ZeroInferenceRunner)
    # The hook sleeps before the engine is built: 4 s over a 2 s limit, well within the second one.
    spec = InferenceSpec(model="opt-tiny", offload="none", prompt_len=16, gen_len=4, loops=1, warmup=0,
                         test_hook="sleep:4")
    try:
        runner.options = replace(runner.options, timeout=2)
        stopped = runner.run(spec, prefix="compute_none", reuse=True, record=False)
        assert stopped.outcome == "timeout", (stopped.outcome, stopped.error)
        assert not shared_pool().workers                                   # the stopped worker is gone
        runner.options = replace(runner.options, timeout=300)
        again = runner.run(spec, prefix="compute_none", reuse=True, record=False)
    finally:
        shared_pool().close_all()
    assert again is not stopped and again.ok, (again.outcome, again.error, again.log_tail)
    assert again.loops and again.loops[0].new_tokens == 4                  # measured, here
    notes = getattr(runner.recorder, "notes", [])
    assert not any("reused this session's earlier run" in n for n in notes), notes
    # a run that measured is kept for the next case as before
    assert runner.run(spec, prefix="compute_none", reuse=True, record=False) is again


# ---- last in the file: its OOM kill stays in the kernel log, and the tests above match kills by time ----
def test_a_real_oom_kill_is_told_from_a_kill_minus_9(small_memcg: Path) -> None:
    if (why := _kmsg_reason()) is not None:
        pytest.skip(why)
    procs = str(small_memcg / "cgroup.procs")
    t0 = time.monotonic()
    hog = subprocess.run([sys.executable, "-c", HOG], capture_output=True, text=True, timeout=120,
                         preexec_fn=lambda: Path(procs).write_text(str(os.getpid())))
    assert hog.returncode == -signal.SIGKILL, hog
    oom = sigkill_cause(time.monotonic() - t0)
    assert oom.oom is True and "OOM killer" in oom.why and "Killed process" in oom.why, oom

    t0 = time.monotonic()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(0.5)
    os.kill(sleeper.pid, signal.SIGKILL)
    assert sleeper.wait(10) == -signal.SIGKILL
    other = sigkill_cause(time.monotonic() - t0, sleeper.pid)
    # The hog's OOM kill is still inside the window: matched by pid, it is not this child's.
    assert other.oom is False, other
    assert other.why.startswith("killed by a signal (SIGKILL), not by the OOM killer"), other.why
