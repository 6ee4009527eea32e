"""aio.py: settings, the data file, the worker protocol (crash, hang, progress) and real DeepSpeed reads."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.core.cache import SessionCache
from pytest_nvme_ai.measure.fio.runner import FIO_DATA
from pytest_nvme_ai.measure.aio import runner as aio
from pytest_nvme_ai.measure.aio import worker as aio_worker
from pytest_nvme_ai.measure.deepspeed import ops as ds_ops
from pytest_nvme_ai.measure.aio.runner import (AioError, AioRunner, AioSettings, AioWorker, check_read_size, ensure_data_file,
                                measure_read, write_data_file)
from pytest_nvme_ai.measure.deepspeed.version import thread_key
from pytest_nvme_ai.measure.fio.runner import DirectIOUnsupported
from pytest_nvme_ai.core.recorder import MemoryRecorder

MiB = 1 << 20


# ---- pure parts --------------------------------------------------------------------------------

def test_settings_block_uses_the_installed_key_names() -> None:
    s = AioSettings(8 * MiB, 32, 4)
    assert s.block() == {"block_size": 8 * MiB, "queue_depth": 32, thread_key(): 4, "single_submit": False,
                         "overlap_events": True}
    assert s.label == "bs8M-qd32-par4"


@pytest.mark.parametrize("nbytes,par", [(0, 1), (4096 * 3, 2), (MiB + 512, 1), (MiB, 3)])
def test_read_sizes_deepspeed_cannot_split_are_refused(nbytes: int, par: int) -> None:
    with pytest.raises(AioError, match="multiple of parallelism"):
        check_read_size(nbytes, par)


def test_read_size_that_splits_evenly_passes() -> None:
    check_read_size(16 * MiB, 16)


class FakeTarget:
    def __init__(self, root: Path) -> None:
        self.label = "t"
        self.workdir = root / ".nvme-ai-test"
        self.workdir.mkdir(exist_ok=True)

    def inside(self, *parts: str) -> Path:
        return self.workdir.joinpath(*parts)


def test_data_file_is_random_and_the_requested_size(tmp_path: Path) -> None:
    f = tmp_path / "d.bin"
    write_data_file(f, 3 * MiB + 4096, chunk=MiB)
    data = f.read_bytes()
    assert len(data) == 3 * MiB + 4096
    assert data[:4096] != data[MiB:MiB + 4096]  # no repeated chunk a deduplicating drive could skip
    assert data.count(0) < len(data) / 100      # not zeros a compressing drive could skip


def test_data_file_refuses_unaligned_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 4096"):
        write_data_file(tmp_path / "x", 5000)


def test_data_file_on_a_filesystem_without_o_direct(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Filesystems that refuse O_DIRECT answer EINVAL at open (older tmpfs) or at the first write (FUSE)."""
    import errno

    real_open = os.open

    def refusing_open(path: Any, flags: int, *a: Any) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *a)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(DirectIOUnsupported, match="O_DIRECT"):
        write_data_file(tmp_path / "x", MiB)
    assert not (tmp_path / "x").exists()


def test_data_file_is_shared_with_fio_through_the_session_cache(tmp_path: Path) -> None:
    t = FakeTarget(tmp_path)
    fio_file = t.inside("fio-data-1M.bin")
    fio_file.write_bytes(os.urandom(MiB))
    cache = SessionCache()
    cache.put(FIO_DATA, fio_file, "t", MiB)
    assert ensure_data_file(t, MiB, cache) == fio_file  # fio laid it out: reuse, write nothing
    ours = ensure_data_file(t, 2 * MiB, cache)           # a size fio did not lay out: ours, cached for fio
    assert ours.parent == t.workdir and ours.stat().st_size == 2 * MiB
    assert cache.get(FIO_DATA, "t", 2 * MiB) == ours
    assert ensure_data_file(t, 2 * MiB, cache) == ours


def test_missing_reasons_name_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "deepspeed" else real(n, *a))
    assert "pip install" in (ds_ops.missing_prerequisite() or "")
    monkeypatch.setattr(importlib.util, "find_spec", real)
    monkeypatch.setattr(ds_ops, "LIBAIO_INCLUDE_DIRS", (str(Path("/nonexistent")),))
    assert "apt-get install libaio-dev" in (ds_ops.missing_prerequisite() or "")


# ---- the worker protocol, with stand-in workers -------------------------------------------------

def fake_worker(script: str, log_dir: Path, **kw: Any) -> AioWorker:
    """A stand-in worker speaking the protocol; its log goes to the test's tmp dir."""
    code = "import json, sys, time, os\ndef emit(**m): print(json.dumps(m), flush=True)\n" + textwrap.dedent(script)
    return AioWorker(argv=[sys.executable, "-c", code], log_path=log_dir / "worker.log", **kw)


def test_build_progress_is_relayed(tmp_path: Path) -> None:
    seen: list[str] = []
    w = fake_worker(f"emit(event='progress', message={ds_ops.BUILD_MESSAGE!r})\nemit(event='ready')\n",
                    tmp_path, progress=seen.append)
    assert seen == [ds_ops.BUILD_MESSAGE]
    w.close()


def test_a_hung_worker_is_killed_at_the_timeout(tmp_path: Path) -> None:
    w = fake_worker("emit(event='ready')\nsys.stdin.readline()\ntime.sleep(600)\n", tmp_path)
    with pytest.raises(AioError, match="timed out"):
        w.read(Path("/x"), AioSettings(MiB, 8, 1), nbytes=MiB, timeout=1.0)
    assert not w.alive


def test_a_crashing_worker_becomes_an_error_with_its_log(tmp_path: Path) -> None:
    w = fake_worker("emit(event='ready')\nsys.stdin.readline()\nprint('boom in C++', file=sys.stderr, flush=True)\n"
                    "os.abort()\n", tmp_path)
    with pytest.raises(AioError, match=r"(?s)killed by signal 6.*boom in C\+\+"):
        w.read(Path("/x"), AioSettings(MiB, 8, 1), nbytes=MiB, timeout=30)


def test_a_recycling_worker_is_let_go_cleanly(tmp_path: Path) -> None:
    w = fake_worker("emit(event='ready')\nsys.stdin.readline()\n"
                    "emit(event='result', nbytes=1, seconds=[1.0], verified=True, recycle=True)\n", tmp_path)
    msg = w.read(Path("/x"), AioSettings(MiB, 8, 1), nbytes=MiB, timeout=30)
    assert msg["recycle"] and not w.alive and w.proc.returncode == 0
    assert not w.log_path.exists()  # a clean exit leaves no log behind


class _FakeOp:
    def __init__(self) -> None:
        self.made: list[tuple[Any, ...]] = []

    def aio_handle(self, *args: Any) -> object:
        self.made.append(args)
        return object()


def test_handles_are_reused_and_retired_ones_counted_towards_a_recycle() -> None:
    state = aio_worker._IoState(_FakeOp())
    req = {"block_size": MiB, "queue_depth": 32, "single_submit": False, "overlap_events": True, "parallelism": 8}
    h = state.handle_for(req)
    assert state.handle_for(dict(req)) is h and len(state.op.made) == 1  # same settings: same handle
    for par in (16, 1) * 20:
        state.handle_for({**req, "parallelism": par})
    assert state.retired_threads == 8 + 20 * 16 + 19 * 1  # the par-8 handle, then alternately 16 and 1
    assert len(state.op.made) == 41
    assert state.should_recycle  # > 256 idle aio threads: time for a fresh worker


def test_a_failed_start_says_why(tmp_path: Path) -> None:
    with pytest.raises(AioError, match="op failed to build"):
        fake_worker("emit(event='error', message='op failed to build')\n", tmp_path)


# ---- the real op -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def aio_ready() -> None:
    reason = aio.aio_missing_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    f = tmp_path / "data.bin"
    write_data_file(f, 8 * MiB)
    return f


@pytest.mark.usefixtures("aio_ready")
@pytest.mark.parametrize("par", [1, 4])
def test_real_read_reads_every_byte(data: Path, par: int) -> None:
    res = measure_read(data, AioSettings(MiB, 8, par), repeat=2)
    assert res.nbytes == data.stat().st_size and res.verified
    assert len(res.seconds) == 2 and all(s > 0 for s in res.seconds) and res.bw > 0


@pytest.mark.usefixtures("aio_ready")
def test_real_short_read(data: Path) -> None:
    res = measure_read(data, AioSettings(256 * 1024, 4, 2), nbytes=2 * MiB)
    assert res.nbytes == 2 * MiB and res.verified


@pytest.mark.usefixtures("aio_ready")
def test_real_errors_do_not_kill_the_worker(tmp_path: Path, data: Path) -> None:
    with pytest.raises(AioError, match="not a file"):
        measure_read(tmp_path / "missing", AioSettings(MiB, 8, 1))
    with pytest.raises(AioError, match="holds"):
        measure_read(data, AioSettings(MiB, 8, 1), nbytes=16 * MiB)
    assert measure_read(data, AioSettings(MiB, 8, 1)).verified


@pytest.mark.usefixtures("aio_ready")
def test_an_aborting_op_spares_the_caller_and_the_next_read(data: Path) -> None:
    """Reading past the end trips an assert in DeepSpeed's C++: the worker dies, we do not."""
    w = aio.shared_worker()
    with pytest.raises(AioError, match="signal|exited"):
        w.read(data, AioSettings(MiB, 8, 1), nbytes=16 * MiB, timeout=60)
    assert not w.alive
    assert "Assertion" in w.log_tail()  # the C++ assert message is what the error carries
    w.log_path.unlink(missing_ok=True)  # kept for a real crash; this one was on purpose
    assert measure_read(data, AioSettings(MiB, 8, 1)).verified  # a fresh worker took over


@pytest.mark.usefixtures("aio_ready")
def test_runner_records_bw_and_latency_per_repetition(tmp_path: Path) -> None:
    rec = MemoryRecorder(tmp_path, repeat=3, timeout=120)
    runner = AioRunner(FakeTarget(tmp_path), rec)  # type: ignore[arg-type]  # the target is a stand-in, the recorder is real
    f = runner.data_file(4 * MiB)
    res = runner.read(f, MiB, 16, 2)
    assert rec.recorded["bw"].n == 3 and rec.recorded["read_latency"].n == 3
    assert rec.recorded["bw"].unit == "B/s" and rec.recorded["read_latency"].unit == "s"
    assert rec.recorded["bw"].samples == res.bw_samples
    assert rec.extra["aio"][thread_key()] == 2


@pytest.mark.usefixtures("aio_ready")
def test_module_cli_reads_once_and_prints_json(data: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest_nvme_ai.measure.aio.runner", str(data), "--block-size", "1M",
                           "--queue-depth", "8", "--parallelism", "2", "--repeat", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["nbytes"] == 8 * MiB and out["aio"][thread_key()] == 2 and out["bw"][0] > 0


SUITE = Path(__file__).resolve().parents[1] / "suites" / "test_aio_read.py"


@pytest.fixture(scope="module")
def torch_extensions_dir(aio_ready: None) -> str:
    """Where the op is cached, resolved before pytester points HOME at a temp dir (torch would look for
    ~/.cache/torch_extensions there and rebuild the op from scratch: minutes)."""
    from torch.utils.cpp_extension import _get_build_directory

    return os.environ.get("TORCH_EXTENSIONS_DIR") or str(Path(_get_build_directory("async_io", False)).parent)


def test_suite_point_end_to_end(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                torch_extensions_dir: str) -> None:
    """One quick-profile point through the plugin: bw, read_latency and the gated aio_vs_fio land in results."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", torch_extensions_dir)
    pytester.makepyfile(test_aio_read=SUITE.read_text())
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "bs1M-qd8-par1", "--nvme-ai-repeat", "2",
                                      "--nvme-ai-report-dir", "reports")
    r.assert_outcomes(passed=1)
    results = json.loads(next((pytester.path / "reports").glob("*/results.json")).read_text())
    (test,) = results["tests"]
    assert {"bw", "read_latency"} <= set(test["metrics"])
    if "aio_vs_fio" in test["metrics"]:  # fio present
        assert len(test["metrics"]["aio_vs_fio"]["samples"]) == 2 and test["metrics"]["aio_vs_fio"]["gated"]
        assert test["extra"]["fio_bw"] > 0
    assert len(test["metrics"]["bw"]["samples"]) == 2


@pytest.mark.parametrize("rc, lines, expect", [
    (0, ["nvme-ai op comm: ok", "nvme-ai op aio: ok"], None),
    (1, ["nvme-ai op comm: ok", "nvme-ai: DeepSpeed AsyncIO op failed to build: ['no libaio.so']",
         "nvme-ai op aio: failed"], "no libaio.so"),
    (None, ["nvme-ai op comm: ok", "did not finish within 1800 s"], "own child"),   # timed out before aio spoke
    (-9, [], "own child"),                                                          # the child died first
])
def test_one_child_checks_both_ops(monkeypatch: pytest.MonkeyPatch, rc: Any, lines: list[str],
                                   expect: str | None) -> None:
    """ensure_offload_ops reads the aio op's own status line; without one, the aio op gets its own child."""
    calls: list[Any] = []

    def fake_child(names: Any, what: str, say: Any, timeout: float) -> tuple[Any, list[str]]:
        calls.append(names)
        return (rc, lines) if names == ("comm", "aio") else (0, ["nvme-ai op aio: ok"])

    monkeypatch.setattr(ds_ops, "_CHILD_STATUS", {})
    monkeypatch.setattr(ds_ops, "_build_in_child", fake_child)
    monkeypatch.setattr(ds_ops, "detect_accelerator", lambda: "cpu")
    monkeypatch.setattr(ds_ops, "missing_prerequisite", lambda: None)
    reason = ds_ops.ensure_offload_ops(progress=lambda _: None)
    if expect == "own child":
        assert calls == [("comm", "aio"), "aio"] and reason is None  # checked again, alone, and it loads
    elif expect is None:
        assert calls == [("comm", "aio")] and reason is None
    else:
        assert calls == [("comm", "aio")] and reason is not None and expect in reason
