"""DeepSpeed's JIT-built ops, built (or loaded from cache) once per process, visibly.

Three ops matter here: the AsyncIO op (`async_io`: the aio suite and NVMe offload
read through it), on the CPU accelerator the shared-memory comm op that
`deepspeed.init_distributed` compiles, and the CPU Adam op (`cpu_adam`) that every
offloaded ZeRO-Infinity optimizer step runs. The first build of each takes minutes on
2 cores; a silent pytest during that time looks like a hang, and a build inside
a measured run would eat its timeout. So:

* `missing_prerequisite()` says, without importing anything, what is missing to
  build the aio op and how to get it;
* `load_aio_op()` / `load_comm_op()` build or load an op *in this process* (the
  aio worker, and `python -m pytest_nvme_ai.measure.deepspeed.ops`, which scripts/setup.sh runs);
* `ensure_aio_op()` / `ensure_comm_op()` do the same in a child process, printing
  a heartbeat, for a parent that must not import DeepSpeed (pytest running
  ZeRO-Inference); `ensure_offload_ops()` checks both in one child (one import of
  DeepSpeed, not two: ~3 s on 2 cores). Builds are cached in ~/.cache/torch_extensions.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from pytest_nvme_ai.core import procutil

Progress = Callable[[str], None]
BUILD_TIMEOUT_S = 1800  # a cold JIT build takes ~4 min on 2 cores; a shared lock can make it wait longer
BUILD_MESSAGE = "building DeepSpeed AsyncIO op (first use, a few minutes)…"
LIBAIO_INCLUDE_DIRS = ("/usr/include", "/usr/local/include")
HEARTBEAT_S = 30.0
OPS = ("aio", "comm", "adam")
OP_MARK = "nvme-ai op "            # main() ends each op's output with OP_OK or "<OP_MARK><name>: failed"
OP_OK = OP_MARK + "{}: ok"

_LOADED: dict[str, Any] = {}               # this process's loaded ops, by name in OPS
_CHILD_STATUS: dict[str, str | None] = {}  # ensure_*(): name -> why the op is unusable, or None


def default_progress(message: str) -> None:
    # sys.__stderr__: pytest's capture replaces sys.stderr, and a multi-minute build must be visible.
    line = message if message.startswith("nvme-ai") else f"nvme-ai: {message}"
    print(line, file=sys.__stderr__, flush=True)


def missing_prerequisite() -> str | None:
    """None when the aio op can be built here; otherwise what is missing and how to get it."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("torch") is None:
        return "torch is not installed: pip install torch (the CPU wheel is enough)"
    if importlib.util.find_spec("deepspeed") is None:
        return "DeepSpeed is not installed: pip install 'pytest-nvme-ai[inference]' (or pip install deepspeed)"
    if not any(Path(d, "libaio.h").exists() for d in LIBAIO_INCLUDE_DIRS):
        return "libaio headers are missing (DeepSpeed's AsyncIO op links libaio): apt-get install libaio-dev"
    if shutil.which("ninja") is None and not Path(sys.executable).with_name("ninja").exists():
        return "ninja is missing (DeepSpeed JIT-builds its AsyncIO op with it): pip install ninja"
    return None


def aio_op_is_cached() -> bool:
    """Whether a build of the aio op is in torch's extension cache (loading it then takes seconds)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory  # private, but it is where load() looks

        return Path(_get_build_directory("async_io", verbose=False), "async_io.so").exists()
    except Exception:  # noqa: BLE001 - a private torch helper: if it changed, the op is just "not cached"
        return False


@lru_cache(maxsize=1)
def detect_accelerator() -> str:
    """'cuda' or 'cpu', as DeepSpeed will choose (DS_ACCELERATOR overrides, as in DeepSpeed)."""
    forced = os.environ.get("DS_ACCELERATOR")
    if forced:
        return forced
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ---- in this process ------------------------------------------------------------------------------

def load_aio_op(progress: Progress | None = None) -> Any:
    """The aio op module (built when no cached build exists); raises RuntimeError saying what to do."""
    return _load_once("aio", "AsyncIO op", _aio_loader, progress)


def load_comm_op(progress: Progress | None = None) -> Any:
    """The CPU shared-memory comm op, through the very call `deepspeed.init_distributed` makes (None where
    DeepSpeed has no such op for this accelerator); raises RuntimeError when the build fails."""
    return _load_once("comm", "CPU comm op", _comm_loader, progress)


def load_adam_op(progress: Progress | None = None) -> Any:
    """DeepSpeed's CPU Adam op (`cpu_adam`): every optimizer step of an offloaded ZeRO-Infinity run
    goes through it; raises RuntimeError when it cannot be built."""
    return _load_once("adam", "CPU Adam op", _adam_loader, progress)


def _adam_loader() -> Callable[[], Any]:
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise RuntimeError("DeepSpeed is not installed: pip install 'pytest-nvme-ai[inference]'")
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("CPUAdamBuilder")
    if builder is None or not builder.is_compatible(verbose=False):
        raise RuntimeError("DeepSpeed's CPU Adam op is not compatible with this machine (no C++ compiler?)")
    return lambda: builder.load(verbose=False)


def _aio_loader() -> Callable[[], Any]:
    reason = missing_prerequisite()
    if reason:
        raise RuntimeError(reason)
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("AsyncIOBuilder")
    if builder is None or not builder.is_compatible(verbose=False):
        raise RuntimeError("DeepSpeed's AsyncIO op is not compatible with this machine (libaio missing?): "
                           "apt-get install libaio-dev, then rerun")
    return lambda: builder.load(verbose=False)


def _comm_loader() -> Callable[[], Any]:
    from deepspeed.comm.torch import build_shm_op

    return build_shm_op


def _load_once(name: str, what: str, loader: Callable[[], Callable[[], Any]], progress: Progress | None) -> Any:
    """Check what the op needs (`loader` raises RuntimeError or ImportError), then load it, saying so."""
    if name in _LOADED:
        return _LOADED[name]
    say = progress or default_progress
    os.environ.setdefault("DS_BUILD_OPS", "0")
    load = loader()
    t0 = time.monotonic()
    say(f"nvme-ai: loading DeepSpeed {what} (the first time it is compiled: a few minutes on 2 cores)…")
    try:
        op = load()
    except Exception as exc:  # the C++ build's own error is long; keep its last line
        raise RuntimeError(f"DeepSpeed {what} failed to build: {str(exc).strip().splitlines()[-1:]}") from exc
    say(f"nvme-ai: DeepSpeed {what} ready ({time.monotonic() - t0:.0f} s)")
    _LOADED[name] = op
    return op


# ---- in a child, for a parent that must not import DeepSpeed ---------------------------------------

def ensure_aio_op(progress: Progress | None = None, timeout: float = BUILD_TIMEOUT_S) -> str | None:
    """Build or load the aio op once per process, in a child; None when usable, else why NVMe offload
    cannot run here. The child reuses ~/.cache/torch_extensions; this prints a heartbeat meanwhile."""
    if "aio" in _CHILD_STATUS:
        return _CHILD_STATUS["aio"]
    reason = missing_prerequisite()
    if reason:
        reason = f"NVMe offload needs DeepSpeed's async_io op: {reason}"
    else:
        rc, lines = _build_in_child("aio", "async_io op (first build: ~4 min on 2 cores)",
                                    progress or default_progress, timeout)
        if rc != 0:
            tail = " | ".join(ln.strip() for ln in lines[-3:] if ln.strip()) or f"exit status {rc}"
            reason = f"DeepSpeed async_io op cannot build or load (NVMe offload not possible here): {tail}"
    _CHILD_STATUS["aio"] = reason
    return reason


def ensure_comm_op(progress: Progress | None = None, timeout: float = BUILD_TIMEOUT_S) -> None:
    """Best effort, on the CPU accelerator only: build the comm op before the first CPU run, keeping
    that minute out of the run's timeout and off a silent terminal. A failure is left to the run to report."""
    if "comm" in _CHILD_STATUS or detect_accelerator() != "cpu":
        return
    _build_in_child("comm", "CPU comm op (first build: ~1 min)", progress or default_progress, timeout)
    _CHILD_STATUS["comm"] = None


def ensure_offload_ops(progress: Progress | None = None, timeout: float = BUILD_TIMEOUT_S) -> str | None:
    """`ensure_comm_op()` then `ensure_aio_op()`, in one child when both still need checking; returns
    the aio op's reason (None when NVMe offload can run). What ZeRO-Inference needs before its first run."""
    say = progress or default_progress
    both = ("comm" not in _CHILD_STATUS and "aio" not in _CHILD_STATUS and detect_accelerator() == "cpu"
            and missing_prerequisite() is None)
    if both:
        cost = "a cached build: seconds" if aio_op_is_cached() else "first build: ~5 min on 2 cores"
        rc, lines = _build_in_child(("comm", "aio"), f"CPU comm and async_io ops ({cost})", say, timeout)
        _CHILD_STATUS["comm"] = None  # best effort, as in ensure_comm_op: a failure is left to the run
        stripped = [ln.strip() for ln in lines]
        if OP_OK.format("aio") in stripped:
            _CHILD_STATUS["aio"] = None
        elif f"{OP_MARK}aio: failed" in stripped:  # the aio op's own failure: its reason, after the comm op's lines
            mine = lines[next((i + 1 for i, ln in enumerate(lines) if ln.startswith(OP_MARK + "comm")), 0):]
            mine = [ln for ln in mine if not ln.startswith(OP_MARK)]
            tail = " | ".join(ln.strip() for ln in mine[-3:] if ln.strip()) or f"exit status {rc}"
            _CHILD_STATUS["aio"] = f"DeepSpeed async_io op cannot build or load (NVMe offload not possible here): {tail}"
        # else the child died or timed out before the aio op said anything (the comm op's build, say):
        # ensure_aio_op below checks it in a child of its own, with its own time limit
    ensure_comm_op(say, timeout)
    return ensure_aio_op(say, timeout)


def ensure_adam_op(progress: Progress | None = None, timeout: float = BUILD_TIMEOUT_S) -> str | None:
    """Build or load the CPU Adam op once per process, in a child, before a training run's clock starts
    (DeepSpeed would otherwise compile it inside the first run: ~1 min). None when usable, else why not."""
    if "adam" in _CHILD_STATUS:
        return _CHILD_STATUS["adam"]
    rc, lines = _build_in_child("adam", "CPU Adam op (first build: ~1 min)", progress or default_progress, timeout)
    reason = None
    if rc != 0:
        tail = " | ".join(ln.strip() for ln in lines[-3:] if ln.strip()) or f"exit status {rc}"
        reason = f"DeepSpeed's CPU Adam op cannot build or load (ZeRO-Infinity training not possible here): {tail}"
    _CHILD_STATUS["adam"] = reason
    return reason


def _build_in_child(names: str | tuple[str, ...], what: str, say: Progress,
                    timeout: float) -> tuple[int | None, list[str]]:
    """`python -m pytest_nvme_ai.measure.deepspeed.ops NAME...` with a heartbeat; (exit status or None on
    timeout, output lines)."""
    short = what.split(" (")[0]
    t0 = time.monotonic()
    say(f"nvme-ai: preparing DeepSpeed {what}; cached in torch_extensions after")
    argv = [names] if isinstance(names, str) else list(names)
    proc = procutil.start([sys.executable, "-m", "pytest_nvme_ai.measure.deepspeed.ops", *argv], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    while True:
        try:
            proc.wait(HEARTBEAT_S)
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() - t0 > timeout:
                procutil.stop(proc, grace_s=10.0)
                return None, lines + [f"did not finish within {timeout:.0f} s"]
            say(f"nvme-ai: still building DeepSpeed {short} ({time.monotonic() - t0:.0f} s elapsed)")
        except BaseException:  # Ctrl-C: the build runs in its own session, so ^C never reached it
            procutil.stop(proc, grace_s=2.0)
            raise
    reader.join(5)
    say(f"nvme-ai: DeepSpeed {short} {'ready' if proc.returncode == 0 else 'not available'} "
        f"({time.monotonic() - t0:.0f} s)")
    return proc.returncode, lines


# ---- python -m pytest_nvme_ai.measure.deepspeed.ops [aio] [comm] [adam] ----------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """Build (or load) the named ops, by default every one this machine uses: scripts/setup.sh does
    this once, visibly. Exit status 1 when one cannot be built (the message says why)."""
    names = argv if argv is not None else sys.argv[1:]
    unknown = [n for n in names if n not in OPS]
    if unknown:
        print(f"usage: python -m pytest_nvme_ai.measure.deepspeed.ops [aio] [comm] [adam] (unknown: {' '.join(unknown)})", file=sys.stderr)
        return 2
    loaders = {"aio": load_aio_op, "comm": load_comm_op, "adam": load_adam_op}
    status = 0
    for name in names or _ops_used_here():
        try:
            loaders[name]()
            print(OP_OK.format(name), flush=True)
        except (RuntimeError, ImportError) as exc:
            print(f"nvme-ai: {exc}", file=sys.stderr, flush=True)
            print(f"{OP_MARK}{name}: failed", flush=True)
            status = 1
    return status


def _ops_used_here() -> tuple[str, ...]:
    """The comm op only where DeepSpeed runs on the CPU accelerator: only there does init_distributed build it."""
    try:
        cpu = detect_accelerator() == "cpu"
    except ImportError:  # no torch: load_aio_op says what to install
        cpu = False
    return OPS if cpu else ("aio", "adam")


if __name__ == "__main__":
    sys.exit(main())
