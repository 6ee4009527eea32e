"""View types of the report: results.json records as the page shows them.

Shared by the run page, every suite section and the compare page, so that a section module only
imports this (and `report.sections.base`), never the page that assembles the sections.
All reads go through `.get` with defaults: a page must render from any valid file.
"""
from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from pytest_nvme_ai.core.extras import InferenceExtra
from pytest_nvme_ai.core.metrics import CATALOG
from pytest_nvme_ai.report.fmt import as_list, as_map, fmt, fmt_delta, num, params_text, tail, tolerance_text

# Order of the verdict badges at the top; also the sort order of "needs attention".
# "unknown" (issue 23): the gate (window or A/B) cannot see a change of the tolerance's size; shown yellow.
STATUSES = ("regression", "error", "incomparable", "improvement", "unknown", "new", "pass", "skipped", "not-run",
            "unmeasured")
ATTENTION = ("regression", "error", "incomparable", "improvement", "unknown")


# ---- table cells ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    text: str
    css: str = ""
    href: str = ""
    title: str = ""


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    caption: str = ""
    numeric_from: int = 1    # columns at or after this index are right-aligned figures
    css: str = ""
    folded: bool = False     # rendered collapsed (details) under its caption


# ---- tests --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricRow:
    name: str
    now: str
    spread: str
    baseline: str
    delta: str
    tolerance: str
    verdict: str
    css: str
    note: str
    message: str = ""

    @property
    def delta_css(self) -> str:
        # Colour a delta only when it changed the verdict: a page of green "+0.4%" hides the one red cell.
        return self.css if self.verdict not in ("pass", "—") else ""


@dataclass
class TestView:
    """One test of results.json as the page shows it (`raw` keeps the record for suite sections)."""

    __test__ = False   # a name pytest would otherwise try to collect wherever it is imported

    index: int
    anchor: str
    nodeid: str
    suite: str
    target: str
    params: str
    outcome: str
    status: str
    duration: str
    metrics: list[MetricRow]
    links: list[Cell]
    longrepr: str
    log_tail: str
    run_outcome: str
    notes: list[str]
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def open(self) -> bool:
        return self.status in ("regression", "error")


def status_of(t: Mapping[str, Any]) -> str:
    """One word per test for the badges: skipped, the gate's verdict, or why there is none."""
    outcome = t.get("outcome")
    if outcome == "skipped":
        return "skipped"
    if outcome in ("not run", "interrupted"):
        return "not-run"   # an interrupted run's unreached tests: never counted as measured
    v = t.get("verdict")
    if v in STATUSES:
        return str(v)
    if outcome in ("failed", "error"):
        return "error"
    return "unmeasured"


def metric_order(names: Iterable[str]) -> list[str]:
    known = list(CATALOG)
    return sorted(names, key=lambda n: (known.index(n) if n in known else len(known), n))


def metric_value(t: Mapping[str, Any], name: str) -> float | None:
    return num(as_map(as_map(t.get("metrics")).get(name)).get("value"))


def metric_range(t: Mapping[str, Any], name: str) -> tuple[float | None, float | None]:
    m = as_map(as_map(t.get("metrics")).get(name))
    samples = [s for s in (num(x) for x in as_list(m.get("samples"))) if s is not None]
    return (min(samples), max(samples)) if samples else (None, None)


def comparison(t: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    return as_map(baseline_metrics(t).get(name))


def baseline_metrics(t: Mapping[str, Any]) -> Mapping[str, Any]:
    return as_map(as_map(t.get("baseline")).get("metrics"))


def verdict_label(c: Mapping[str, Any]) -> tuple[str, str]:
    """(text, css) of one metric's verdict; an ungated regression is shown, but muted."""
    v = str(c.get("verdict") or "—")
    if c and c.get("gated") is False and v not in ("pass", "—"):
        return f"{v} (not gated)", "v-muted"
    return v, f"v-{v}" if v in STATUSES else ""


def evidence(c: Mapping[str, Any]) -> str:
    """Short 'how it was decided' for a metric row; the gate's full sentence goes in the row's tooltip."""
    method, p = str(c.get("method") or ""), num(c.get("p_value"))
    if c.get("verdict") in ("new", "incomparable"):
        return str(c.get("message") or "")
    if p is not None:
        return f"{'Mann-Whitney U ' if method == 'mann-whitney-u' else ''}p={p:.3g}"
    return {"tolerance-only": "tolerance only (one sample)", "none": "",
            "session-window": "drift between sessions"}.get(method, method)


def metric_rows(t: Mapping[str, Any]) -> list[MetricRow]:
    metrics = as_map(t.get("metrics"))
    base = baseline_metrics(t)
    rows = []
    for name in metric_order(set(metrics) | set(base)):
        m = as_map(metrics.get(name))
        c = comparison(t, name)
        unit = str(m.get("unit") or c.get("unit") or "")
        samples = [s for s in (num(x) for x in as_list(m.get("samples"))) if s is not None]
        spread = ""
        value = num(m.get("value"))
        if len(samples) > 1 and value:
            spread = f"n={len(samples)}, ±{(max(samples) - min(samples)) / abs(value) * 50:.1f}%"
        elif samples:
            spread = f"n={len(samples)}"
        text, css = verdict_label(c)
        rows.append(MetricRow(
            name=name, now=fmt(m.get("value", c.get("now")), unit), spread=spread,
            baseline=fmt(c.get("baseline"), unit), delta=fmt_delta(c.get("delta")),
            tolerance=tolerance_text(c.get("tolerance"), c.get("min_detectable_change"), c.get("blind")), verdict=text, css=css, note=evidence(c),
            message=str(c.get("message") or ""),
        ))
    return rows


def artifact_href(rel: str, out_dir: Path, run_dir: Path | None) -> tuple[str, bool]:
    """Relative link from the page to an artifact, and whether the file is missing.

    The path is percent-quoted so a hostile artifact name can only ever be a
    relative path, never a `javascript:` or `http:` URL.
    """
    p = Path(rel)
    root = run_dir if run_dir is not None else out_dir
    absolute = p if p.is_absolute() else root / p
    missing = run_dir is not None and not absolute.exists()
    try:
        link = os.path.relpath(absolute, out_dir)
    except ValueError:  # different drive (Windows): keep the stored path
        link = rel
    return urllib.parse.quote(link.replace(os.sep, "/")), missing


def view_of(index: int, t: Mapping[str, Any], out_dir: Path, run_dir: Path | None) -> TestView:
    extra = as_map(t.get("extra"))
    links = []
    for label, rel in as_map(t.get("artifacts")).items():
        href, missing = artifact_href(str(rel), out_dir, run_dir)
        links.append(Cell(str(label), "missing" if missing else "", href,
                          f"{rel} (not found next to the report)" if missing else str(rel)))
    dur = num(t.get("duration"))
    return TestView(
        index=index, anchor=f"t{index}", nodeid=str(t.get("nodeid") or t.get("key") or f"test {index}"),
        suite=str(t.get("suite") or "other"), target=str(t.get("target_label") or ""),
        params=params_text(as_map(t.get("params"))), outcome=str(t.get("outcome") or "unknown"),
        status=status_of(t), duration=f"{dur:.1f} s" if dur is not None else "—",
        metrics=metric_rows(t), links=links, longrepr=tail(t.get("longrepr")),
        log_tail=tail(extra.get(InferenceExtra.LOG_TAIL)), run_outcome=str(extra.get(InferenceExtra.RUN_OUTCOME) or ""),
        notes=[str(n) for n in as_list(t.get("notes"))], raw=t,
    )


def status_cell(v: TestView) -> Cell:
    return Cell(v.status, f"v-{v.status}", f"#{v.anchor}", v.nodeid)
