"""Filesystem helpers: atomic writes and the guard that keeps writes inside a target."""
from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same directory + fsync + rename.

    An interrupted run leaves either the old file or the new one, never half.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; results and baselines are shared artifacts, so honour the umask instead.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def atomic_symlink(link: Path, target: str) -> None:
    """Point `link` at `target` (relative name) atomically, replacing a previous link."""
    link = Path(link)
    tmp = link.with_name(f".{link.name}.tmp{os.getpid()}")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    if link.exists() and not link.is_symlink() and link.is_dir():
        # Never clobber a real directory somebody named "latest".
        tmp.unlink()
        raise FileExistsError(f"{link} is a real directory, not a link; rename it so the newest run can be linked there")
    os.replace(tmp, link)


def is_block_device(path: Path) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def ensure_inside(path: Path, root: Path) -> Path:
    """Resolve `path` and refuse it unless it lies under `root` (the suite's write fence)."""
    rp = Path(path).resolve()
    rr = Path(root).resolve()
    if rp != rr and rr not in rp.parents:
        raise PermissionError(f"refusing to write {rp}: it is outside the target directory {rr}")
    return rp
