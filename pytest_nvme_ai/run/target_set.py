"""The session's targets: the directories given (or the embedded default), each identified, locked
and given a private directory for the run; SMART before the run; leftovers of dead sessions."""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import pytest

from pytest_nvme_ai.core.redact import redact_argv
from pytest_nvme_ai.core.targets import Target, TargetError, make_labels, validate_target_dir
from pytest_nvme_ai.measure.device import identify, read_smart
from pytest_nvme_ai.measure.throttle import clear_leftovers
from pytest_nvme_ai.run.locks import SessionLock, claim, other_sessions
from pytest_nvme_ai.run.records import jsonable


class TargetSet(Sequence[Target]):
    """A sequence of the run's targets (fixtures index it), plus what the session keeps about them."""

    def __init__(self) -> None:
        self._targets: list[Target] = []
        self.locks: list[SessionLock] = []
        self.leftovers: dict[str, list[str]] = {}   # target label -> private dirs of dead sessions
        self.smart_before: dict[str, Any] = {}
        self.cgroup_leftovers: list[str] = []       # cgroups of dead runs, named and removed at start

    @overload
    def __getitem__(self, i: int) -> Target: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Target]: ...

    def __getitem__(self, i: int | slice) -> Target | Sequence[Target]:
        return self._targets[i]

    def __len__(self) -> int:
        return len(self._targets)

    def __iter__(self) -> Iterator[Target]:
        return iter(self._targets)

    def setup(self, raw: Sequence[str], *, basetemp: Path | None, run_id: str, info: dict[str, Any]) -> None:
        """Validate, identify and claim the targets; `raw` empty means the embedded default."""
        embedded = not raw
        paths = [_default_dir(basetemp)] if embedded else _validated(raw)
        labels = ["default"] if embedded else make_labels(paths)
        for p, label in zip(paths, labels):
            self._targets.append(Target(path=p, label=label, run_id=run_id, embedded=embedded, device=identify(p)))
        self.claim(info)
        # A run killed with -9 leaves its (empty) throttle/accounting cgroups behind: name and remove them now.
        self.cgroup_leftovers = clear_leftovers()
        self.smart_before = self.read_smart()

    def claim(self, info: dict[str, Any]) -> None:
        """Lock each target's private dir; refuse a target another live session is measuring.

        Refuse rather than wait: two sessions on one drive each measure part of its bandwidth
        (a false regression), and a silent wait would spend the CI job's time limit with no
        result; the refusal names the other run at once, and the CI job can be retried."""
        info = {**info, "argv": redact_argv(info.get("argv") or ())}   # the lock file is readable by others
        busy = []
        for t in self._targets:
            self.locks.append(claim(t, info))
            for other in other_sessions(t):
                if other.live:
                    busy.append(f"target {t.path} is in use by another pytest-nvme-ai session ({other.describe()})")
                else:
                    self.leftovers.setdefault(t.label, []).append(other.directory.name)
        if busy:
            self.release()
            raise pytest.UsageError(
                "pytest-nvme-ai: " + "; ".join(busy) + ". Two sessions measuring one drive each see part of its "
                "bandwidth, which would read as a regression: wait for it to finish, or pass another --nvme-ai-target")

    def release(self) -> None:
        """Remove the private dirs and drop the locks (idempotent; also run at unconfigure)."""
        for t in self._targets:
            t.cleanup()
        for lock in self.locks:
            lock.release()
        self.locks.clear()

    def read_smart(self) -> dict[str, Any]:
        return {t.label: read_smart(t.device) for t in self._targets}

    def documents(self, smart_after: dict[str, Any], baseline_paths: dict[str, Path]) -> list[dict[str, Any]]:
        """results.json `targets`: each target, its device, SMART before and after, its baseline file."""
        out = []
        for t in self._targets:
            dev = t.device.to_dict() if t.device is not None else {}
            dev["smart_before"] = jsonable(self.smart_before.get(t.label))
            dev["smart_after"] = jsonable(smart_after.get(t.label))
            dev["fingerprint"] = t.device.fingerprint() if t.device is not None else None
            out.append({"path": str(t.path), "label": t.label, "embedded": t.embedded, "device": dev,
                        "leftovers": list(self.leftovers.get(t.label, [])),
                        "baseline": str(baseline_paths[t.label]) if t.label in baseline_paths else None})
        return out


def _default_dir(basetemp: Path | None) -> Path:
    """The embedded default: a directory under pytest's basetemp, reported as whatever backs it."""
    base = basetemp if basetemp is not None else Path(os.environ.get("TMPDIR", "/tmp"))
    d = Path(base) / "nvme-ai-default-target"
    d.mkdir(parents=True, exist_ok=True)
    return d.resolve()


def _validated(raw: Sequence[str]) -> list[Path]:
    seen: set[Path] = set()
    paths: list[Path] = []
    for r in raw:
        try:
            p = validate_target_dir(r)
        except TargetError as exc:
            raise pytest.UsageError(f"pytest-nvme-ai: {exc}") from None
        if p in seen:
            raise pytest.UsageError(f"pytest-nvme-ai: target {p} was given twice")
        seen.add(p)
        paths.append(p)
    return paths
