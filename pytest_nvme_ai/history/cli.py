"""`nvme-ai history [list|changes|import]`: the store from the command line.

The argument parser lives in the top-level cli.py (`add_parser`); the commands live here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_nvme_ai.history.store import HistoryError, Store, open_store

DEFAULT_STORE = "reports/history.sqlite"   # the plugin's default: history.sqlite beside the reports
ENV = "NVME_AI_HISTORY"


def add_parser(sub: Any) -> None:
    h = sub.add_parser("history", help="runs kept in the history store: list, change points, import",
                       description="List runs (default), find change points, or import results.json files.")
    _common(h, suppress=False)
    _filters(h, suppress=False)
    hs = h.add_subparsers(dest="history_command")
    ls = hs.add_parser("list", help="list runs, newest first (the default)")
    _common(ls, suppress=True)
    _filters(ls, suppress=True)
    ch = hs.add_parser("changes", help="change points in each series (test, metric, drive model, runner)")
    _common(ch, suppress=True)
    _filters(ch, suppress=True)
    ch.add_argument("--model", help="only drives whose model contains this text")
    ch.add_argument("--runner", help="only this runner (host name)")
    ch.add_argument("--min-change", type=float, default=5.0, metavar="PCT",
                    help="smallest step that counts, in percent of the median before it (default 5)")
    ch.add_argument("--alpha", type=float, default=0.001,
                    help="significance of Welch's t-test between both sides (default 0.001)")
    im = hs.add_parser("import", help="add results.json files to the store (idempotent by run id)")
    _common(im, suppress=True)
    im.add_argument("results", nargs="+", help="results.json files or run directories, e.g. reports/*/results.json")


def _common(p: argparse.ArgumentParser, suppress: bool) -> None:
    d = argparse.SUPPRESS if suppress else None
    p.add_argument("--history", default=d, metavar="URL",
                   help=f"the store: an SQLite path or a postgresql:// URL (default: ${ENV}, else {DEFAULT_STORE})")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
                   help="print JSON")


def _filters(p: argparse.ArgumentParser, suppress: bool) -> None:
    d = argparse.SUPPRESS if suppress else None
    p.add_argument("--test", default=d, help="only tests whose key contains this text")
    p.add_argument("--metric", default=d, help="only this metric (e.g. bw, decode_throughput)")
    p.add_argument("--fingerprint", default=d, help="only device fingerprints containing this text "
                   "(e.g. gen4x4, the model or the firmware)")
    p.add_argument("--since", default=d, metavar="DATE", help="runs started on or after DATE (ISO, e.g. 2026-12-01)")
    p.add_argument("--until", default=d, metavar="DATE", help="runs started before DATE")
    p.add_argument("--limit", type=int, default=argparse.SUPPRESS if suppress else 50, help="at most N rows (default 50)")


def store_url(args: argparse.Namespace) -> str:
    return getattr(args, "history", None) or os.environ.get(ENV) or DEFAULT_STORE


def _open(args: argparse.Namespace, *, create: bool) -> Store:
    url = store_url(args)
    if url.strip().lower() == "none":
        raise ValueError(f"the history store is turned off ({ENV}=none): pass --history URL")
    try:
        return open_store(url, create=create)
    except HistoryError as exc:
        raise ValueError(str(exc)) from None


def _date(raw: str | None, name: str) -> str | None:
    from pytest_nvme_ai.history.flatten import utc_iso

    if not raw:
        return None
    iso = utc_iso(raw)
    if iso is None:
        raise ValueError(f"--{name} {raw!r} is not a date: use ISO 8601, e.g. 2026-12-01 or 2026-12-01T08:00")
    return iso


def cli_history(args: argparse.Namespace) -> int:
    cmd = getattr(args, "history_command", None) or "list"
    if cmd == "import":
        return cli_import(args)
    if cmd == "changes":
        return cli_changes(args)
    return cli_list(args)


def cli_list(args: argparse.Namespace) -> int:
    store = _open(args, create=False)
    kw: dict[str, Any] = {
        "test": getattr(args, "test", None), "metric": getattr(args, "metric", None),
        "fingerprint": getattr(args, "fingerprint", None), "since": _date(getattr(args, "since", None), "since"),
        "until": _date(getattr(args, "until", None), "until"), "limit": getattr(args, "limit", 50)}
    try:
        if kw["test"] or kw["metric"]:
            rows: Sequence[Any] = store.metric_rows(**kw)
            if getattr(args, "json", False):
                print(json.dumps([r.__dict__ for r in rows], indent=1))
            else:
                _print_metric_rows(rows)
        else:
            rows = store.list_runs(**kw)
            if getattr(args, "json", False):
                print(json.dumps([r.__dict__ for r in rows], indent=1))
            else:
                _print_runs(rows)
        if not rows:
            print(f"no runs match in {store.display}", file=sys.stderr)
    finally:
        store.close()
    return 0


def _print_runs(rows: Sequence[Any]) -> None:
    table = [("run", "started (UTC)", "verdict", "failed", "tests", "runner", "commit", "profile",
              "device fingerprint")]
    for r in rows:
        table.append((r.run_id, r.started[:19].replace("T", " "), r.verdict, str(r.failed), str(r.tests), r.runner,
                      (r.commit or "—")[:12], r.profile or "—", ", ".join(r.fingerprints) or "—"))
    _print_table(table)


def _print_metric_rows(rows: Sequence[Any]) -> None:
    table = [("run", "started (UTC)", "status", "test", "metric", "value", "device fingerprint")]
    for r in rows:
        table.append((r.run_id, r.started[:19].replace("T", " "), r.status, r.test_key, r.metric,
                      fmt_value(r.value, r.unit), r.fingerprint))
    _print_table(table)


def _print_table(table: Sequence[Sequence[str]]) -> None:
    if len(table) == 1:
        return
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def fmt_value(v: float | None, unit: str | None) -> str:
    if v is None:
        return "—"
    unit = unit or ""
    for u, scale, name in (("B/s", 1e9, "GB/s"), ("B", 1e9, "GB"), ("ns", 1e3, "µs")):
        if unit == u and abs(v) >= scale / 10:
            return f"{v / scale:.4g} {name}"
    return f"{v:.4g} {unit}".strip()


def cli_import(args: argparse.Namespace) -> int:
    from pytest_nvme_ai.history.store import iter_results

    store = _open(args, create=True)
    added = skipped = 0
    try:
        for path, data in iter_results(args.results):
            if store.append(data, source=str(Path(path).resolve())):
                added += 1
                print(f"imported {data['run'].get('id')} from {path}")
            else:
                skipped += 1
                print(f"already stored {data['run'].get('id')} ({path})")
    finally:
        store.close()
    print(f"history: {added} run(s) imported, {skipped} already there, store {store.display}")
    return 0


def cli_changes(args: argparse.Namespace) -> int:
    from pytest_nvme_ai.history.changes import Settings, differences, find_changes

    store = _open(args, create=False)
    settings = Settings(min_change=args.min_change / 100.0, alpha=args.alpha)
    since, until = _date(getattr(args, "since", None), "since"), _date(getattr(args, "until", None), "until")
    found: list[dict[str, Any]] = []
    need = 2 * settings.min_size
    short: list[int] = []     # lengths of the series too short to test
    searched = 0
    try:
        keys = store.series_keys(test=getattr(args, "test", None), metric=getattr(args, "metric", None),
                                 drive_model=getattr(args, "model", None), runner=getattr(args, "runner", None))
        for key, n in keys:
            if n < need:
                short.append(n)
                continue
            pts = store.series(key)
            if since or until:
                pts = [p for p in pts if (not since or p.started >= since) and (not until or p.started < until)]
            fp_filter = (getattr(args, "fingerprint", None) or "").lower()
            if fp_filter and not any(fp_filter in p.fingerprint for p in pts):
                continue
            if len(pts) < need:
                short.append(len(pts))
                continue
            searched += 1
            unit, _better = store.unit_of(key)
            for c in find_changes(pts, settings):
                before = store.run_context(c.before.run_id, key.test_key)
                after = store.run_context(c.after.run_id, key.test_key)
                found.append({"series": key.__dict__, "points": len(pts), "index": c.index,
                              "run_before": c.before.run_id, "run_after": c.after.run_id,
                              "median_before": c.median_before, "median_after": c.median_after,
                              "relative_change": c.relative_change, "p_value": c.p_value, "unit": unit,
                              "before": before, "after": after, "differed": differences(before, after)})
    finally:
        store.close()
    if getattr(args, "json", False):
        print(json.dumps(found, indent=1, default=str))
        if short:
            print(too_short(short, need, searched), file=sys.stderr)
        return 0
    if not keys:
        print(f"no series match in {store.display}")
        return 0
    if not found and searched:
        print(f"no change points (at least {args.min_change:g}% and p < {args.alpha:g}) in {searched} series "
              f"of {store.display}")
    _print_changes(found)
    if short:
        print(too_short(short, need, searched))
    return 0


def too_short(lengths: Sequence[int], need: int, searched: int) -> str:
    """Why some series were not searched: a change needs `need // 2` runs on each side."""
    n = len(lengths)
    what = (f"none of the {n} series has enough runs" if not searched
            else f"{n} more series {'has' if n == 1 else 'have'} too few runs")
    return (f"{what} to look for change points: a change needs {need // 2} complete runs on each side "
            f"({need} in a series), the longest of these has {max(lengths)}; run the suite again or import "
            f"more results.json files (nvme-ai history import)")


def _print_changes(found: Sequence[dict[str, Any]]) -> None:
    for f in found:
        k = f["series"]
        print(f"{k['test_key']}  {k['metric']}  · drive {k['drive_model']} · runner {k['runner']} ({f['points']} runs)")
        print(f"  change at run {f['run_after']}: median {fmt_value(f['median_before'], f['unit'])} -> "
              f"{fmt_value(f['median_after'], f['unit'])} ({f['relative_change'] * 100:+.1f}%), "
              f"Welch t-test p={f['p_value']:.2g}")
        for side in ("before", "after"):
            ctx = f[side]
            print(f"    {side + ':':8} {ctx.get('run')}  {str(ctx.get('started') or '')[:19]}  "
                  f"commit {str(ctx.get('commit') or '—')[:12]}  deepspeed {ctx.get('deepspeed') or '—'}  "
                  f"torch {ctx.get('torch') or '—'}  kernel {ctx.get('kernel') or '—'}  "
                  f"firmware {ctx.get('firmware') or '—'}  link {ctx.get('pcie_link') or '—'}")
        print("    differed: " + ("; ".join(f["differed"]) or "nothing recorded (the drive or the machine itself)"))
