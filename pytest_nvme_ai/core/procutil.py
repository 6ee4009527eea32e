"""Child processes that can always be stopped: each starts in its own session, runs under a time
limit, and is stopped with everything it started.

fio, DeepSpeed's JIT builds, the aio worker and ZeRO-Inference runs all read the drive or hold a
lot of memory; a timeout or a Ctrl-C in pytest must not leave any of them behind. A new session
lets one signal reach the child's process group (compilers, helpers) without touching pytest; a
walk of /proc reaches what left the group (fio's job processes each call setsid()).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

DRAIN_S = 10.0  # after a stop: how long to wait for the pipes to close (a job stuck on a hung drive holds them)
ORPHAN_GRACE_S = 2.0  # the child is gone but its pipes stay open this long: whoever holds them is orphaned
POLL_S = 0.5


def start(argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
    """Popen in a new session, so that stop() can signal the child's whole group."""
    return subprocess.Popen(list(argv), start_new_session=True, **popen_kw)


def run(argv: Sequence[str], timeout: float, *, grace_s: float = 5.0, **popen_kw: Any) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `argv` as text; past `timeout` s the child is stopped and
    subprocess.TimeoutExpired raised."""
    proc = start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_kw)
    out, err = finish(proc, timeout, grace_s=grace_s)
    return proc.returncode, out, err


def describe_exit(rc: int) -> str:
    """'exited with status 3' or 'was killed by SIGKILL (signal 9)' for a Popen return code."""
    if rc >= 0:
        return f"exited with status {rc}"
    try:
        name = signal.Signals(-rc).name
    except ValueError:
        name = "an unknown signal"
    return f"was killed by {name} (signal {-rc})"


def finish(proc: subprocess.Popen[Any], timeout: float, *, grace_s: float = 5.0,
           interrupt_grace_s: float | None = None) -> tuple[Any, Any]:
    """proc.communicate() within `timeout` s. On the timeout (subprocess.TimeoutExpired, re-raised) or
    any other interruption (Ctrl-C in pytest), the child is stopped first: never left running behind us."""
    try:
        return _communicate(proc, timeout)
    except subprocess.TimeoutExpired:
        _stop_and_drain(proc, grace_s)
        raise
    except BaseException:
        _stop_and_drain(proc, grace_s if interrupt_grace_s is None else interrupt_grace_s)
        raise


def _communicate(proc: subprocess.Popen[Any], timeout: float) -> tuple[Any, Any]:
    """proc.communicate(timeout), watching the child: when it has exited (killed by someone, crashed) but
    its output pipes stay open, the processes holding them (fio's job processes, each in a session of its
    own, now orphans) would keep us waiting until the timeout, hours on the full profile. After
    ORPHAN_GRACE_S they are killed and what the child wrote is returned at once."""
    deadline = time.monotonic() + timeout
    gone_since: float | None = None
    while True:
        left = deadline - time.monotonic()
        try:
            return proc.communicate(timeout=max(0.01, min(POLL_S, left)))
        except subprocess.TimeoutExpired:
            if left <= POLL_S:
                raise subprocess.TimeoutExpired(proc.args, timeout) from None
        if proc.poll() is None:
            continue
        gone_since = gone_since if gone_since is not None else time.monotonic()
        if time.monotonic() - gone_since >= ORPHAN_GRACE_S:
            return _kill_orphans_and_drain(proc)


def _kill_orphans_and_drain(proc: subprocess.Popen[Any]) -> tuple[Any, Any]:
    """Kill every process that still holds the exited child's pipes and return what was read; empty
    output when a holder will not let go (stuck in the kernel on a hung drive)."""
    for pid, started in pipe_holders(proc):
        _kill_if_same(pid, started)
    try:
        return proc.communicate(timeout=DRAIN_S)
    except subprocess.TimeoutExpired:   # a holder stuck in the kernel (hung drive): give up on its output
        empty = "" if getattr(proc, "text_mode", False) else b""
        return empty, empty


def pipe_holders(proc: subprocess.Popen[Any]) -> list[tuple[int, str]]:
    """(pid, start time) of every other process that has one of proc's stdout/stderr pipes open."""
    inodes = set()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None and not stream.closed:
            try:
                inodes.add(f"pipe:[{os.fstat(stream.fileno()).st_ino}]")
            except (OSError, ValueError):
                pass
    found: list[tuple[int, str]] = []
    if not inodes:
        return found
    for d in Path("/proc").glob("[0-9]*"):
        if int(d.name) == os.getpid():
            continue
        try:
            links = {os.readlink(fd) for fd in (d / "fd").iterdir()}
        except OSError:
            continue
        fields = proc_stat(d.name)
        if links & inodes and fields and len(fields) > 19:
            found.append((int(d.name), fields[19]))
    return found


def _stop_and_drain(proc: subprocess.Popen[Any], grace_s: float) -> None:
    stop(proc, grace_s, reap_s=0)  # communicate() below waits for the exit as it drains the pipes
    try:
        proc.communicate(timeout=DRAIN_S)
    except subprocess.TimeoutExpired:  # a process stuck in the kernel (hung drive) keeps the pipe open
        pass


def stop(proc: subprocess.Popen[Any], grace_s: float = 5.0, reap_s: float = DRAIN_S) -> None:
    """SIGTERM the child's group and give it `grace_s` s to finish cleanly (fio stops its jobs and
    exits), then SIGKILL the group and every descendant seen at the start, setsid()'d ones included;
    wait up to `reap_s` s for the exit. grace_s=0: SIGKILL at once, for a child with nothing to tidy up."""
    victims = descendants(proc.pid)
    if grace_s > 0 and proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:  # only while the leader lives is its pid surely still this group's id
        _signal_group(proc, signal.SIGKILL)
    for pid, started in victims:
        _kill_if_same(pid, started)
    try:
        proc.wait(timeout=reap_s)
    except subprocess.TimeoutExpired:  # in uninterruptible sleep on a hung drive: the kernel has to let go
        pass


def _signal_group(proc: subprocess.Popen[Any], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # no such group: a forked worker stopped before its setsid() (measure/deepspeed/forkserver.py)
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass


def _kill_if_same(pid: int, started: str) -> None:
    """SIGKILL pid unless it is gone or its number now belongs to a newer process."""
    fields = proc_stat(pid)
    if fields and len(fields) > 19 and fields[19] == started:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def proc_stat(pid: int | str) -> list[str] | None:
    """Fields after the command name in /proc/PID/stat: [state, ppid, ..., starttime at 19, ...]."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of pid's descendants: neither the process group nor the session reaches one
    that called setsid(); the start time guards against the pid being reused by the time we kill."""
    children: dict[int, list[tuple[int, str]]] = {}
    for d in Path("/proc").glob("[0-9]*"):
        fields = proc_stat(d.name)
        if fields and len(fields) > 19:
            children.setdefault(int(fields[1]), []).append((int(d.name), fields[19]))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += [k for k, _ in kids]
    return out
