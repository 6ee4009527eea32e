"""DeepSpeed's aio read path (the `ds_io` equivalent), measured in a child process.

DeepSpeed's AsyncIO op is C++ full of `assert`s; a bad read can abort the whole
process. So the op is only ever loaded in a *worker* child (aio_worker.py, the
other half of the JSON-lines protocol `AioWorker` speaks here) that stays alive
between reads: loading torch + DeepSpeed costs seconds, and the tuner makes
dozens of reads. A crash or a hang becomes an `AioError` carrying the worker's
log tail; pytest lives on and the next read starts a new worker.

What one read measures, like `ds_io`: `handle.sync_pread(locked_buffer, file)`
of the whole file (O_DIRECT via libaio, so the page cache is bypassed) into a
page-locked host buffer; bw = file bytes / wall time of that one call.
"""
from __future__ import annotations

import atexit
import errno
import json
import mmap
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pytest_nvme_ai.core import procutil
from pytest_nvme_ai.core.jsonlines import ChildClosed, ChildSilent, LineReader, end_input, write_line
from pytest_nvme_ai.core.text import file_tail
from pytest_nvme_ai.measure.deepspeed.ops import BUILD_TIMEOUT_S, Progress, default_progress, missing_prerequisite
from pytest_nvme_ai.measure.deepspeed.version import aio_block
from pytest_nvme_ai.core.cache import SessionCache
from pytest_nvme_ai.core.profiles import Profile
from pytest_nvme_ai.measure.fio.runner import FIO_DATA, DirectIOUnsupported, FioJob, check_direct_io, format_size, parse_size

if TYPE_CHECKING:
    from pytest_nvme_ai.core.lifecycle import ChildRegistry
    from pytest_nvme_ai.core.recorder import Recorder
    from pytest_nvme_ai.core.targets import Target

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
    # The worker's busiest thread over the request (measure/fio/hostbound.py): % of one core, and running +
    # runnable %. Near 100% the figure describes the host's CPU, not the drive.
    cpu_pct: float | None = None
    busy_pct: float | None = None

    @property
    def bw_samples(self) -> tuple[float, ...]:
        return tuple(self.nbytes / s for s in self.seconds)

    @property
    def bw(self) -> float:
        return float(statistics.median(self.bw_samples))




def mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            return next(int(line.split()[1]) << 10 for line in fh if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def file_bytes(profile: Profile) -> int:
    """The profile's aio file size, halved until it fits in a quarter of available memory (min 256 MiB)."""
    size, avail = profile.aio_file_bytes, mem_available()
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
        self.proc = procutil.start(argv or [sys.executable, "-m", "pytest_nvme_ai.measure.aio.worker"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        self._reader = LineReader(self.proc.stdout)  # type: ignore[arg-type]  # stdout=PIPE above
        try:
            self.ready = self._expect("ready", start_timeout)
        except BaseException:  # AioError, or Ctrl-C during the first build: never leave the worker behind
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
        if self.alive and not end_input(self.proc, timeout=10):
            self.kill()
        self._log.close()
        if self.proc.returncode == 0:  # a clean exit leaves nothing worth reading
            self.log_path.unlink(missing_ok=True)

    def kill(self) -> None:
        if self.alive:  # nothing in the worker needs tidying: no grace, its aio threads die with it
            procutil.stop(self.proc, grace_s=0)

    def log_tail(self, lines: int = 15) -> str:
        return file_tail(self.log_path, lines)

    def _send(self, req: dict[str, Any]) -> None:
        if not write_line(self.proc.stdin, req):
            raise self._died("before the request")

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
        try:
            return self._reader.next(deadline)
        except ChildSilent:
            self.kill()
            raise AioError(f"aio worker timed out (killed)\n--- aio worker log ---\n{self.log_tail()}") from None
        except ChildClosed:
            raise self._died("mid-request") from None

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


REGISTRY_NAME = "deepspeed aio worker"


def register_shared_worker(registry: ChildRegistry) -> None:
    """Let the session stop the shared worker at its end (idempotent; harmless when none runs)."""
    registry.register(REGISTRY_NAME, release_shared_worker)


@atexit.register
def release_shared_worker() -> None:
    """Stop the shared worker: it holds a page-locked buffer as large as the data file (GiBs on
    standard/full), which later ZeRO-Inference runs need back. The next read starts a fresh one.
    Idempotent: the session's ChildRegistry calls it at the end, this atexit hook only for a dying interpreter."""
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
    reason = missing_prerequisite()
    if reason is None:
        try:
            shared_worker(progress)
        except AioError as exc:
            reason = f"DeepSpeed AsyncIO op cannot build or load: {exc}"
    _SHARED["reason"] = reason
    return reason


# ---- the data file ------------------------------------------------------------------------------

def ensure_data_file(target: "Target", size: int, cache: SessionCache) -> Path:
    """The session's data file of `size` bytes on the target: fio's when it laid one out, else ours.

    Same cache entry as fio.FioRunner.data_file (FIO_DATA): a file of one size is laid out once per
    session and shared by the fio and aio suites, so both read the very same blocks."""
    cached = cache.get(FIO_DATA, target.label, size)
    if cached is not None and cached.exists() and cached.stat().st_size >= size:
        return cached
    path = target.inside(f"aio-data-{format_size(size)}.bin")
    write_data_file(path, size)
    return cache.put(FIO_DATA, path, target.label, size)


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
        buf = mmap.mmap(-1, chunk)  # anonymous mmap: page-aligned, as O_DIRECT needs
        try:
            view = memoryview(buf)
            for offset in range(0, size, chunk):
                n = min(chunk, size - offset)
                buf[:n] = rng.bytes(n)
                _write_all(fd, view[:n])
            view.release()
        finally:
            try:
                buf.close()
            except BufferError:  # Ctrl-C mid-write: the traceback still holds a view; it is freed with it
                pass
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
        register_shared_worker(recorder.children)

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
            file = self.data_file(size or file_bytes(self.recorder.profile))
        settings = AioSettings(block_size, queue_depth, parallelism, single_submit, overlap_events)
        result = measure_read(Path(file), settings, repeat=repeat or self.recorder.repeat,
                              timeout=float(self.recorder.timeout))
        self.recorder.record_samples("bw", result.bw_samples)
        self.recorder.record_samples("read_latency", result.seconds)
        self.recorder.set_extra("aio", settings.block())
        self.recorder.set_extra("aio_file_bytes", result.nbytes)
        from pytest_nvme_ai.measure.fio.hostbound import judge

        flag = judge(result.cpu_pct, None, busy_pct=result.busy_pct, who="the aio worker's busiest thread")
        self.recorder.set_extra("host_bound", flag.to_dict())
        if flag.flagged:
            self.recorder.note(flag.reason)
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
    from pytest_nvme_ai.measure.fio.hostbound import busiest_thread, thread_stats

    before, t0 = thread_stats(w.proc.pid), time.monotonic()
    msg = w.read(file, settings, nbytes=size, repeat=repeat, timeout=timeout)
    cpu, busy = busiest_thread(before, thread_stats(w.proc.pid), time.monotonic() - t0)
    if int(msg["nbytes"]) != size or not msg["verified"]:
        raise AioError(f"aio read of {file} returned {msg['nbytes']} verified={msg['verified']}, expected {size} B")
    return AioResult(file=file, nbytes=size, settings=settings, seconds=tuple(float(s) for s in msg["seconds"]),
                     verified=bool(msg["verified"]), cpu_pct=cpu, busy_pct=busy)


def main(argv: list[str] | None = None) -> int:
    """`python -m pytest_nvme_ai.measure.aio.runner FILE --block-size 1M ...` reads once and prints JSON."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m pytest_nvme_ai.measure.aio.runner")
    p.add_argument("file")
    p.add_argument("--block-size", default="1M")
    p.add_argument("--queue-depth", type=int, default=8)
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    settings = AioSettings(parse_size(args.block_size), args.queue_depth, args.parallelism)
    res = measure_read(Path(args.file), settings, repeat=args.repeat)
    print(json.dumps({"settings": asdict(settings), "aio": settings.block(), "nbytes": res.nbytes,
                      "seconds": res.seconds, "bw": res.bw_samples}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
