"""The inference workers, pytest side: one persistent child per engine, at most `max_alive` at once.

`EnginePool.run(job, ...)` sends a case to the worker that holds its engine (starting one when
none does, closing the least recently used one when the pool is full) and waits for the result
under the case's timeout. A worker that crashes, is OOM-killed, times out or reports a failed case
is gone afterwards: the case's outcome is classified exactly as for a one-shot child (deepspeed.launch.finish_run)
and the next case starts a fresh worker. Each engine's swap files live in their own folder
(`<workdir>/zero_inference/engine-<hash>/`), laid out once when the engine is built and removed when
its worker closes: at eviction, at the end of the session and on Ctrl-C.

Memory: a second worker is kept alive only when the two engines' estimated host memory fits in half
of what the machine has available (`fits_alongside`); otherwise one at a time.

Start: on the CPU accelerator a worker is forked from the session's fork server
(measure/deepspeed/forkserver.py), which has imported torch, DeepSpeed and transformers once;
elsewhere, and where forkserver.py says why not, it is exec'd
(`python -m pytest_nvme_ai.measure.zero_inference.remote_worker`). Both speak the same protocol, and
the generic handle of one worker is measure/deepspeed/worker_handle.py.

Closing: the pool registers `close_all` with the session's ChildRegistry at every case, so it is
closed at the session's end (before the fork server, which registered earlier); the atexit hook is
only the last resort for a dying interpreter.
"""
from __future__ import annotations

import atexit
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from pytest_nvme_ai.measure.deepspeed.forkserver import fork_server
from pytest_nvme_ai.measure.deepspeed.worker_handle import CaseProgress, ForkEntry, WorkerGone, WorkerHandle

if TYPE_CHECKING:
    from pytest_nvme_ai.core.lifecycle import ChildRegistry

WORKER_MODULE = "pytest_nvme_ai.measure.zero_inference.remote_worker"
WORKER_ARGV = [sys.executable, "-m", WORKER_MODULE]
PROCESS_BYTES = 3 << 30      # torch + DeepSpeed + transformers in one process, before any model (RSS, measured ~2 GiB)
REGISTRY_NAME = "zero_inference engine pool"

__all__ = ["CaseProgress", "EnginePool", "PoolStats", "WorkerGone", "shared_pool", "start_fork_server"]


def engine_dir_name(key: str) -> str:
    return "engine-" + hashlib.sha1(key.encode()).hexdigest()[:12]


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
        self.workers: dict[str, WorkerHandle] = {}  # in least- to most-recently used order
        self.estimates: dict[str, int] = {}
        self.started = self.cases = self.reused = 0

    def stats(self) -> PoolStats:
        return PoolStats(self.started, self.cases, self.reused)

    def worker_for(self, key: str, swap_dir: Path | None, estimate: int,
                   env: Mapping[str, str] | None = None, wrap: Sequence[str] = (),
                   fork_for: str | None = None) -> WorkerHandle:
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
            w = WorkerHandle(key, swap_dir, argv, env, fork=_fork_entry() if fork else None, what=WHAT,
                             account=not wrap)
        except (OSError, EOFError, WorkerGone) as exc:
            if not fork:
                raise
            # The fork server failed to start or to fork: this worker (and the next ones) are exec'd.
            fork_server().broken = f"{type(exc).__name__}: {exc}"
            first_fork = False
            w = WorkerHandle(key, swap_dir, argv, env, fork=None, what=WHAT, account=not wrap)
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
        """The case's result event (an InferenceRecord's dict, as remote_worker emits it); WorkerGone when the worker died or timed out.
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
        """End every worker and remove its swap files. Idempotent: the session's registry and the
        atexit hook may both call it."""
        for key in list(self.workers):
            self.close(key)


WHAT = "inference worker"
_POOL: dict[str, EnginePool] = {}


def _fork_entry() -> ForkEntry:
    from pytest_nvme_ai.measure.zero_inference.remote_worker import forked_main

    return ForkEntry(forked_main, (WORKER_MODULE,))


def shared_pool(registry: ChildRegistry | None = None) -> EnginePool:
    """The session's pool; `registry` (the session's ChildRegistry) closes it at the session's end."""
    pool = _POOL.get("pool")
    if pool is None:
        pool = _POOL["pool"] = EnginePool()
    if registry is not None:
        registry.register(REGISTRY_NAME, pool.close_all)  # re-registered per case: closes before the fork server
    return pool


def start_fork_server(accelerator: str, registry: ChildRegistry | None = None) -> str | None:
    """Start the fork server now (its imports overlap the op checks); None when started, else why
    workers will be exec'd. The session's registry stops it at the end."""
    server = fork_server()
    why = server.start(accelerator, preload=(WORKER_MODULE,))
    if why is None and registry is not None:
        server.register(registry)
    return why


@atexit.register
def close_shared_pool() -> None:
    """Last resort for a dying interpreter (the session's registry closes the pool first): end every
    worker and remove its swap files."""
    pool = _POOL.get("pool")
    if pool is not None:
        pool.close_all()
