"""The inference workers, parent side: one persistent child per engine, at most `max_alive` at once.

`EnginePool.run(job, ...)` sends a case to the worker that holds its engine (starting one when
none does, closing the least recently used one when the pool is full) and waits for the result
under the case's timeout. A worker that crashes, is OOM-killed, times out or reports a failed case
is gone afterwards: the case's outcome is classified exactly as for a one-shot child (runner.classify)
and the next case starts a fresh worker. Each engine's swap files live in their own folder
(`<workdir>/zero_inference/engine-<hash>/`), laid out once when the engine is built and removed when
its worker closes: at eviction, at the end of the session (atexit) and on Ctrl-C.

Memory: a second worker is kept alive only when the two engines' estimated host memory fits in half
of what the machine has available (`fits_alongside`); otherwise one at a time.

Start: on the CPU accelerator a worker is forked from the session's fork server (zygote.py), which
has imported torch, DeepSpeed and transformers once; elsewhere, and where zygote.py says why not,
it is exec'd (`python -m pytest_nvme_ai.measure.zero_inference.worker`). Both speak the same protocol.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Sequence

from pytest_nvme_ai.core import procutil
from pytest_nvme_ai.core.jsonlines import ChildClosed, ChildSilent, LineReader, end_input, write_line
from pytest_nvme_ai.measure.zero_inference.zygote import ForkedProcess, fork_server

WORKER_ARGV = [sys.executable, "-m", "pytest_nvme_ai.measure.zero_inference.worker"]
PROCESS_BYTES = 3 << 30      # torch + DeepSpeed + transformers in one process, before any model (RSS, measured ~2 GiB)
START_TIMEOUT_S = 300.0      # the imports; op builds happen before any run (deepspeed_ops fixture)

CaseProgress = Callable[[str, int, int, float], None]  # (stage, done, total, seconds of the last step)


class WorkerGone(RuntimeError):
    """The worker died or was killed before it answered: `returncode` and `timed_out` say how."""

    def __init__(self, message: str, returncode: int | None, timed_out: bool) -> None:
        super().__init__(message)
        self.returncode, self.timed_out = returncode, timed_out


def engine_dir_name(key: str) -> str:
    return "engine-" + hashlib.sha1(key.encode()).hexdigest()[:12]


class InferenceWorker:
    """One child holding (after its first case) one engine."""

    def __init__(self, key: str, swap_dir: Path | None, argv: list[str] | None = None,
                 env: Mapping[str, str] | None = None, fork: bool = False) -> None:
        """fork: from the session's fork server (the caller checked zygote.ForkServer.can_fork)."""
        self.key, self.swap_dir = key, swap_dir
        fd, name = tempfile.mkstemp(prefix="nvme-ai-zi-worker-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self._log: IO[bytes] = open(self.log_path, "ab")
        self.started = time.monotonic()
        self.proc: subprocess.Popen[bytes] | ForkedProcess
        try:
            if fork:
                self.proc = fork_server().fork(self.log_path, env)
            else:
                self.proc = procutil.start(argv or WORKER_ARGV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=self._log, env=dict(env) if env is not None else None)
        except BaseException:
            self._log.close()
            self.log_path.unlink(missing_ok=True)
            raise
        self.forked = fork
        self.fork_server_s: float | None = None
        self._reader = LineReader(self.proc.stdout)  # type: ignore[arg-type]  # a pipe in both cases
        self.cases = 0
        self.ready: dict[str, Any] = {}
        try:
            self.ready = self._expect("ready", START_TIMEOUT_S, None)
        except BaseException:
            self.kill()
            raise

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def run(self, job: Mapping[str, Any], timeout: float, progress: CaseProgress | None,
            case_log: Path | None) -> dict[str, Any]:
        """The worker's result event for one case; WorkerGone when it died or ran out of time.
        The worker log written during the case is copied to `case_log`."""
        start = self.log_path.stat().st_size
        try:
            self._send({"op": "run", "job": dict(job)})
            msg = self._expect("result", timeout, progress)
        except BaseException:
            self._copy_log(start, case_log)
            self.kill()  # a timeout, a death or Ctrl-C: never leave a half-run engine behind
            raise
        self._copy_log(start, case_log)
        self.cases += 1
        return msg

    def close(self) -> None:
        if self.alive and not end_input(self.proc, timeout=30):  # type: ignore[arg-type]  # Popen-like
            self.kill()
        self._cleanup()

    def kill(self) -> None:
        if self.alive:
            procutil.stop(self.proc, grace_s=2.0)  # type: ignore[arg-type]  # Popen-like
        self._cleanup()

    def _cleanup(self) -> None:
        if isinstance(self.proc, ForkedProcess):
            self.proc.close_pipes()  # also if it lives on (stuck in the kernel): EOF on stdin ends it later
        if not self._log.closed:
            self._log.close()
        if self.swap_dir is not None:
            shutil.rmtree(self.swap_dir, ignore_errors=True)  # as large as the model
        self.log_path.unlink(missing_ok=True)

    def _copy_log(self, start: int, dest: Path | None) -> None:
        if dest is None or self._log.closed:
            return
        self._log.flush()
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(start)
                dest.write_bytes(fh.read())
        except OSError:
            pass

    def _send(self, req: Mapping[str, Any]) -> None:
        if not write_line(self.proc.stdin, req):
            raise self._gone("before the request", timed_out=False)

    def _expect(self, event: str, timeout: float, progress: CaseProgress | None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = self._next_message(deadline)
            if msg.get("event") == "progress" and progress is not None:
                progress(str(msg.get("stage")), int(msg.get("done", 0)), int(msg.get("total", 0)),
                         float(msg.get("seconds", 0.0)))
            elif msg.get("event") == event:
                return msg

    def _next_message(self, deadline: float) -> dict[str, Any]:
        try:
            return self._reader.next(deadline)
        except ChildSilent:
            procutil.stop(self.proc, grace_s=2.0)  # type: ignore[arg-type]  # Popen-like
            raise self._gone("in time", timed_out=True) from None
        except ChildClosed:
            raise self._gone("mid-request", timed_out=False) from None

    def _gone(self, when: str, timed_out: bool) -> WorkerGone:
        try:
            code: int | None = self.proc.wait(timeout=procutil.DRAIN_S)
        except subprocess.TimeoutExpired:
            code = None
        how = "did not answer" if timed_out else (f"was killed by signal {-code}" if code is not None and code < 0
                                                  else f"exited with status {code}")
        return WorkerGone(f"the inference worker {how} {when}", code, timed_out)


@dataclass(frozen=True)
class PoolStats:
    """What the pool did this session: the share benchmark and the report read it."""

    workers_started: int
    cases: int
    reused: int


def mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            return next(int(line.split()[1]) << 10 for line in fh if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


class EnginePool:
    """Workers by engine key; `max_alive` bounds how many live at once (1 unless two fit)."""

    def __init__(self, max_alive: int = 2, argv: list[str] | None = None) -> None:
        self.max_alive = max_alive
        self.argv = argv  # a stand-in worker (tests): always exec'd
        self.workers: dict[str, InferenceWorker] = {}  # in least- to most-recently used order
        self.estimates: dict[str, int] = {}
        self.started = self.cases = self.reused = 0

    def stats(self) -> PoolStats:
        return PoolStats(self.started, self.cases, self.reused)

    def worker_for(self, key: str, swap_dir: Path | None, estimate: int,
                   env: Mapping[str, str] | None = None, wrap: Sequence[str] = (),
                   fork_for: str | None = None) -> InferenceWorker:
        """fork_for: the accelerator, when the caller allows a forked worker (None: exec'd)."""
        w = self.workers.pop(key, None)
        if w is not None and w.alive:
            self.workers[key] = w  # most recently used now
            return w
        if w is not None:
            w.kill()
        self.estimates[key] = estimate
        while self.workers and (len(self.workers) >= self.max_alive or not self._fits(key)):
            oldest = next(iter(self.workers))
            self.close(oldest)
        fork = (fork_for is not None and self.argv is None
                and fork_server().can_fork(fork_for, env, wrapped=bool(wrap)) is None)
        first_fork = fork and fork_server().first_fork_s is None
        argv = [*wrap, *(self.argv or WORKER_ARGV)]
        try:
            w = InferenceWorker(key, swap_dir, argv, env, fork=fork)
        except (OSError, EOFError, WorkerGone) as exc:
            if not fork:
                raise
            # The fork server failed to start or to fork: this worker (and the next ones) are exec'd.
            fork_server().broken = f"{type(exc).__name__}: {exc}"
            first_fork = False
            w = InferenceWorker(key, swap_dir, argv, env, fork=False)
        if first_fork:  # this worker waited for the fork server's imports: a once-per-session cost
            w.fork_server_s = fork_server().first_fork_s
        self.started += 1
        self.workers[key] = w
        return w

    def _fits(self, key: str) -> bool:
        """A second worker only when both estimates fit in half of the memory available now."""
        avail = mem_available()
        if avail is None:
            return False
        alive = sum(self.estimates.get(k, 0) for k in self.workers)
        return alive + self.estimates.get(key, 0) <= avail // 2

    def run(self, key: str, job: Mapping[str, Any], *, timeout: float, swap_dir: Path | None, estimate: int,
            progress: CaseProgress | None = None, case_log: Path | None = None,
            env: Mapping[str, str] | None = None, wrap: Sequence[str] = (),
            fork_for: str | None = None) -> dict[str, Any]:
        """The case's result dict (as child.py writes it); WorkerGone when the worker died or timed out.
        A result that is not ok also ends the worker (it exits by itself). A `wrap`ped worker (started
        inside a cgroup) is closed after its case: the cgroup is removed right after."""
        w = self.worker_for(key, swap_dir, estimate, env, wrap, fork_for)
        reused = w.cases > 0
        try:
            msg = w.run(job, timeout, progress, case_log)
        except BaseException:
            self.workers.pop(key, None)
            raise
        msg["worker_forked"] = w.forked
        msg["fork_server_s"] = None if reused else w.fork_server_s
        self.cases += 1
        self.reused += int(reused)
        if msg.get("outcome") != "ok" or wrap:
            self.close(key)
        return msg

    def close(self, key: str) -> None:
        w = self.workers.pop(key, None)
        if w is not None:
            w.close()

    def close_all(self) -> None:
        for key in list(self.workers):
            self.close(key)


_POOL: dict[str, EnginePool] = {}


def shared_pool() -> EnginePool:
    pool = _POOL.get("pool")
    if pool is None:
        pool = _POOL["pool"] = EnginePool()
    return pool


@atexit.register
def close_shared_pool() -> None:
    """End every worker and remove its swap files (also reached after a Ctrl-C ends pytest)."""
    pool = _POOL.get("pool")
    if pool is not None:
        pool.close_all()
