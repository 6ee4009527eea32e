"""How a child's run ended, in the words both sides use (any process): outcomes, exit codes, OOM.

Outcomes are data, never a dead pytest: `ok`, `oom` (torch.OutOfMemoryError, MemoryError, or the
child killed by the kernel's OOM killer), `timeout` (the parent killed the child's process group) and
`error`. The parent classifies a run with launch.classify.

A SIGKILL alone does not say who sent it: the kernel's OOM killer and `kill -9` look the same in an
exit status. `sigkill_cause` asks the kernel: its log (/dev/kmsg, readable by root) records every OOM
kill with its time and pid; where the log cannot be read, /proc/vmstat's `oom_kill` counter (readable
by anyone) still proves "no OOM kill since boot"; otherwise it says that it cannot tell.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Outcome = Literal["ok", "oom", "timeout", "error"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "oom", "timeout", "error")
EXIT_OK, EXIT_ERROR, EXIT_OOM, EXIT_USAGE = 0, 1, 3, 2
_OOM_NAMES = ("OutOfMemoryError", "MemoryError")

KMSG = Path("/dev/kmsg")
VMSTAT = Path("/proc/vmstat")
# The kernel log's clock (printk's local_clock) and CLOCK_MONOTONIC drift apart a little: widen the window.
CLOCK_SLACK_S = 5.0
# "Out of memory: Killed process 1234 (python3) ..." / "Memory cgroup out of memory: Killed process ..."
# and the one-line summary "oom-kill:constraint=...,task=python3,pid=1234,uid=0".
_KILLED = re.compile(r"Killed process (\d+) \(([^)]*)\)")
_OOM_KILL = re.compile(r"oom-kill:.*\btask=([^,]*),pid=(\d+)")


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or type(exc).__name__ in _OOM_NAMES or "out of memory" in str(exc).lower()


@dataclass(frozen=True)
class ChildExit:
    """How the child process ended: its status (None while a worker lives on), killed for time, seconds,
    and its pid where the caller knows it (it lets a SIGKILL be matched to the kernel log's OOM kills)."""

    returncode: int | None
    timed_out: bool
    seconds: float
    pid: int | None = None


@dataclass(frozen=True)
class OomKill:
    """One OOM kill in the kernel log: when (seconds since boot, the log's clock), whom, and the line."""

    at: float
    pid: int
    task: str
    line: str


@dataclass(frozen=True)
class KillCause:
    """Who sent a child's SIGKILL: oom True (the kernel's OOM killer), False (someone else), None (this
    machine cannot tell), and the sentence that says so and how it is known."""

    oom: bool | None
    why: str


def oom_kills(kmsg: Path = KMSG) -> list[OomKill]:
    """Every OOM kill still in the kernel's log ring. OSError when the log cannot be read (not root,
    kernel.dmesg_restrict, a container without /dev/kmsg)."""
    kills: list[OomKill] = []
    fd = os.open(kmsg, os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                raw = os.read(fd, 8192)   # one record per read
            except BlockingIOError:
                break                      # the end of the ring
            except BrokenPipeError:
                continue                   # records overwritten while we read: go on with the next
            if not raw:
                break
            kill = _parse_record(raw.decode("utf-8", "replace"))
            if kill is not None:
                kills.append(kill)
    finally:
        os.close(fd)
    return kills


def _parse_record(record: str) -> OomKill | None:
    """`prio,seq,usec,flags;message` (Documentation/ABI/testing/dev-kmsg) -> an OOM kill, or None."""
    head, _, message = record.partition(";")
    fields = head.split(",")
    message = message.split("\n", 1)[0]
    m = _KILLED.search(message)
    if m is not None:
        pid, task = int(m.group(1)), m.group(2)
    elif (m2 := _OOM_KILL.search(message)) is not None:
        pid, task = int(m2.group(2)), m2.group(1)
    else:
        return None
    try:
        at = int(fields[2]) / 1e6
    except (IndexError, ValueError):
        return None
    return OomKill(at, pid, task, message.strip())


def oom_kill_count(vmstat: Path = VMSTAT) -> int | None:
    """OOM kills since boot (all of them, cgroup limits included); None where the kernel does not count."""
    try:
        for line in vmstat.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def sigkill_cause(run_seconds: float, pid: int | None = None, *, now: float | None = None,
                  kmsg: Path = KMSG, vmstat: Path = VMSTAT) -> KillCause:
    """Who killed a child that died of SIGKILL just now after `run_seconds` (`pid`, when known, is matched
    against the OOM kills the kernel logged in that window)."""
    end = time.monotonic() if now is None else now
    start = end - run_seconds - CLOCK_SLACK_S
    try:
        kills = [k for k in oom_kills(kmsg) if start <= k.at <= end + CLOCK_SLACK_S]
    except OSError as exc:
        return _without_log(f"the kernel log {kmsg} cannot be read: {exc.strerror or exc}", vmstat)
    if pid is not None and not _pids_are_the_kernels():
        pid = None  # in a nested pid namespace the log's pids are not ours: match by time alone
    ours = [k for k in kills if pid is None or k.pid == pid]
    if ours:
        k = ours[-1]
        return KillCause(True, f"killed by the kernel's OOM killer (kernel log at {k.at:.1f} s: {k.line})")
    others = (f"; the OOM killer did kill {', '.join(f'pid {k.pid} ({k.task})' for k in kills)} then, "
              f"not this child (pid {pid})") if kills else ""
    return KillCause(False, "killed by a signal (SIGKILL), not by the OOM killer: the kernel log records no OOM "
                            f"kill of it during its {run_seconds:.0f} s run{others}; someone or something sent "
                            "kill -9")


def _pids_are_the_kernels(status: Path = Path("/proc/self/status")) -> bool:
    """True in the initial pid namespace, where the kernel log's pids are the ones we see (`NSpid` lists
    one pid per namespace level; one entry: not nested)."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("NSpid:"):
                return len(line.split()) == 2
    except OSError:
        return False
    return True  # a kernel without NSpid (before 4.1): no nesting to tell


def _without_log(reason: str, vmstat: Path) -> KillCause:
    count = oom_kill_count(vmstat)
    if count == 0:
        return KillCause(False, "killed by a signal (SIGKILL), not by the OOM killer: the kernel has OOM-killed "
                                f"nothing since boot ({vmstat} oom_kill 0; {reason})")
    counted = "" if count is None else f"; {vmstat} counts {count} OOM kill(s) since boot"
    return KillCause(None, "killed by SIGKILL, by the kernel's OOM killer or by someone else: this machine cannot "
                           f"tell ({reason}{counted}); run as root to read the kernel log")
