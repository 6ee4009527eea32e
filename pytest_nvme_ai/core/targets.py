"""Targets: the directories under test, their private work directories and their ids.

The suite writes only inside `Target.workdir`, a private subdirectory of the
directory the user gave, and removes it at the end of the session.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_nvme_ai.core.fsutil import ensure_inside, is_block_device
from pytest_nvme_ai.core.text import safe_name
from pytest_nvme_ai.core.writable import why_not_writable


class TargetError(Exception):
    pass


# What fio reads into a value of its own (job file and command line alike; fio 3.33, tried by hand):
# a line break starts a new option; ';' and '#' start a comment anywhere in a value (the rest is
# dropped, so `/mnt/a;b/.nvme-ai-x/f` names `/mnt/a`); '$' starts `${VAR}` (environment) or a reserved
# keyword ($pagesize, $mb_memory, $ncpus). fio documents an escape only for ':' in filename= ('\\:');
# none for these, so a path holding one is refused. fio also strips a value's leading/trailing blanks.
_FIO_SPECIAL = re.compile(r"[\x00-\x1f\x7f;#$]")


def fio_unsafe_reason(value: str) -> str | None:
    """Why fio would not read `value` as written (None when it would). Every value written into a fio
    job file or argv obeys this, and configure checks target paths with it, since fio runs on each."""
    m = _FIO_SPECIAL.search(value)
    if m is not None:
        ch = m.group()
        what = {";": "';' (fio drops the rest as a comment)", "#": "'#' (fio drops the rest as a comment)",
                "$": "'$' (fio expands ${VAR} and $keywords, with no escape)"}.get(
            ch, f"the control character {ch!r} (a line break starts another fio option)")
        return f"contains {what}"
    if value != value.strip():
        return "starts or ends with white space (fio strips it)"
    return None


def _refuse_fio_special(given: str, resolved: Path) -> None:
    for path in dict.fromkeys((given, str(resolved))):
        why = fio_unsafe_reason(path)
        if why is not None and why.startswith("contains"):  # blanks at the ends are no harm inside a path
            raise TargetError(f"target {path!r} {why}: fio, which measures every target, would read another "
                              f"path and could write outside the target. Rename the directory (or mount the "
                              f"drive elsewhere) so its path has no line breaks, control characters, ';', '#' "
                              f"or '$', and pass that")


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


def validate_target_dir(raw: str | os.PathLike[str]) -> Path:
    """Check a user-given target; raise TargetError saying what to do."""
    p = Path(raw).expanduser()
    _refuse_fio_special(str(p), p)
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
        raise TargetError(f"target {p} is not writable: {why_not_writable(exc)}; fix it or choose another "
                          "directory") from None
    resolved = p.resolve()
    _refuse_fio_special(str(p), resolved)  # a symlink may lead to such a path
    return resolved


def make_labels(paths: list[Path]) -> list[str]:
    """Short id-safe labels from the last path component, made unique."""
    labels: list[str] = []
    for p in paths:
        base = safe_name(p.name or "root", None, default="root", keep="_.")
        label, n = base, 2
        while label in labels:
            label, n = f"{base}_{n}", n + 1
        labels.append(label)
    return labels


_TARGET_ID = re.compile(r"(?:^|-)@[A-Za-z0-9_.]+(?=-|$)")


def strip_target_id(callspec_id: str) -> str:
    """Parameter id without the target component: baselines are keyed per device, not per path."""
    return _TARGET_ID.sub("", callspec_id).strip("-")
