"""Baseline files: one JSON file per baseline name (device profile), with a window of sessions per entry.

Format version 2 (its own number: results.json is versioned separately and stays at 1):

    {"schema_version": 2, "name", "fingerprint": {...}, "created", "updated",
     "entries": {"<key>": {"nodeid", "params", "profile",
                           "sessions": [{"run_id", "time", "commit", "versions", "firmware", "link",
                                         "profile", "source": "save"|"promote"|"v1", "outcome", "verdict",
                                         "metrics": {"<name>": {"value", "unit", "better", "samples", "gated"}}},
                                        ...oldest first]}}}

A version-1 file (one session's samples per entry) is read as a one-session window and written back as
version 2 the next time a session is saved into it. Writes are atomic (temp file + rename) and
serialized with a lock file; each save merges into what is on disk at that moment, so two sessions
saving to the same baseline keep both. A corrupt file, or one newer than this reader, is refused with
a message and never overwritten.
"""
from __future__ import annotations

import json
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from pytest_nvme_ai.core.catalog import domain_of
from pytest_nvme_ai.core.fsutil import atomic_write_json, atomic_write_text
from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.gate.window import SessionPoint

FORMAT_VERSION = 2     # baseline files; results.json has its own core.schema.SCHEMA_VERSION
DEFAULT_WINDOW = 10
LOCK_TIMEOUT_S = 120
KEY_VERSIONS = ("python", "fio", "deepspeed", "torch", "transformers")


class BaselineError(Exception):
    pass


@dataclass(frozen=True)
class Session:
    """One session of one entry: its samples and what it ran on."""

    metrics: dict[str, Metric]
    time: str | None = None
    run_id: str | None = None
    commit: str | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    firmware: str | None = None
    link: str | None = None
    profile: str | None = None
    source: str = "save"
    outcome: str | None = None
    verdict: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "time": self.time, "commit": self.commit, "versions": self.versions,
                "firmware": self.firmware, "link": self.link, "profile": self.profile, "source": self.source,
                "outcome": self.outcome, "verdict": self.verdict,
                "metrics": {n: m.to_dict() for n, m in self.metrics.items()}}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], source: str | None = None) -> "Session":
        metrics = {n: Metric.from_dict(n, m) for n, m in raw["metrics"].items()}
        versions = raw.get("versions") or {}
        return cls(metrics=metrics, time=raw.get("time"), run_id=raw.get("run_id"), commit=raw.get("commit"),
                   versions=dict(versions), firmware=raw.get("firmware"), link=raw.get("link"),
                   profile=raw.get("profile"), source=source or str(raw.get("source") or "save"),
                   outcome=raw.get("outcome"), verdict=raw.get("verdict"))


@dataclass(frozen=True)
class BaselineEntry:
    key: str
    nodeid: str
    params: dict[str, Any]
    profile: str | None
    sessions: tuple[Session, ...]     # oldest first

    @property
    def latest(self) -> Session:
        return self.sessions[-1]

    @property
    def metrics(self) -> dict[str, Metric]:
        """The latest session's metrics (what the within-session rule compares with)."""
        return self.latest.metrics

    def window(self, size: int) -> tuple[Session, ...]:
        return self.sessions[-size:]

    def points(self, metric: str, size: int) -> list[SessionPoint]:
        """The metric's samples per session, over the last `size` sessions that measured it."""
        return [SessionPoint(s.metrics[metric].samples, s.time, s.run_id)
                for s in self.window(size) if metric in s.metrics]

    def to_json(self) -> dict[str, Any]:
        return {"nodeid": self.nodeid, "params": self.params, "profile": self.profile,
                "sessions": [s.to_json() for s in self.sessions]}


@dataclass(frozen=True)
class BaselineFile:
    path: Path
    name: str
    fingerprint: dict[str, Any]
    entries: dict[str, BaselineEntry]
    schema_version: int          # as found on disk (1 for a file not yet migrated)
    updated: str | None
    created: str | None = None


def link_of(fingerprint: Mapping[str, Any]) -> str | None:
    gen, width = fingerprint.get("pcie_gen"), fingerprint.get("pcie_width")
    return f"Gen{gen} x{width or '?'}" if gen else None


def _corrupt(path: Path, why: str) -> BaselineError:
    return BaselineError(
        f"baseline file {path} is corrupt ({why}). Nothing was overwritten. Restore it from version control, "
        f"or move it away to record a fresh baseline with --nvme-ai-save-baseline"
    )


def _entry_v1(key: str, e: Mapping[str, Any]) -> BaselineEntry:
    """A version-1 entry (one session's samples) as a one-session window."""
    rec = dict(e.get("recorded") or {})
    session = Session.from_json({**rec, "metrics": e["metrics"]}, source="v1")
    return BaselineEntry(key, str(e.get("nodeid", key)), dict(e.get("params") or {}), rec.get("profile"), (session,))


def _entry_v2(key: str, e: Mapping[str, Any]) -> BaselineEntry:
    sessions = tuple(Session.from_json(s) for s in e["sessions"])
    if not sessions:
        raise ValueError(f"entry {key!r} has no sessions")
    return BaselineEntry(key, str(e.get("nodeid", key)), dict(e.get("params") or {}), e.get("profile"), sessions)


def _check_domains(entry: BaselineEntry) -> None:
    """A sample no measurement can give (a negative bandwidth, a latency below 0, an overlap above 1)
    was typed into the file: comparing against it would switch the gate off without a word."""
    for session in entry.sessions:
        for name, m in session.metrics.items():
            lo, hi = domain_of(name, m.unit)
            bad = next((x for x in m.samples if not lo <= x <= hi), None)
            if bad is not None:
                span = f"at least {lo:g}" if hi == float("inf") else f"between {lo:g} and {hi:g}"
                raise ValueError(f"entry {entry.key!r}, session {session.run_id or '?'}: metric {name!r} has the "
                                 f"sample {bad:g} {m.unit}, but a {m.unit} value of {name} is {span}")


def _parse(path: Path, raw: Any) -> BaselineFile:
    if not isinstance(raw, dict):
        raise _corrupt(path, "top level is not an object")
    version = raw.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _corrupt(path, "no integer schema_version")
    if version > FORMAT_VERSION:
        raise BaselineError(
            f"baseline file {path} has schema_version {version}, newer than this pytest-nvme-ai reads "
            f"({FORMAT_VERSION}). Upgrade pytest-nvme-ai, or point --nvme-ai-baseline-dir at baselines written "
            f"by this version. Nothing was overwritten."
        )
    if version < 1:
        raise _corrupt(path, f"schema_version {version} was never written by pytest-nvme-ai")
    reader = _entry_v1 if version == 1 else _entry_v2
    try:
        entries = {str(k): reader(str(k), e) for k, e in raw["entries"].items()}
        for entry in entries.values():
            _check_domains(entry)
        return BaselineFile(path, str(raw["name"]), dict(raw.get("fingerprint") or {}), entries, version,
                            raw.get("updated"), raw.get("created"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _corrupt(path, f"{type(exc).__name__}: {exc}") from None


def load(path: Path) -> BaselineFile | None:
    """The baseline at `path` (a v1 file migrated in memory), or None when there is none yet."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _corrupt(path, f"invalid JSON at line {exc.lineno} column {exc.colno}") from None
    return _parse(path, raw)


# What identifies the drive model, as opposed to its firmware or how its link trained today.
MODEL_KEYS = ("kind", "model", "fs_type")


def find_sibling(baseline_dir: Path, fingerprint: Mapping[str, Any]) -> BaselineFile | None:
    """The newest readable baseline of the same drive model (other firmware or PCIe link), if any."""
    best: BaselineFile | None = None
    for f in sorted(Path(baseline_dir).glob("*.json")):
        try:
            bf = load(f)
        except BaselineError:
            continue  # the configure step already refused the file this run would use; others are not ours
        if bf is None or not bf.fingerprint or bf.fingerprint == dict(fingerprint):
            continue
        if all(bf.fingerprint.get(k) == fingerprint.get(k) for k in MODEL_KEYS):
            if best is None or (bf.updated or "") > (best.updated or ""):
                best = bf
    return best


@dataclass(frozen=True)
class NewSession:
    """What a run contributes to one entry: the test's identity and this session's metrics."""

    key: str
    nodeid: str
    params: dict[str, Any]
    metrics: dict[str, Metric]
    outcome: str | None = None
    verdict: str | None = None


def new_session_from_record(test: Mapping[str, Any]) -> NewSession:
    """A session to save from a results.json test record (or TestRecord.to_dict())."""
    metrics = {n: Metric.from_dict(n, m) for n, m in test["metrics"].items()}
    return NewSession(str(test["key"]), str(test["nodeid"]), dict(test.get("params") or {}), metrics,
                      test.get("outcome"), test.get("verdict"))


def _session_of(new: NewSession, *, run: Mapping[str, Any], environment: Mapping[str, Any] | None,
                fingerprint: Mapping[str, Any], source: str) -> Session:
    versions = dict((environment or {}).get("versions") or {})
    key_versions: dict[str, Any] = {k: versions.get(k) for k in KEY_VERSIONS if k in versions}
    if (environment or {}).get("kernel"):
        key_versions["kernel"] = (environment or {})["kernel"]
    commit = run.get("commit")
    return Session(metrics=dict(new.metrics),
                   time=str(run.get("started") or datetime.now(timezone.utc).isoformat()),
                   run_id=run.get("id"), commit=(commit or {}).get("id") if isinstance(commit, Mapping) else commit,
                   versions=key_versions, firmware=fingerprint.get("firmware"), link=link_of(fingerprint),
                   profile=run.get("profile"), source=source, outcome=new.outcome, verdict=new.verdict)


def _file_json(bf: BaselineFile | None, name: str, fingerprint: Mapping[str, Any],
               entries: Mapping[str, BaselineEntry]) -> dict[str, Any]:
    now = datetime.now(timezone.utc).isoformat()
    return {"schema_version": FORMAT_VERSION, "name": bf.name if bf else name,
            "fingerprint": bf.fingerprint if bf and bf.fingerprint else dict(fingerprint),
            "created": (bf.created if bf else None) or now, "updated": now,
            "entries": {k: e.to_json() for k, e in entries.items()}}


def append_session(entry: BaselineEntry | None, new: NewSession, session: Session, window: int) -> BaselineEntry:
    """The entry with this session appended and the window trimmed to the newest `window` sessions.

    Sessions measured with other settings or another profile describe another measurement: the
    window restarts with this session instead of mixing the two."""
    keep: tuple[Session, ...] = ()
    if entry is not None and entry.params == new.params and entry.profile == session.profile:
        keep = entry.sessions
    sessions = (keep + (session,))[-max(1, window):]
    return BaselineEntry(new.key, new.nodeid, dict(new.params), session.profile, sessions)


def _mode_of(path: Path) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """The baseline's lock file: saves, promotes and drops of one file run one at a time."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(path.parent / f".{path.name}.lock"))
    try:
        lock.acquire(timeout=LOCK_TIMEOUT_S)
    except Timeout:
        raise BaselineError(f"could not lock {path} within {LOCK_TIMEOUT_S}s: another session is saving; retry") from None
    try:
        yield
    finally:
        lock.release()


def _write(path: Path, current: BaselineFile | None, name: str, fingerprint: Mapping[str, Any],
           entries: Mapping[str, BaselineEntry]) -> None:
    mode = _mode_of(path)
    atomic_write_json(path, _file_json(current, name, fingerprint, entries))
    if mode is not None:  # the rename made a new file: keep the mode the user gave the old one
        os.chmod(path, mode)


def save_sessions(path: Path, *, name: str, fingerprint: Mapping[str, Any], sessions: Sequence[NewSession],
                  run: Mapping[str, Any], environment: Mapping[str, Any] | None = None,
                  window: int = DEFAULT_WINDOW, source: str = "save") -> Path:
    """Append one session per entry to the baseline at `path` under a lock; atomic write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        current = load(path)   # re-read under the lock: another session may have saved meanwhile
        if current is not None and current.fingerprint and dict(fingerprint) != current.fingerprint:
            raise BaselineError(
                f"baseline {path} was recorded on device {current.fingerprint}, not {dict(fingerprint)}; "
                f"choose another --nvme-ai-baseline-name (or --name) or move the file away. Nothing was written."
            )
        entries = dict(current.entries) if current else {}
        for new in sessions:
            s = _session_of(new, run=run, environment=environment, fingerprint=fingerprint, source=source)
            entries[new.key] = append_session(entries.get(new.key), new, s, window)
        _write(path, current, name, fingerprint, entries)
    return path


def previous_path(path: Path) -> Path:
    """Where edit_entries keeps the file as it was before the edit (hidden, not a *.json baseline)."""
    return path.with_name(f".{path.name}.previous")


def edit_entries(path: Path, edit: Callable[[BaselineFile], dict[str, BaselineEntry]], *,
                 dry_run: bool = False) -> tuple[BaselineFile, dict[str, BaselineEntry]]:
    """Rewrite a baseline's entries under its lock, from the file as it is on disk at that moment (a session
    saving meanwhile is kept). `edit` returns the new entries or raises BaselineError (nothing written). The
    file as it was is kept at previous_path() first, so an edit loses nothing.
    Returns (the file as read, the entries written, or only proposed when `dry_run`)."""
    path = Path(path)
    if not path.exists():
        raise BaselineError(f"no baseline file {path}")
    with _locked(path):
        current = load(path)
        if current is None:
            raise BaselineError(f"baseline file {path} vanished before it could be locked; nothing was written")
        entries = edit(current)
        if not dry_run:
            atomic_write_text(previous_path(path), path.read_text(encoding="utf-8"))
            _write(path, current, current.name, current.fingerprint, entries)
        return current, entries
