"""Baseline files: one JSON file per baseline name (device profile), schema-versioned.

Writes are atomic (temp file + rename) and serialized with a lock file, and
each save merges into what is on disk at that moment, so two sessions saving
to the same baseline keep both sets of entries. A corrupt file or one from a
newer schema is refused with a message, never overwritten.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from pytest_nvme_ai.core.schema import SCHEMA_VERSION
from pytest_nvme_ai.core.fsutil import atomic_write_json
from pytest_nvme_ai.core.metrics import Metric, format_value
from pytest_nvme_ai.core.names import check_name, path_in
from pytest_nvme_ai.core.text import device_slug

LOCK_TIMEOUT_S = 120


class BaselineError(Exception):
    pass


@dataclass(frozen=True)
class BaselineEntry:
    key: str
    nodeid: str
    params: dict[str, Any]
    metrics: dict[str, Metric]
    recorded: dict[str, Any]


@dataclass(frozen=True)
class BaselineFile:
    path: Path
    name: str
    fingerprint: dict[str, Any]
    entries: dict[str, BaselineEntry]
    schema_version: int
    updated: str | None


def _corrupt(path: Path, why: str) -> BaselineError:
    return BaselineError(
        f"baseline file {path} is corrupt ({why}). Nothing was overwritten. Restore it from version control, "
        f"or move it away to record a fresh baseline with --nvme-ai-save-baseline"
    )


def _parse(path: Path, raw: Any) -> BaselineFile:
    if not isinstance(raw, dict):
        raise _corrupt(path, "top level is not an object")
    version = raw.get("schema_version")
    if not isinstance(version, int):
        raise _corrupt(path, "no integer schema_version")
    if version > SCHEMA_VERSION:
        raise BaselineError(
            f"baseline file {path} has schema_version {version}, newer than this pytest-nvme-ai reads "
            f"({SCHEMA_VERSION}). Upgrade pytest-nvme-ai, or point --nvme-ai-baseline-dir at baselines written "
            f"by this version. Nothing was overwritten."
        )
    try:
        entries = {}
        for key, e in raw["entries"].items():
            metrics = {n: Metric.from_dict(n, m) for n, m in e["metrics"].items()}
            entries[key] = BaselineEntry(key, e.get("nodeid", key), e.get("params", {}), metrics, e.get("recorded", {}))
        return BaselineFile(path, str(raw["name"]), dict(raw.get("fingerprint") or {}), entries, version,
                            raw.get("updated"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _corrupt(path, f"{type(exc).__name__}: {exc}") from None


def load(path: Path) -> BaselineFile | None:
    """The baseline at `path`, or None when there is none yet."""
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


def entry_from_record(test: Mapping[str, Any], run: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A baseline entry (JSON form) from a results.json test record."""
    return {
        "nodeid": test["nodeid"],
        "params": test.get("params", {}),
        "metrics": {n: {k: m[k] for k in ("value", "unit", "better", "samples", "gated") if k in m}
                    for n, m in test["metrics"].items()},
        "recorded": {"run_id": (run or {}).get("id"), "time": datetime.now(timezone.utc).isoformat(),
                     "outcome": test.get("outcome"), "verdict": test.get("verdict")},
    }


def _to_json(bf: BaselineFile | None, name: str, fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    if bf is None:
        return {"schema_version": SCHEMA_VERSION, "name": name, "fingerprint": dict(fingerprint),
                "created": datetime.now(timezone.utc).isoformat(), "entries": {}}
    raw: dict[str, Any] = json.loads(bf.path.read_text(encoding="utf-8"))
    raw["schema_version"] = SCHEMA_VERSION
    return raw


def save_entries(path: Path, *, name: str, fingerprint: Mapping[str, Any], entries: Mapping[str, dict[str, Any]],
                 run: Mapping[str, Any], environment: Mapping[str, Any] | None = None) -> Path:
    """Merge `entries` into the baseline at `path` under a lock; atomic write."""
    from filelock import FileLock, Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path.parent / f".{path.name}.lock"))
    try:
        with lock.acquire(timeout=LOCK_TIMEOUT_S):
            current = load(path)   # re-read under the lock: another session may have saved meanwhile
            if current is not None and current.fingerprint and dict(fingerprint) != current.fingerprint:
                raise BaselineError(
                    f"baseline {path} was recorded on device {current.fingerprint}, not {dict(fingerprint)}; "
                    f"choose another --nvme-ai-baseline-name (or --name) or move the file away. Nothing was written."
                )
            data = _to_json(current, name, fingerprint)
            for key, e in entries.items():
                e = dict(e)
                e["recorded"] = {**e.get("recorded", {}), "run_id": run.get("id"), "commit": (run.get("commit") or {}).get("id"),
                                 "profile": run.get("profile"),
                                 "versions": (environment or {}).get("versions")}
                data["entries"][key] = e
            data["updated"] = datetime.now(timezone.utc).isoformat()
            atomic_write_json(path, data)
    except Timeout:
        raise BaselineError(f"could not lock {path} within {LOCK_TIMEOUT_S}s: another session is saving; retry") from None
    return path


def _load_results(path: Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{p} not found: pass a results.json (e.g. reports/latest/results.json)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p} is not valid JSON (line {exc.lineno}): is it a results.json?") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("schema_version"), int):
        raise ValueError(f"{p} has no schema_version: it is not a pytest-nvme-ai results.json")
    if raw["schema_version"] > SCHEMA_VERSION:
        raise ValueError(f"{p} has schema_version {raw['schema_version']}, newer than this pytest-nvme-ai reads "
                         f"({SCHEMA_VERSION}): upgrade pytest-nvme-ai")
    return raw


def promote(results: Path, baseline_dir: Path, name: str | None = None, include_failed: bool = False) -> list[tuple[Path, int]]:
    """Accept a reviewed run as the baseline without rerunning it."""
    if name:
        check_name(name, "baseline name", "to keep baselines elsewhere, use --baseline-dir")
    data = _load_results(results)
    targets = {t["label"]: t for t in data.get("targets", [])}
    written: list[tuple[Path, int]] = []
    by_label: dict[str, dict[str, Any]] = {}
    for t in data.get("tests", []):
        ok = t.get("outcome") == "passed" or (include_failed and t.get("verdict") in ("regression", "improvement"))
        if ok and t.get("metrics") and t.get("target_label") in targets:
            by_label.setdefault(t["target_label"], {})[t["key"]] = entry_from_record(t, data.get("run"))
    if not by_label:
        raise ValueError(f"{results}: no passing measured tests to promote")
    if name and len(by_label) > 1:
        fps = {json.dumps(targets[lbl]["device"].get("fingerprint"), sort_keys=True) for lbl in by_label}
        if len(fps) > 1:
            raise ValueError("--name names one baseline but the run measured devices with different fingerprints; "
                             "promote without --name to get one baseline per device")
    for label, entries in by_label.items():
        fp = targets[label]["device"].get("fingerprint") or {}
        bname = name or device_slug(fp)
        path = path_in(Path(baseline_dir), bname, ".json", what="baseline name")  # a name, never a path
        try:
            save_entries(path, name=bname, fingerprint=fp, entries=entries, run=data.get("run", {}),
                         environment=data.get("environment"))
        except BaselineError as exc:
            raise ValueError(str(exc)) from None
        written.append((path, len(entries)))
    return written


def cli_promote(args: argparse.Namespace) -> int:
    for path, n in promote(Path(args.results), Path(args.baseline_dir), args.name, args.include_failed):
        print(f"promoted {n} test(s) into {path}")
    return 0


def _resolve_baseline(name: str, baseline_dir: Path) -> Path:
    p = Path(name)
    if p.suffix == ".json" and p.exists():
        return p   # an explicit file, read only
    cand = path_in(baseline_dir, name, ".json", what="baseline name")
    if not cand.exists():
        have = ", ".join(sorted(x.stem for x in baseline_dir.glob("*.json"))) or "none"
        raise FileNotFoundError(f"no baseline {name!r} in {baseline_dir} (have: {have})")
    return cand


def cli_show(args: argparse.Namespace) -> int:
    bdir = Path(args.baseline_dir)
    if not args.name:
        files = sorted(bdir.glob("*.json"))
        if not files:
            print(f"no baselines in {bdir}")
        for f in files:
            try:
                bf = load(f)
                print(f"{f.stem}: {len(bf.entries) if bf else 0} entries, device {bf.fingerprint if bf else '?'}, updated {bf.updated if bf else '?'}")
            except BaselineError as exc:
                print(f"{f.stem}: UNREADABLE: {exc}")
        return 0
    try:
        bf = load(_resolve_baseline(args.name, bdir))
    except BaselineError as exc:
        raise ValueError(str(exc)) from None
    assert bf is not None
    print(f"baseline {bf.name} ({bf.path}), schema {bf.schema_version}, updated {bf.updated}")
    print(f"device: {bf.fingerprint}")
    for key, e in sorted(bf.entries.items()):
        print(f"  {key}")
        for n, m in e.metrics.items():
            print(f"      {n:<20} {format_value(m.value, m.unit):>14}  n={m.n}  ({m.better} is better)")
    return 0
