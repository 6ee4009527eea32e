"""`nvme-ai baseline promote|show|drop|diff`: add a reviewed run to the window, list the sessions, drop a
session or an entry, compare two baseline files."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

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


def table(rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Rows as aligned columns (the first row is the header)."""
    if len(rows) <= 1:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def describe_device(fp: Mapping[str, Any]) -> str:
    """A fingerprint as a sentence: 'nvme Micron 7450, firmware E2MU200, PCIe Gen4 x4, ext4'."""
    if not fp:
        return "unknown (no fingerprint recorded)"
    parts = [f"{fp.get('kind') or '?'} {fp.get('model') or '?'}", f"firmware {fp.get('firmware') or '-'}"]
    link = baseline.link_of(fp)
    parts.append(f"PCIe {link}" if link else "PCIe link unknown")
    parts.append(str(fp.get("fs_type") or "filesystem unknown"))
    return ", ".join(parts)


def _when(t: str | None) -> str:
    return (t or "?")[:19].replace("T", " ")


def _describe_entry(e: baseline.BaselineEntry) -> list[str]:
    lines = [f"  {e.key}  ({len(e.sessions)} session{'s' if len(e.sessions) != 1 else ''}, profile {e.profile or '-'})"]
    rows: list[tuple[str, ...]] = [("run", "started (UTC)", "commit", "source", "firmware", "link", "versions")]
    for s in e.sessions:
        rows.append((s.run_id or "?", _when(s.time), (s.commit or "?")[:10], s.source, s.firmware or "-",
                     s.link or "-", ", ".join(f"{k} {v}" for k, v in s.versions.items() if v) or "-"))
    lines += table(rows, "      ")
    rows = [("metric", "unit", "better", "session medians (oldest first)", "drift between sessions")]
    for n, m in e.latest.metrics.items():
        pts = e.points(n, len(e.sessions))
        w = stats(pts, m.n)
        rows.append((n, m.unit, m.better, "  ".join(format_value(p.median, m.unit) for p in pts),
                     f"±{w.drift_pct:.1f}%" if w is not None else f"unknown (<{MIN_SESSIONS} sessions)"))
    lines += table(rows, "      ")
    return lines


def _load(path: Path) -> baseline.BaselineFile:
    try:
        bf = baseline.load(path)
    except baseline.BaselineError as exc:
        raise ValueError(str(exc)) from None
    if bf is None:
        raise FileNotFoundError(f"baseline {path} vanished while reading it")
    return bf


def _list_baselines(bdir: Path) -> int:
    files = sorted(bdir.glob("*.json"))
    if not files:
        print(f"no baselines in {bdir}")
        return 0
    rows = [("baseline", "entries", "sessions", "format", "updated (UTC)", "device")]
    for f in files:
        try:
            bf = baseline.load(f)
        except baseline.BaselineError as exc:
            rows.append((f.stem, "-", "-", "-", "-", f"UNREADABLE: {exc}"))
            continue
        if bf is None:
            continue
        n = max((len(e.sessions) for e in bf.entries.values()), default=0)
        rows.append((f.stem, str(len(bf.entries)), f"up to {n}", str(bf.schema_version), _when(bf.updated),
                     describe_device(bf.fingerprint)))
    print("\n".join(table(rows)))
    return 0


def cli_show(args: argparse.Namespace) -> int:
    bdir = Path(args.baseline_dir)
    if not args.name:
        return _list_baselines(bdir)
    bf = _load(_resolve_baseline(args.name, bdir))
    if getattr(args, "json", False):
        print(json.dumps({"name": bf.name, "path": str(bf.path), "format": bf.schema_version, "updated": bf.updated,
                          "fingerprint": bf.fingerprint,
                          "entries": {k: e.to_json() for k, e in sorted(bf.entries.items())}}, indent=1))
        return 0
    migrated = " (version 1: read as one-session windows; the next save writes version 2)" if bf.schema_version == 1 else ""
    print(f"baseline {bf.name} ({bf.path}), format {bf.schema_version}{migrated}, updated {_when(bf.updated)} UTC")
    print(f"device: {describe_device(bf.fingerprint)}  (slug {device_slug(bf.fingerprint) if bf.fingerprint else '-'})")
    print(f"{len(bf.entries)} entries:")
    for key in sorted(bf.entries):
        for line in _describe_entry(bf.entries[key]):
            print(line)
    return 0


# ---- drop --------------------------------------------------------------------------------------
def drop_plan(bf: baseline.BaselineFile, run: str | None, entry: str | None) -> tuple[dict[str, baseline.BaselineEntry],
                                                                                         list[str]]:
    """(new entries, what changed, one line each). Raises BaselineError when nothing matches."""
    keys = [k for k in sorted(bf.entries) if entry is None or entry in k]
    if not keys:
        raise baseline.BaselineError(f"no entry of {bf.path} contains {entry!r}; `nvme-ai baseline show "
                                     f"{bf.name}` lists them. Nothing was written.")
    entries = dict(bf.entries)
    said: list[str] = []
    if run is None:
        for k in keys:
            del entries[k]
            said.append(f"deleted entry {k} ({len(bf.entries[k].sessions)} session(s))")
        return entries, said
    for k in keys:
        e = bf.entries[k]
        kept = tuple(s for s in e.sessions if s.run_id != run)
        if len(kept) == len(e.sessions):
            continue
        if kept:
            entries[k] = replace(e, sessions=kept)
            said.append(f"dropped run {run} from {k} ({len(kept)} session(s) left)")
        else:
            del entries[k]
            said.append(f"dropped run {run} from {k}: it was the only session, so the entry is deleted")
    if not said:
        runs = sorted({s.run_id or "?" for k in keys for s in bf.entries[k].sessions})
        raise baseline.BaselineError(f"no session of run {run!r} in {len(keys)} matching entr{'y' if len(keys) == 1 else 'ies'}"
                                     f" of {bf.path} (runs there: {', '.join(runs[-10:])}). Nothing was written.")
    return entries, said


def cli_drop(args: argparse.Namespace) -> int:
    if not args.run and not args.entry:
        raise ValueError("say what to drop: --run RUN_ID (a session, from every entry or those of --entry), "
                         "or --entry TEXT alone (delete those entries)")
    path = _resolve_baseline(args.name, Path(args.baseline_dir))
    said: list[str] = []

    def edit(bf: baseline.BaselineFile) -> dict[str, baseline.BaselineEntry]:
        entries, lines = drop_plan(bf, args.run, args.entry)
        said.extend(lines)
        return entries

    try:
        before, after = baseline.edit_entries(path, edit, dry_run=args.dry_run)
    except baseline.BaselineError as exc:
        raise ValueError(str(exc)) from None
    for line in said:
        print(f"(dry run) {line}" if args.dry_run else line)
    verb = "would leave" if args.dry_run else "left"
    print(f"{path}: {verb} {len(after)} of {len(before.entries)} entries"
          + (" (dry run: nothing written)" if args.dry_run else
             f" (rewritten atomically; the file as it was is kept as {baseline.previous_path(path)}: move it back "
             "to undo)"))
    return 0


# ---- diff --------------------------------------------------------------------------------------
def _centre(e: baseline.BaselineEntry, metric: str) -> float | None:
    """Median of the session medians over the whole window: the figure the gate centres on."""
    from statistics import median

    meds = [p.median for p in e.points(metric, len(e.sessions))]
    return median(meds) if meds else None


def diff_rows(a: baseline.BaselineFile, b: baseline.BaselineFile) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key in sorted(set(a.entries) | set(b.entries)):
        ea, eb = a.entries.get(key), b.entries.get(key)
        if ea is None or eb is None:
            out.append({"entry": key, "only_in": "a" if eb is None else "b"})
            continue
        notes = [f"params differ: {ea.params} vs {eb.params}"] if ea.params != eb.params else []
        if ea.profile != eb.profile:
            notes.append(f"profile {ea.profile} vs {eb.profile}")
        for name in sorted(set(ea.latest.metrics) | set(eb.latest.metrics)):
            m = ea.latest.metrics.get(name) or eb.latest.metrics[name]
            va, vb = _centre(ea, name), _centre(eb, name)
            out.append({"entry": key, "metric": name, "unit": m.unit, "better": m.better, "a": va, "b": vb,
                        "ratio": vb / va if va and vb is not None else None,
                        "sessions": [len(ea.sessions), len(eb.sessions)], "notes": notes})
    return out


def cli_diff(args: argparse.Namespace) -> int:
    bdir = Path(args.baseline_dir)
    a, b = (_load(_resolve_baseline(n, bdir)) for n in (args.a, args.b))
    rows = diff_rows(a, b)
    if getattr(args, "json", False):
        print(json.dumps({"a": {"name": a.name, "path": str(a.path), "fingerprint": a.fingerprint},
                          "b": {"name": b.name, "path": str(b.path), "fingerprint": b.fingerprint},
                          "rows": rows}, indent=1))
        return 0
    print(f"A = {a.name} ({a.path}): {describe_device(a.fingerprint)}")
    print(f"B = {b.name} ({b.path}): {describe_device(b.fingerprint)}")
    fp_diff = [f"{k} {a.fingerprint.get(k)} -> {b.fingerprint.get(k)}" for k in sorted(set(a.fingerprint) | set(b.fingerprint))
               if a.fingerprint.get(k) != b.fingerprint.get(k)]
    print("device differs: " + ("; ".join(fp_diff) if fp_diff else "no (same fingerprint)"))
    table_rows = [("entry", "metric", "A (window median)", "B (window median)", "B / A", "sessions A/B")]
    for r in rows:
        if "only_in" in r:
            table_rows.append((r["entry"], "-", "present" if r["only_in"] == "a" else "absent",
                               "present" if r["only_in"] == "b" else "absent", "-", "-"))
            continue
        ratio = f"x{r['ratio']:.3f}" if r["ratio"] is not None else "-"
        table_rows.append((r["entry"], r["metric"], format_value(r["a"], r["unit"]) if r["a"] is not None else "-",
                           format_value(r["b"], r["unit"]) if r["b"] is not None else "-", ratio,
                           "{}/{}".format(*r["sessions"])))
    print("\n".join(table(table_rows)) if len(table_rows) > 1 else "both baselines are empty")
    for note in sorted({f"{r['entry']}: {n}" for r in rows for n in r.get("notes", ())}):
        print("note: " + note)
    return 0
