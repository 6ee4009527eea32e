"""Targets: the directories under test, their private work directories and their ids.

The suite writes only inside `Target.workdir`, a private subdirectory of the
directory the user gave, and removes it at the end of the session.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_nvme_ai.core.fsutil import ensure_inside, is_block_device


class TargetError(Exception):
    pass


@dataclass(frozen=True)
class Target:
    path: Path          # the directory the user gave (resolved)
    label: str          # short, unique, id-safe: appears in test ids as "@<label>"
    run_id: str
    embedded: bool = False  # the default target under basetemp
    device: Any = field(default=None, compare=False)  # device.DeviceIdentity, filled at configure

    @property
    def workdir(self) -> Path:
        """Private per-session directory; created on first use."""
        wd = self.path / f".nvme-ai-{self.run_id}"
        wd.mkdir(exist_ok=True)
        return wd

    @property
    def id(self) -> str:
        return "@" + self.label

    def inside(self, *parts: str) -> Path:
        """A path in the private workdir, refused if it would escape it."""
        return ensure_inside(self.workdir.joinpath(*parts), self.workdir)

    def cleanup(self) -> None:
        wd = self.path / f".nvme-ai-{self.run_id}"
        if wd.exists():
            shutil.rmtree(wd, ignore_errors=True)


# ---- one live session per target -------------------------------------------------------------
# The running session holds an exclusive flock on this file in its private dir; the kernel drops
# the lock when the holder dies (kill -9 included), so "locked" means "alive" without pid guessing.
LOCK_NAME = ".session.lock"
PRIVATE_PREFIX = ".nvme-ai-"


class TargetBusy(TargetError):
    pass


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
            who += f": pytest {' '.join(map(str, i['argv']))}"[:300]
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


def validate_target_dir(raw: str | os.PathLike[str]) -> Path:
    """Check a user-given target; raise TargetError saying what to do."""
    p = Path(raw).expanduser()
    if is_block_device(p):
        raise TargetError(
            f"{p} is a block device. pytest-nvme-ai never writes to raw devices: mount a filesystem on it "
            f"and pass a directory on that filesystem, e.g. --nvme-ai-target /mnt/nvme0"
        )
    if not p.exists():
        raise TargetError(f"target {p} does not exist: create the directory on the drive under test first")
    if not p.is_dir():
        raise TargetError(f"target {p} is not a directory: pass a directory on the drive under test")
    try:  # mode bits do not tell root about read-only mounts: try what the run will do (mkdir)
        os.rmdir(tempfile.mkdtemp(prefix=".nvme-ai.probe-", dir=p))
    except OSError as exc:
        from pytest_nvme_ai.run.outputs import why_not_writable

        raise TargetError(f"target {p} is not writable: {why_not_writable(exc)}; fix it or choose another "
                          "directory") from None
    return p.resolve()


def make_labels(paths: list[Path]) -> list[str]:
    """Short id-safe labels from the last path component, made unique."""
    labels: list[str] = []
    for p in paths:
        base = re.sub(r"[^A-Za-z0-9_.]+", "_", p.name or "root").strip("_") or "root"
        label, n = base, 2
        while label in labels:
            label, n = f"{base}_{n}", n + 1
        labels.append(label)
    return labels


_TARGET_ID = re.compile(r"(?:^|-)@[A-Za-z0-9_.]+(?=-|$)")


def strip_target_id(callspec_id: str) -> str:
    """Parameter id without the target component: baselines are keyed per device, not per path."""
    return _TARGET_ID.sub("", callspec_id).strip("-")
