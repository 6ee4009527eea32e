"""The fork server (pytest side: its handle; the server itself runs forkserver_preload.py): heavy imports
once per session, not once per persistent worker.

A worker's start-up was mostly imports. torch, DeepSpeed and transformers' modeling code take 7-8 s
on the build VM, and the engine build itself (random weights, ZeRO-3 partitioning, swap files)
takes 1-2 s for opt-125m. With one worker per engine, the quick grid (5 engines) paid the imports
five times.

Here, multiprocessing's fork server (a process pytest starts once per session: by the runner before
its op checks, so that its imports overlap them, or else at the first forked worker) imports them
(forkserver_preload.py, plus the workload's worker module the caller names). Each worker is then
forked from it, with the modules already in memory, and runs the same loop as an exec'd one (the
`target` the caller passes, e.g. zero_inference.remote_worker.forked_main). The pool drives it through
`ForkedProcess`, which behaves like the Popen of an exec'd worker: pid, poll, wait, stdin and
stdout pipes. So deaths, timeouts and kills are classified exactly as before: the fork server
reports the exit status, a SIGKILL reads -9.

When a worker is exec'd instead, as before:
- **an accelerator other than CPU.** Probing CUDA in the server (DeepSpeed does on import) makes
  every fork's CUDA unusable. On a GPU machine the imports are also small beside one large model's
  build;
- **a wrapped worker** (a capped run starts it inside a cgroup through the wrapper);
- **another environment.** The server's environment is pytest's when it started, and some of it
  is read at import (DS_ACCELERATOR, thread counts). A worker whose environment differs (tests
  monkeypatch it) is exec'd, so it sees its own from the start;
- **`--nvme-ai-fork-workers 0`**, for comparison (benchmarks/zi_suite_share.py) and for bisecting.

The server registers with the session's ChildRegistry when it starts (`register`), and is stopped
there at the end of the session (`close`); it also exits by itself when pytest's end of its pipe closes.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Mapping, Sequence

from pytest_nvme_ai.core import procutil

if TYPE_CHECKING:
    from pytest_nvme_ai.core.lifecycle import ChildRegistry

PRELOAD = "pytest_nvme_ai.measure.deepspeed.forkserver_preload"
REGISTRY_NAME = "deepspeed fork server"
_VOLATILE_PREFIXES = ("PYTEST_",)  # pytest sets PYTEST_CURRENT_TEST per test: not the server's business


def _fingerprint(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in env.items() if not k.startswith(_VOLATILE_PREFIXES)))


# multiprocessing's status when the fork server's pipe closed without a status: the server died.
_SERVER_GONE = 255


class ForkedProcess:
    """What a worker handle and core.procutil use of a Popen, for a worker forked from the server."""

    def __init__(self, process: Any, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self._process = process
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self.pid: int = int(process.pid)
        fields = procutil.proc_stat(self.pid)
        self._started = fields[19] if fields and len(fields) > 19 else None  # guards against pid reuse

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def _still_running(self) -> bool:
        fields = procutil.proc_stat(self.pid)
        return fields is not None and len(fields) > 19 and fields[19] == self._started and fields[0] != "Z"

    def poll(self) -> int | None:
        code = self._process.exitcode  # as Popen's: negative for a signal
        if code is None:
            return None
        if code == _SERVER_GONE and self._still_running():
            return None  # the server died and cannot report; the worker (now init's child) runs on
        return int(code)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        self._process.join(timeout)
        while (code := self.poll()) is None:
            if self._process.exitcode is None or (deadline is not None and time.monotonic() >= deadline):
                raise subprocess.TimeoutExpired(f"forked worker {self.pid}", timeout or 0.0)
            time.sleep(0.05)  # the server is gone: watch /proc instead
        return code

    def close_pipes(self) -> None:
        for stream in (self.stdin, self.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


class ForkServer:
    """The session's fork server, with the environment it was started in."""

    def __init__(self) -> None:
        self._env: tuple[tuple[str, str], ...] | None = None   # set when started: the server's environment
        self.first_fork_s: float | None = None  # the server's imports, paid by the first forked worker
        self.broken: str | None = None          # why a fork failed: later workers are exec'd

    def can_fork(self, accelerator: str | None, env: Mapping[str, str] | None, wrapped: bool) -> str | None:
        """None when a worker for this case can be forked; else why it is exec'd."""
        if self.broken:
            return f"the fork server failed ({self.broken})"
        if accelerator != "cpu":
            return f"accelerator {accelerator}: a fork after the server probed it could not use it"
        if wrapped:
            return "a capped run starts its worker inside the cgroup"
        if not sys.platform.startswith("linux"):
            return "fork server: Linux only here"
        mine = _fingerprint(env if env is not None else os.environ)
        if mine != _fingerprint(os.environ):
            return "its environment differs from this process's"
        if self._env is not None and mine != self._env:
            return "the environment changed since the fork server started"
        return None

    def start(self, accelerator: str | None, preload: Sequence[str] = ()) -> str | None:
        """Start the server now, without waiting for its imports (they run in the background while
        the caller does other things: the op checks); None when started, else why workers are exec'd.
        `preload`: the workload's worker module(s), imported by the server after the heavy libraries."""
        why = self.can_fork(accelerator, None, wrapped=False)
        if why is None:
            self._ensure_running(dict(os.environ), preload)
        return why

    def register(self, registry: ChildRegistry) -> None:
        """Let the session stop the server at its end (idempotent; harmless before it starts).

        Registered once per registry, at its first start: the registry closes newest first, and every
        worker forked from the server holds the server's "alive" pipe, so the server can only end after
        the pool (which re-registers at every case) has ended its workers. Re-registering the server at a
        later test's start would put it ahead of the pool and its stop would wait on live workers."""
        if REGISTRY_NAME not in registry.names():
            registry.register(REGISTRY_NAME, self.close)

    def close(self) -> None:
        """Stop the server if this process started it; a later session starts a fresh one. Idempotent."""
        if self._env is None:
            return
        _stop_server()
        self._env, self.first_fork_s, self.broken = None, None, None

    def _ensure_running(self, env: Mapping[str, str], preload: Sequence[str]) -> Any:
        import multiprocessing
        from multiprocessing import forkserver

        ctx = multiprocessing.get_context("forkserver")
        if self._env is None:
            ctx.set_forkserver_preload([PRELOAD, *preload])
            self._env = _fingerprint(env)
        forkserver.ensure_running()  # returns at once; the server imports PRELOAD before its first fork
        return ctx

    def fork(self, target: Callable[..., None], log_path: Path, env: Mapping[str, str] | None,
             preload: Sequence[str] = ()) -> ForkedProcess:
        """A worker forked from the server (started now if not yet; the first fork waits for its imports).
        `target(requests_in, events_out, log_path, env)` is the worker's forked entry point."""
        from multiprocessing.connection import Connection

        env_now = dict(env if env is not None else os.environ)
        first = self.first_fork_s is None
        ctx = self._ensure_running(env_now, preload)
        r_in, w_in = os.pipe()
        r_out, w_out = os.pipe()
        child_in, child_out = Connection(r_in, writable=False), Connection(w_out, readable=False)
        t0 = time.monotonic()
        try:
            process = ctx.Process(target=target, args=(child_in, child_out, str(log_path), env_now),
                                  name="nvme-ai-worker", daemon=True)
            process.start()
        except BaseException:
            os.close(w_in)
            os.close(r_out)
            raise
        finally:
            child_in.close()  # the child holds its own copies now
            child_out.close()
        if first:
            self.first_fork_s = time.monotonic() - t0
        return ForkedProcess(process, os.fdopen(w_in, "wb"), os.fdopen(r_out, "rb", buffering=0))


_SERVER: dict[str, ForkServer] = {}


def fork_server() -> ForkServer:
    server = _SERVER.get("server")
    if server is None:
        server = _SERVER["server"] = ForkServer()
    return server


STOP_WAIT_S = 10.0   # a server whose forked workers still run does not end by itself: it is killed after this


def _stop_server() -> None:
    """multiprocessing's own stop (`ForkServer._stop`) closes the server's alive pipe and then waits for it
    with no limit; a worker still alive (it holds a copy of that pipe) makes that wait endless and hangs the
    session's end. Same steps here, with a limit: then the server is killed (its workers are in sessions of
    their own and are ended by the pool)."""
    import signal
    from multiprocessing import forkserver, util

    fs: Any = forkserver._forkserver   # private (typeshed has none of its fields), but the only handle there is
    pid = getattr(fs, "_forkserver_pid", None)
    if pid is None:
        return
    if fs._forkserver_alive_fd is not None:
        os.close(fs._forkserver_alive_fd)
        fs._forkserver_alive_fd = None
    deadline = time.monotonic() + STOP_WAIT_S
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.05)
    fs._forkserver_pid = None
    address = fs._forkserver_address
    if address is not None and not util.is_abstract_socket_namespace(address):
        try:
            os.unlink(address)
        except FileNotFoundError:
            pass
    fs._forkserver_address = None
