"""A persistent worker child, seen from pytest (parent side): start (exec'd or forked), request, close.

The protocol is JSON lines (core.jsonlines): on the worker's stdout one object per line with an
"event" ("ready" first, then "progress" and "result"); on its stdin one request per line. Everything
else goes to stderr, which is kept as the worker's log; the slice written during a request is copied
to that request's own log. A worker that dies, is killed or runs out of time raises `WorkerGone`,
whose `returncode` and `timed_out` the caller classifies like a one-shot child's exit.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Sequence

from pytest_nvme_ai.core import procutil
from pytest_nvme_ai.core.jsonlines import ChildClosed, ChildSilent, LineReader, end_input, write_line
from pytest_nvme_ai.measure.deepspeed.forkserver import ForkedProcess, fork_server

START_TIMEOUT_S = 300.0      # the imports; op builds happen before any run (the runner's prepare())

CaseProgress = Callable[[str, int, int, float], None]  # (stage, done, total, seconds of the last step)


@dataclass(frozen=True)
class ForkEntry:
    """How a worker is forked from the fork server: its entry point and the module(s) the server preloads."""

    target: Callable[..., None]
    preload: Sequence[str] = ()


class WorkerGone(RuntimeError):
    """The worker died or was killed before it answered: `returncode` and `timed_out` say how."""

    def __init__(self, message: str, returncode: int | None, timed_out: bool) -> None:
        super().__init__(message)
        self.returncode, self.timed_out = returncode, timed_out


class WorkerHandle:
    """One persistent worker child (exec'd or forked), seen from pytest: JSON lines in and out."""

    def __init__(self, key: str, swap_dir: Path | None, argv: list[str],
                 env: Mapping[str, str] | None = None, fork: ForkEntry | None = None, what: str = "worker",
                 account: bool = False) -> None:
        """fork: from the session's fork server, with this entry point (the caller checked
        ForkServer.can_fork); else `argv` is exec'd. account: the worker joins an accounting cgroup of its
        own for `swap_dir`'s disk once ready (devcount.py says why one per worker); False for a worker
        already started inside a cgroup (a capped one: moving it would drop its cap)."""
        self.key, self.swap_dir = key, swap_dir
        self.what = what
        fd, name = tempfile.mkstemp(prefix="nvme-ai-zi-worker-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self._log: IO[bytes] = open(self.log_path, "ab")
        self.started = time.monotonic()
        self.proc: subprocess.Popen[bytes] | ForkedProcess
        try:
            if fork is not None:
                self.proc = fork_server().fork(fork.target, self.log_path, env, fork.preload)
            else:
                self.proc = procutil.start(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=self._log, env=dict(env) if env is not None else None)
        except BaseException:
            self._log.close()
            self.log_path.unlink(missing_ok=True)
            raise
        self.forked = fork is not None
        self.fork_server_s: float | None = None
        self._reader = LineReader(self.proc.stdout)  # type: ignore[arg-type]  # a pipe in both cases
        self.cases = 0
        self.ready: dict[str, Any] = {}
        self.accounting: Any = None
        self.accounting_error: str | None = None
        try:
            self.ready = self._expect("ready", START_TIMEOUT_S, None)
            if account and swap_dir is not None:
                self._join_accounting(swap_dir)
        except BaseException:
            self.kill()
            raise

    def _join_accounting(self, swap_dir: Path) -> None:
        """Move the worker (all its threads) into a cgroup of its own before its first case; the worker
        reads that cgroup's counters around each loop. Where none can be made the worker says why."""
        from pytest_nvme_ai.measure.io_cgroup import IoCgroup, IoCgroupError, account

        try:
            acct = account(swap_dir)
        except (IoCgroupError, OSError) as exc:
            self.accounting_error = str(exc)
            return
        if not isinstance(acct, IoCgroup):  # the /proc/diskstats fallback cannot isolate a worker
            acct.close()
            return
        try:
            acct.join(self.pid)
        except (IoCgroupError, OSError) as exc:
            acct.close()
            self.accounting_error = str(exc)
            return
        self.accounting = acct

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
        if self.accounting is not None:
            try:
                self.accounting.close()   # moves what is left to the parent, removes the cgroup
            except OSError:
                pass  # atexit and io_cgroup.leftovers() still find it
            self.accounting = None
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
        return WorkerGone(f"the {self.what} {how} {when}", code, timed_out)


