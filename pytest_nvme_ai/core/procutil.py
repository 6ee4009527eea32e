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
from pathlib import Path
from typing import Any, Sequence

DRAIN_S = 10.0  # after a stop: how long to wait for the pipes to close (a job stuck on a hung drive holds them)


def start(argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
    """Popen in a new session, so that stop() can signal the child's whole group."""
    return subprocess.Popen(list(argv), start_new_session=True, **popen_kw)


def run(argv: Sequence[str], timeout: float, *, grace_s: float = 5.0, **popen_kw: Any) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `argv` as text; past `timeout` s the child is stopped and
    subprocess.TimeoutExpired raised."""
    proc = start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_kw)
    out, err = finish(proc, timeout, grace_s=grace_s)
    return proc.returncode, out, err


def finish(proc: subprocess.Popen[Any], timeout: float, *, grace_s: float = 5.0,
           interrupt_grace_s: float | None = None) -> tuple[Any, Any]:
    """proc.communicate() within `timeout` s. On the timeout (subprocess.TimeoutExpired, re-raised) or
    any other interruption (Ctrl-C in pytest), the child is stopped first: never left running behind us."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_and_drain(proc, grace_s)
        raise
    except BaseException:
        _stop_and_drain(proc, grace_s if interrupt_grace_s is None else interrupt_grace_s)
        raise


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
    except ProcessLookupError:  # no such group: a forked worker stopped before its setsid() (zygote.py)
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
