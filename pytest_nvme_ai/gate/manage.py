"""`nvme-ai baseline promote|show`: add a reviewed run to the window, list the sessions."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from pytest_nvme_ai.core.metrics import format_value
from pytest_nvme_ai.core.results import load_results
from pytest_nvme_ai.core.names import check_name, path_in
from pytest_nvme_ai.core.text import device_slug
from pytest_nvme_ai.gate import baseline
from pytest_nvme_ai.gate.policy import SaveCandidate, saveable
from pytest_nvme_ai.gate.window import MIN_SESSIONS, stats


def promote(results: Path, baseline_dir: Path, name: str | None = None, include_failed: bool = False,
            window: int = baseline.DEFAULT_WINDOW) -> list[tuple[Path, int]]:
    """Add a reviewed run to the baseline window (one session per test) without rerunning it."""
    if name:
        check_name(name, "baseline name", "to keep baselines elsewhere, use --baseline-dir")
    data = load_results(results)
    targets = {t["label"]: t for t in data.get("targets", [])}
    written: list[tuple[Path, int]] = []
    by_label: dict[str, list[baseline.NewSession]] = {}
    for t in data.get("tests", []):
        ok = saveable(SaveCandidate.from_results(t), window) or (include_failed and t.get("verdict") in ("regression", "improvement"))
        if ok and t.get("metrics") and t.get("target_label") in targets:
            by_label.setdefault(t["target_label"], []).append(baseline.new_session_from_record(t))
    if not by_label:
        raise ValueError(f"{results}: no measured test to promote: none passed (failed ones are promoted only with "
                         f"--include-failed, after review)")
    if name and len(by_label) > 1:
        fps = {json.dumps(targets[lb]["device"].get("fingerprint"), sort_keys=True) for lb in by_label}
        if len(fps) > 1:
            raise ValueError("--name names one baseline but the run measured devices with different fingerprints; "
                             "promote without --name to get one baseline per device")
    for label, sessions in by_label.items():
        fp = targets[label]["device"].get("fingerprint") or {}
        bname = name or device_slug(fp)
        path = path_in(Path(baseline_dir), bname, ".json", what="baseline name")  # a name, never a path
        try:
            baseline.save_sessions(path, name=bname, fingerprint=fp, sessions=sessions, run=data.get("run", {}),
                                   environment=data.get("environment"), window=window, source="promote")
        except baseline.BaselineError as exc:
            raise ValueError(str(exc)) from None
        written.append((path, len(sessions)))
    return written


def cli_promote(args: argparse.Namespace) -> int:
    window = int(getattr(args, "window", None) or baseline.DEFAULT_WINDOW)
    if window < 1:
        raise ValueError(f"--window {window}: must be at least 1")
    for path, n in promote(Path(args.results), Path(args.baseline_dir), args.name, args.include_failed, window):
        print(f"promoted {n} test(s) into {path} (one reviewed session each; window {window})")
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


def _describe_entry(e: baseline.BaselineEntry) -> list[str]:
    lines = [f"  {e.key}  ({len(e.sessions)} session{'s' if len(e.sessions) != 1 else ''}, profile {e.profile})"]
    for s in e.sessions:
        versions = ", ".join(f"{k} {v}" for k, v in s.versions.items() if v)
        lines.append(f"      {s.time or '?':<32} run {s.run_id or '?'}  commit {(s.commit or '?')[:10]}  "
                     f"{s.source}  fw {s.firmware or '-'}  link {s.link or '-'}  {versions}")
    for n, m in e.latest.metrics.items():
        pts = e.points(n, len(e.sessions))
        meds = "  ".join(format_value(p.median, m.unit) for p in pts)
        w = stats(pts, m.n)
        drift = (f"drift between sessions ±{w.drift_pct:.1f}%" if w is not None
                 else f"drift unknown (<{MIN_SESSIONS} sessions)")
        lines.append(f"      {n:<20} medians {meds}  ({m.better} is better; {drift})")
    return lines


def cli_show(args: argparse.Namespace) -> int:
    bdir = Path(args.baseline_dir)
    if not args.name:
        files = sorted(bdir.glob("*.json"))
        if not files:
            print(f"no baselines in {bdir}")
        for f in files:
            try:
                bf = baseline.load(f)
                if bf is None:
                    continue
                n_sessions = max((len(e.sessions) for e in bf.entries.values()), default=0)
                print(f"{f.stem}: {len(bf.entries)} entries, up to {n_sessions} sessions each, "
                      f"format {bf.schema_version}, device {bf.fingerprint}, updated {bf.updated}")
            except baseline.BaselineError as exc:
                print(f"{f.stem}: UNREADABLE: {exc}")
        return 0
    try:
        bf = baseline.load(_resolve_baseline(args.name, bdir))
    except baseline.BaselineError as exc:
        raise ValueError(str(exc)) from None
    if bf is None:
        raise FileNotFoundError(f"baseline {args.name!r} vanished while reading it")
    migrated = " (version 1: read as one-session windows; the next save writes version 2)" if bf.schema_version == 1 else ""
    print(f"baseline {bf.name} ({bf.path}), format {bf.schema_version}{migrated}, updated {bf.updated}")
    print(f"device: {bf.fingerprint}")
    for key in sorted(bf.entries):
        for line in _describe_entry(bf.entries[key]):
            print(line)
    return 0
