"""DeepSpeed's aio read path (the `ds_io` equivalent), measured in a child process.

DeepSpeed's AsyncIO op is C++ full of `assert`s; a bad read can abort the whole
process. So the op is only ever loaded in a *worker* child (`python -m
pytest_nvme_ai.aio --worker`) that speaks JSON lines over its stdin/stdout and
stays alive between reads: loading torch + DeepSpeed costs seconds, and the
tuner makes dozens of reads. A crash or a hang becomes an `AioError` carrying
the worker's log tail; pytest lives on and the next read starts a new worker.

What one read measures, like `ds_io`: `handle.sync_pread(locked_buffer, file)`
of the whole file (O_DIRECT via libaio, so the page cache is bypassed) into a
page-locked host buffer; bw = file bytes / wall time of that one call.

Both halves of the worker protocol (parent: `AioWorker`; child: `_worker_main`)
live in this one module on purpose, so they cannot drift apart; that is why it
runs past the usual ~400 lines.
"""
from __future__ import annotations

import atexit
import errno
import json
import mmap
import os
import selectors
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

from .dsversion import aio_block
from .fio import DirectIOUnsupported, FioJob, check_direct_io, format_size, parse_size

if TYPE_CHECKING:
    from .records import Recorder
    from .targets import Target

Progress = Callable[[str], None]
BUILD_TIMEOUT_S = 1800  # a cold JIT build takes ~4 min on 2 cores; a shared lock can make it wait longer
BUILD_MESSAGE = "building DeepSpeed AsyncIO op (first use, a few minutes)…"
LIBAIO_INCLUDE_DIRS = ("/usr/include", "/usr/local/include")
ALIGN = 4096  # O_DIRECT: every thread's slice must start on a logical block (4 KiB on NVMe)


class AioError(RuntimeError):
    """A read could not be measured; the message says why and ends with the worker's log tail."""


class NoSpace(AioError):
    """The target has no room for the data file."""


@dataclass(frozen=True)
class AioSettings:
    block_size: int
    queue_depth: int
    parallelism: int
    single_submit: bool = False
    overlap_events: bool = True

    def block(self) -> dict[str, Any]:
        """The DeepSpeed `aio` config block in the installed version's key names."""
        return aio_block(block_size=self.block_size, queue_depth=self.queue_depth, parallelism=self.parallelism,
                         single_submit=self.single_submit, overlap_events=self.overlap_events)

    @property
    def label(self) -> str:
        return f"bs{format_size(self.block_size)}-qd{self.queue_depth}-par{self.parallelism}"


@dataclass(frozen=True)
class AioResult:
    file: Path
    nbytes: int                  # bytes read (and verified) per repetition
    settings: AioSettings
    seconds: tuple[float, ...]   # wall time of each full read
    verified: bool               # sampled blocks of the buffer matched the file after every read

    @property
    def bw_samples(self) -> tuple[float, ...]:
        return tuple(self.nbytes / s for s in self.seconds)

    @property
    def bw(self) -> float:
        return float(statistics.median(self.bw_samples))


# The file is read into one page-locked buffer, so it cannot be fio's (16/64 GiB on standard/full):
# big enough that one read lasts well beyond per-call overheads on a fast drive, capped by memory.
FILE_BYTES = {"quick": 256 << 20, "standard": 2 << 30, "full": 4 << 30}


def mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            return next(int(line.split()[1]) << 10 for line in fh if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def file_bytes(profile_name: str) -> int:
    """The profile's aio file size, halved until it fits in a quarter of available memory (min 256 MiB)."""
    size, avail = FILE_BYTES[profile_name], mem_available()
    while avail is not None and size > 256 << 20 and size > avail // 4:
        size //= 2
    return size


def twin_fio_job(file: Path, size: int, settings: AioSettings) -> FioJob:
    """fio shaped like one aio read of `file`: a job per DeepSpeed thread (numjobs = parallelism, not
    iodepth: each thread submits its own queue), each reading its own slice once, bs and iodepth as set."""
    per_job = size // settings.parallelism
    return FioJob(name="aio-twin", rw="read", bs=settings.block_size, iodepth=settings.queue_depth,
                  numjobs=settings.parallelism, size=per_job,
                  offset_increment=per_job if settings.parallelism > 1 else None, filename=str(file),
                  ioengine="libaio", direct=True)


def check_read_size(nbytes: int, parallelism: int) -> None:
    """DeepSpeed splits a read into `parallelism` equal slices, each read with O_DIRECT."""
    if nbytes <= 0 or nbytes % (parallelism * ALIGN):
        raise AioError(f"read size {nbytes} B must be a positive multiple of parallelism × 4 KiB "
                       f"({parallelism} × {ALIGN}): DeepSpeed gives each of its {parallelism} threads an equal, "
                       "O_DIRECT-aligned slice")


# ---- the worker, parent side -------------------------------------------------------------------

def default_progress(message: str) -> None:
    print(f"nvme-ai: {message}", file=sys.__stderr__, flush=True)


class AioWorker:
    """One persistent child holding the loaded op; every call has a timeout."""

    def __init__(self, log_path: Path | None = None, progress: Progress | None = None,
                 argv: list[str] | None = None, start_timeout: float = BUILD_TIMEOUT_S) -> None:
        import tempfile

        self.progress = progress or default_progress
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="nvme-ai-aio-worker-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")
        self.proc = subprocess.Popen(
            argv or [sys.executable, "-m", "pytest_nvme_ai.aio", "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, start_new_session=True,
        )
        self._buf = b""
        try:
            self.ready = self._expect("ready", start_timeout)
        except AioError:
            self.kill()
            raise

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def read(self, file: Path, settings: AioSettings, *, nbytes: int | None = None, repeat: int = 1,
             timeout: float = 600.0) -> dict[str, Any]:
        """Read `nbytes` (default: the whole file) `repeat` times; returns the worker's result event."""
        req = {"op": "read", "file": str(file), "nbytes": nbytes, "repeat": repeat, **asdict(settings)}
        self._send(req)
        msg = self._expect("result", timeout)
        if msg.get("recycle"):  # the worker exits now; shared_worker() starts a fresh one when next needed
            self.close()
        return msg

    def close(self) -> None:
        if self.alive:
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self._log.close()
        if self.proc.returncode == 0:  # a clean exit leaves nothing worth reading
            self.log_path.unlink(missing_ok=True)

    def kill(self) -> None:
        if self.alive:
            try:
                os.killpg(self.proc.pid, 9)  # the worker leads its own session: its aio threads die with it
            except ProcessLookupError:
                pass
            self.proc.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def _send(self, req: dict[str, Any]) -> None:
        try:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            raise self._died("before the request") from None

    def _expect(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = self._next_message(deadline)
            if msg.get("event") == "progress":
                self.progress(str(msg.get("message")))
            elif msg.get("event") == "error":
                raise AioError(f"{msg.get('message')}\n--- aio worker log ({self.log_path}) ---\n{self.log_tail()}")
            elif msg.get("event") == event:
                return msg

    def _next_message(self, deadline: float) -> dict[str, Any]:
        out = self.proc.stdout
        assert out is not None
        with selectors.DefaultSelector() as sel:
            sel.register(out, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    raise AioError(f"aio worker timed out (killed)\n--- aio worker log ---\n{self.log_tail()}")
                if not sel.select(timeout=min(left, 5.0)):
                    continue
                chunk = os.read(out.fileno(), 65536)
                if not chunk:
                    raise self._died("mid-request")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def _died(self, when: str) -> AioError:
        code = self.proc.wait()
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return AioError(f"aio worker {how} {when}\n--- aio worker log ({self.log_path}) ---\n{self.log_tail()}")


_SHARED: dict[str, Any] = {}


def shared_worker(progress: Progress | None = None) -> AioWorker:
    """The process-wide worker, restarted after a crash (the op build is cached, so a restart takes seconds)."""
    w: AioWorker | None = _SHARED.get("worker")
    if w is None or not w.alive:
        w = AioWorker(progress=progress)
        _SHARED["worker"] = w
    elif progress is not None:
        w.progress = progress
    return w


@atexit.register
def _close_shared() -> None:
    w = _SHARED.pop("worker", None)
    if w is not None:
        w.close()


def aio_missing_reason(progress: Progress | None = None) -> str | None:
    """None when DeepSpeed's aio op loads here; otherwise what is missing and how to get it.

    The first call starts the worker, which builds the op on first use (printing
    a progress line); later calls reuse the answer.
    """
    if "reason" in _SHARED:
        return _SHARED["reason"]
    reason = _static_missing_reason()
    if reason is None:
        try:
            shared_worker(progress)
        except AioError as exc:
            reason = f"DeepSpeed AsyncIO op cannot build or load: {exc}"
    _SHARED["reason"] = reason
    return reason


def _static_missing_reason() -> str | None:
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


# ---- the data file ------------------------------------------------------------------------------

def fio_data_key(target: "Target", size: int) -> tuple[str, str, int]:
    """The session-cache key fio.FioRunner.data_file uses: a file of the same size is laid out once
    per session and shared by the fio and aio suites, so both read the very same blocks."""
    return ("fio_data", target.label, size)


def ensure_data_file(target: "Target", size: int, cache: dict[Any, Any]) -> Path:
    """The session's data file of `size` bytes on the target: fio's when it laid one out, else ours."""
    key = fio_data_key(target, size)
    cached = cache.get(key)
    if cached is not None and Path(cached).exists() and Path(cached).stat().st_size >= size:
        return Path(cached)
    path = target.inside(f"aio-data-{format_size(size)}.bin")
    write_data_file(path, size)
    cache[key] = path
    return path


def write_data_file(path: Path, size: int, chunk: int = 8 << 20) -> None:
    """Random bytes (a compressing drive must not read zeros for free), written with O_DIRECT and fsync'd
    so the page cache holds none of it and nothing is left dirty to flush while we measure."""
    import shutil

    import numpy as np

    if size % ALIGN:
        raise ValueError(f"data file size {size} must be a multiple of {ALIGN} B (O_DIRECT)")
    free = shutil.disk_usage(path.parent).free
    if free < size + (64 << 20):
        raise NoSpace(f"{path.parent} has {free / 2**30:.2f} GiB free; a {format_size(size)} data file does not fit")
    check_direct_io(path.parent)
    rng = np.random.default_rng()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o600)
    try:
        with mmap.mmap(-1, chunk) as buf:  # anonymous mmap: page-aligned, as O_DIRECT needs
            view = memoryview(buf)
            for offset in range(0, size, chunk):
                n = min(chunk, size - offset)
                buf[:n] = rng.bytes(n)
                _write_all(fd, view[:n])
            view.release()
        os.fsync(fd)
    except OSError as exc:
        path.unlink(missing_ok=True)
        if exc.errno == errno.EINVAL:
            raise DirectIOUnsupported(f"filesystem at {path.parent} refuses O_DIRECT writes") from None
        raise
    finally:
        os.close(fd)


def _write_all(fd: int, data: memoryview) -> None:
    done = 0
    while done < len(data):
        done += os.write(fd, data[done:])


# ---- the runner the ds_aio fixture hands to tests ----------------------------------------------

class AioRunner:
    """`ds_aio` fixture: DeepSpeed aio reads on the target, recorded into the test."""

    def __init__(self, target: "Target", recorder: "Recorder") -> None:
        self.target = target
        self.recorder = recorder

    def data_file(self, size: int) -> Path:
        """The session's data file of `size` bytes on the target (written once, O_DIRECT).

        Skips the test where the target cannot hold it or refuses O_DIRECT (tmpfs): DeepSpeed
        opens every swap file with O_DIRECT, so there is nothing meaningful to measure there.
        """
        import pytest

        try:
            return ensure_data_file(self.target, size, self.recorder.session_cache)
        except (DirectIOUnsupported, NoSpace) as exc:
            pytest.skip(str(exc))

    def read(self, file: Path | None, block_size: int, queue_depth: int, parallelism: int,
             repeat: int | None = None, *, size: int | None = None, single_submit: bool = False,
             overlap_events: bool = True) -> AioResult:
        """Read the whole file `repeat` times; records `bw` (B/s) and `read_latency` (s) per repetition."""
        if file is None:
            file = self.data_file(size or file_bytes(self.recorder.profile.name))
        settings = AioSettings(block_size, queue_depth, parallelism, single_submit, overlap_events)
        result = measure_read(Path(file), settings, repeat=repeat or self.recorder.repeat,
                              timeout=float(self.recorder.timeout))
        self.recorder.record_samples("bw", result.bw_samples)
        self.recorder.record_samples("read_latency", result.seconds)
        self.recorder.set_extra("aio", settings.block())
        self.recorder.set_extra("aio_file_bytes", result.nbytes)
        return result


def measure_read(file: Path, settings: AioSettings, *, repeat: int = 1, nbytes: int | None = None,
                 timeout: float = 600.0, worker: AioWorker | None = None) -> AioResult:
    """One measurement through the (shared) worker; a dead worker is replaced on the next call."""
    if not file.is_file():
        raise AioError(f"{file} is not a file: nothing to read")
    file_bytes = file.stat().st_size
    size = nbytes if nbytes is not None else file_bytes
    if size > file_bytes:
        raise AioError(f"cannot read {size} B from {file}: it holds {file_bytes} B")
    check_read_size(size, settings.parallelism)
    w = worker or shared_worker()
    msg = w.read(file, settings, nbytes=size, repeat=repeat, timeout=timeout)
    if int(msg["nbytes"]) != size or not msg["verified"]:
        raise AioError(f"aio read of {file} returned {msg['nbytes']} verified={msg['verified']}, expected {size} B")
    return AioResult(file=file, nbytes=size, settings=settings, seconds=tuple(float(s) for s in msg["seconds"]),
                     verified=bool(msg["verified"]))


# ---- the worker, child side (python -m pytest_nvme_ai.aio --worker) ---------------------------

def _op_is_cached() -> bool:
    try:
        from torch.utils.cpp_extension import _get_build_directory  # private, but it is where load() looks

        return Path(_get_build_directory("async_io", verbose=False), "async_io.so").exists()
    except Exception:
        return False


class _IoState:
    """The worker's op, its current handle and one page-locked buffer, all reused between reads.

    A handle is kept while the settings stay the same (DeepSpeed keeps its handles for the life of
    the process too). A retired handle is *not* destroyed: its destructor joins every aio thread,
    each waiting out an io_destroy (an RCU grace period, ~35 ms), while holding the GIL: 0.5 s for
    16 threads, more than a short read. Retired handles pile up instead, and past a bound the
    worker exits with os._exit (the kernel tears every aio context down at once, ~50 ms) and the
    parent starts a fresh one on the next read.
    """

    MAX_RETIRED_THREADS = 256
    MAX_RETIRED_EVENTS = 16384  # of fs.aio-max-nr (65536 by default), shared with the whole machine

    def __init__(self, op: Any) -> None:
        self.op = op
        self.key: tuple[Any, ...] | None = None
        self.handle: Any = None
        self.buffer: Any = None
        self.retired: list[Any] = []
        self.retired_threads = self.retired_events = 0

    @property
    def should_recycle(self) -> bool:
        return self.retired_threads > self.MAX_RETIRED_THREADS or self.retired_events > self.MAX_RETIRED_EVENTS

    def handle_for(self, req: dict[str, Any]) -> Any:
        key = tuple(req[k] for k in ("block_size", "queue_depth", "single_submit", "overlap_events", "parallelism"))
        if key != self.key:
            if self.handle is not None:
                self.retired.append(self.handle)
                par, qd = int(self.key[4]), int(self.key[1])  # type: ignore[index]  # set with handle
                self.retired_threads += par
                self.retired_events += 2 * par * max(qd, 8)  # the kernel reserves about twice what io_setup asks
            self.handle = self.op.aio_handle(int(key[0]), int(key[1]), bool(key[2]), bool(key[3]), int(key[4]))
            self.key = key
        return self.handle

    def buffer_of(self, nbytes: int) -> Any:
        import torch

        if self.buffer is None or self.buffer.numel() < nbytes:
            self.release()
            t = self.handle.new_cpu_locked_tensor(nbytes, torch.empty(0, dtype=torch.uint8))
            if t.data_ptr() == 0:  # DeepSpeed returns a null-backed tensor when mlock fails
                raise MemoryError(f"could not page-lock {nbytes} B (mlock failed): raise `ulimit -l`, "
                                  "or use a smaller file")
            self.buffer = t
        return self.buffer[:nbytes]

    def release(self) -> None:
        if self.buffer is not None and self.handle is not None:
            self.handle.free_cpu_locked_tensor(self.buffer)  # the manager is shared by every handle
        self.buffer = None


def _verify(buf: Any, file: str, nbytes: int, samples: int = 16) -> bool:
    """Compare evenly spaced 4 KiB blocks (first and last included) with a plain read of the file."""
    blocks = nbytes // ALIGN
    idx = sorted({round(i * (blocks - 1) / max(samples - 1, 1)) for i in range(samples)})
    with open(file, "rb", buffering=0) as fh:
        for b in idx:
            want = os.pread(fh.fileno(), ALIGN, b * ALIGN)
            if bytes(buf[b * ALIGN:(b + 1) * ALIGN].numpy()) != want:
                return False
    return True


def _serve_read(state: _IoState, req: dict[str, Any]) -> dict[str, Any]:
    file, nbytes, repeat = req["file"], int(req["nbytes"]), int(req["repeat"])
    handle = state.handle_for(req)
    buf = state.buffer_of(nbytes)
    seconds, verified = [], True
    for _ in range(repeat):
        buf.fill_(0xA5)  # poison: a silently short read cannot pass verification with stale data
        t0 = time.perf_counter()
        ops = handle.sync_pread(buf, file)
        seconds.append(time.perf_counter() - t0)
        if ops != 1:
            raise OSError(f"sync_pread({file}) returned {ops} (expected 1 completed op)")
        verified = verified and _verify(buf, file, nbytes)
    return {"nbytes": nbytes, "seconds": seconds, "verified": verified, "recycle": state.should_recycle,
            "handle": {"block_size": handle.get_block_size(), "queue_depth": handle.get_queue_depth(),
                       "parallelism": handle.get_intra_op_parallelism()}}


def _worker_main() -> int:
    # The protocol gets a private copy of stdout; fd 1 then points at the log, because the C++ op
    # writes diagnostics to std::cout and they must not corrupt the JSON lines.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def emit(**msg: Any) -> None:
        proto.write(json.dumps(msg) + "\n")
        proto.flush()

    try:
        if not _op_is_cached():
            emit(event="progress", message=BUILD_MESSAGE)
        from .aio_build import ensure_built

        t0 = time.monotonic()
        op = ensure_built(progress=lambda m: print(m, file=sys.stderr, flush=True))
    except Exception as exc:
        emit(event="error", message=f"{type(exc).__name__}: {exc}")
        return 3
    emit(event="ready", load_s=time.monotonic() - t0, pid=os.getpid())
    state = _IoState(op)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            emit(event="result", **_serve_read(state, json.loads(line)))
        except Exception as exc:  # a Python-level failure keeps the worker; a C++ abort ends it
            emit(event="error", message=f"{type(exc).__name__}: {exc}")
        if state.should_recycle:
            break
    sys.stderr.flush()
    os._exit(0)  # skip the handles' destructors (see _IoState); the kernel reclaims everything at once


def main(argv: list[str] | None = None) -> int:
    """`python -m pytest_nvme_ai.aio FILE --block-size 1M ...` reads once and prints JSON; `--worker` serves."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m pytest_nvme_ai.aio")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("file", nargs="?")
    p.add_argument("--block-size", default="1M")
    p.add_argument("--queue-depth", type=int, default=8)
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    if args.worker:
        return _worker_main()
    if not args.file:
        p.error("FILE is required")
    settings = AioSettings(parse_size(args.block_size), args.queue_depth, args.parallelism)
    res = measure_read(Path(args.file), settings, repeat=args.repeat)
    print(json.dumps({"settings": asdict(settings), "aio": settings.block(), "nbytes": res.nbytes,
                      "seconds": res.seconds, "bw": res.bw_samples}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
