"""One live session per target: an advisory flock on a file in the session's private dir.

The running session holds an exclusive flock on `.nvme-ai-<run-id>/.session.lock`; the kernel drops it
when the holder dies (kill -9 included), so "locked" means "alive" without guessing from pids. A private
dir whose lock nobody holds is a true leftover of a dead run.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_nvme_ai.core.redact import redact_argv
from pytest_nvme_ai.core.targets import Target


LOCK_NAME = ".session.lock"
PRIVATE_PREFIX = ".nvme-ai-"


@dataclass(frozen=True)
class OtherSession:
    directory: Path
    live: bool
    info: dict[str, Any]   # what the holder wrote into its lock file (pid, run id, start, argv)

    def describe(self) -> str:
        i = self.info
        who = f"run {i.get('run_id', self.directory.name.removeprefix(PRIVATE_PREFIX))}"
        if i.get("pid"):
            who += f", pid {i['pid']} on {i.get('host', '?')}"
        if i.get("started"):
            who += f", started {i['started']}"
        if i.get("argv"):
            who += f": pytest {' '.join(redact_argv(i['argv']))}"[:300]   # lock files of older versions kept secrets
        return who


class SessionLock:
    """The flock a session holds on its target's private dir for as long as it runs."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd: int | None = fd
        self.path = path

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None


def claim(target: Target, info: dict[str, Any]) -> SessionLock:
    """Create the private dir and lock it; then look at the others (lock first, so of two sessions
    starting together at least one sees the other as live)."""
    wd = target.workdir
    path = wd / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({**info, "pid": os.getpid(), "host": socket.gethostname()}).encode())
    except BaseException:
        os.close(fd)
        raise
    return SessionLock(fd, path)


def other_sessions(target: Target) -> list[OtherSession]:
    """Every other private dir in the target: live (its lock is held) or a true leftover."""
    out = []
    own = f"{PRIVATE_PREFIX}{target.run_id}"
    for d in sorted(target.path.glob(f"{PRIVATE_PREFIX}*")):
        if d.name == own or not d.is_dir() or d.is_symlink():
            continue
        out.append(_probe(d))
    return out


def _probe(d: Path) -> OtherSession:
    try:
        fd = os.open(d / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return OtherSession(d, False, {})  # no lock file: an older plugin's dir, or a crash before locking
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            live = True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            live = False
        try:
            info = json.loads(os.read(fd, 65536).decode("utf-8", "replace") or "{}")
        except ValueError:
            info = {}
        return OtherSession(d, live, info if isinstance(info, dict) else {})
    finally:
        os.close(fd)
