"""Output locations checked at configure, before anything is measured.

A run that measures for an hour and then cannot write its report (a read-only
directory, a file where a directory belongs, an immutable baseline) has wasted
the hour. Each check probes the real thing (a temp file created and removed,
a baseline opened for writing without truncating it), so root, read-only mounts
and `chattr +i` are judged as the write itself would be, not by mode bits.
"""
from __future__ import annotations

import errno
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OutputProblem:
    path: Path
    message: str


def why_not_writable(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "the filesystem is mounted read-only"
    if exc.errno == errno.EPERM:
        return "operation not permitted (an immutable or append-only file or directory? see lsattr / chattr -i)"
    if exc.errno == errno.EACCES:
        return "permission denied (fix its permissions, e.g. chmod u+w)"
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return exc.strerror or str(exc)


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def check_writable_dir(path: Path, what: str, option: str) -> OutputProblem | None:
    """Can this run create files in `path` (or create `path` itself)? Nothing is left behind."""
    existing = _nearest_existing(path)
    if not existing.is_dir():
        where = "is a file" if existing == path else f"cannot be created: {existing} is a file, not a directory"
        return OutputProblem(path, f"{what} {path} {where}: remove or rename it, or pass {option} DIR")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".nvme-ai-probe-", dir=existing)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        here = "" if existing == path else f" (creating it needs a file in {existing})"
        return OutputProblem(path, f"{what} {path} is not writable{here}: {why_not_writable(exc)}; fix it or pass {option} DIR")
    return None


def check_writable_file(path: Path, what: str, fix: str) -> OutputProblem | None:
    """An existing file this run will replace: open it for writing without truncating (no data touched)."""
    if not path.exists():
        return None
    if path.is_dir():
        return OutputProblem(path, f"{what} {path} is a directory: {fix}")
    try:
        fd = os.open(path, os.O_WRONLY)
        os.close(fd)
    except OSError as exc:
        return OutputProblem(path, f"{what} {path} cannot be replaced: {why_not_writable(exc)}; {fix}")
    return None


def fallback_dir(run_id: str) -> Path:
    """Where results go when the report directory fails late: the system temp dir, one dir per run."""
    d = Path(tempfile.gettempdir()) / f"nvme-ai-results-{run_id}"
    d.mkdir(parents=True, exist_ok=True)
    return d
