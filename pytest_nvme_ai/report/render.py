"""Run page: results.json -> view model -> one self-contained HTML document.

Templates only loop and print: every figure is formatted here, so the page
reads the same in every section and a template cannot invent a number. All
reads of results.json go through `.get` with defaults because a page must
render from any valid file (a partial run, a suite missing, an old plugin).
"""
from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from pytest_nvme_ai.core.metrics import CATALOG
from pytest_nvme_ai.report.fmt import as_list, as_map, first_line, fmt, fmt_delta, num, params_text, tail, tolerance_text

# Order of the verdict badges at the top; also the sort order of "needs attention".
STATUSES = ("regression", "error", "incomparable", "improvement", "new", "pass", "skipped", "not-run", "unmeasured")
ATTENTION = ("regression", "error", "incomparable", "improvement")


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
    return {"tolerance-only": "tolerance only (one sample)", "none": ""}.get(method, method)


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
            tolerance=tolerance_text(c.get("tolerance")), verdict=text, css=css, note=evidence(c),
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
        log_tail=tail(extra.get("log_tail")), run_outcome=str(extra.get("run_outcome") or ""),
        notes=[str(n) for n in as_list(t.get("notes"))], raw=t,
    )


def status_cell(v: TestView) -> Cell:
    return Cell(v.status, f"v-{v.status}", f"#{v.anchor}", v.nodeid)


# ---- verdict at a glance --------------------------------------------------------------------
@dataclass(frozen=True)
class Attention:
    status: str
    test: TestView
    metric: str
    baseline: str
    now: str
    delta: str
    note: str


def counts(views: Iterable[TestView]) -> dict[str, int]:
    out = {s: 0 for s in STATUSES}
    for v in views:
        out[v.status] = out.get(v.status, 0) + 1
    return out


# run.status values other than "complete": the banner says so before any verdict.
RUN_STATUS_BANNER = {"interrupted": "INTERRUPTED", "incomplete": "INCOMPLETE", "error": "RUN ERROR"}


def overall(c: Mapping[str, int], total: int, run_status: str | None = None) -> tuple[str, str]:
    if run_status in RUN_STATUS_BANNER:
        # An interrupted run never looks green, whatever the tests that did run said.
        return RUN_STATUS_BANNER[str(run_status)], "v-error"
    if c.get("regression"):
        return "REGRESSION", "v-regression"
    if c.get("error"):
        return "ERRORS", "v-error"
    if total == 0 or c.get("skipped") == total:
        return "NOTHING MEASURED", "v-incomparable"
    if c.get("new") and not c.get("pass") and not c.get("improvement"):
        # Nothing was compared: "PASS" would claim a gate that did not happen.
        return "NO BASELINE YET", "v-new"
    return "PASS", "v-pass"


def attention(views: Iterable[TestView]) -> list[Attention]:
    """Metric rows that need a human: regressions first, worst delta first."""
    rows: list[tuple[int, float, Attention]] = []
    for v in views:
        found = False
        for name, c in baseline_metrics(v.raw).items():
            if not isinstance(c, Mapping) or c.get("verdict") not in ATTENTION or c.get("gated") is False:
                continue
            found = True
            unit = str(c.get("unit") or "")
            d = num(c.get("delta")) or 0.0
            rows.append((ATTENTION.index(str(c["verdict"])), -abs(d), Attention(
                str(c["verdict"]), v, name, fmt(c.get("baseline"), unit), fmt(c.get("now"), unit),
                fmt_delta(c.get("delta")), str(c.get("message") or ""))))
        if not found and v.status in ATTENTION:
            note = first_line(v.raw.get("longrepr")) or (f"run outcome: {v.run_outcome}" if v.run_outcome else "")
            if v.run_outcome and v.run_outcome != "ok" and note and v.run_outcome not in note:
                note = f"{v.run_outcome}: {note}"
            rows.append((ATTENTION.index(v.status), 0.0, Attention(v.status, v, "", "", "", "", note)))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows]


# ---- page -----------------------------------------------------------------------------------
def run_info(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    run = as_map(data.get("run"))
    commit = as_map(run.get("commit"))
    cid = str(commit.get("id") or "")[:12]
    commit_text = " ".join(x for x in (cid, f"({commit['branch']})" if commit.get("branch") else "",
                                       "dirty" if commit.get("dirty") else "") if x) or "—"
    tol = num(run.get("tolerance"))
    status = str(run.get("status") or "—")
    return [
        ("Run", str(run.get("id") or "—")),
        ("Status", status + (f" ({run['status_detail']})" if run.get("status_detail") else "")),
        ("Profile", str(run.get("profile") or "—")),
        ("Started", str(run.get("started") or "—")),
        ("Finished", str(run.get("finished") or "—")),
        ("Tolerance", f"±{tol:g}%" if tol is not None else "—"),
        ("Commit", commit_text),
        ("Exit status", str(run.get("exitstatus", "—"))),
        ("Plugin", str(run.get("plugin_version") or "—")),
        ("Command", " ".join(str(a) for a in as_list(run.get("argv"))) or "—"),
    ]


def run_notices(data: Mapping[str, Any]) -> list[str]:
    """Lines shown under the banner: how the run ended, and dead runs' leftovers in the targets."""
    run = as_map(data.get("run"))
    out = []
    if run.get("status") not in (None, "complete"):
        out.append(f"Run {run.get('status')}: {run.get('status_detail') or ''}".rstrip(": "))
    for t in as_list(data.get("targets")):
        left = [str(x) for x in as_list(as_map(t).get("leftovers"))]
        if left:
            out.append(f"Leftover private directories of runs that died without cleaning up in "
                       f"{as_map(t).get('path')}: {', '.join(left)}")
    return out


def build_tests(data: Mapping[str, Any], out_dir: Path, run_dir: Path | None) -> list[TestView]:
    return [view_of(i, t, out_dir, run_dir) for i, t in enumerate(as_list(data.get("tests")))
            if isinstance(t, Mapping)]


def environment(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    from pytest_nvme_ai.report.drives import environment_rows

    return environment_rows(as_map(data.get("environment")))


def run_context(data: Mapping[str, Any], out: Path, run_dir: Path | None) -> dict[str, Any]:
    from pytest_nvme_ai.report.drives import drive_view
    from pytest_nvme_ai.report.sections import build_sections

    views = build_tests(data, out.parent, run_dir)
    c = counts(views)
    run = as_map(data.get("run"))
    verdict, verdict_css = overall(c, len(views), str(run.get("status") or "") or None)
    targets = as_list(data.get("targets"))
    return {
        "run_notices": run_notices(data),
        "title": f"pytest-nvme-ai run {run.get('id') or ''}".strip(),
        "verdict": verdict, "verdict_css": verdict_css, "counts": c, "total": len(views),
        "attention": attention(views), "run_info": run_info(data),
        "drives": [drive_view(t) for t in targets if isinstance(t, Mapping)],
        "environment": environment(data), "sections": build_sections(views),
    }


def render_page(template: str, context: Mapping[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,                  # every string from results.json is untrusted text
        undefined=jinja2.StrictUndefined,  # a template typo fails the tests, not silently blanks a cell
        trim_blocks=True, lstrip_blocks=True,
    )
    return env.get_template(template).render(**context)
