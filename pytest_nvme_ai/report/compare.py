"""Compare page: two runs side by side (two drives, two PCIe generations, before/after an update).

Tests are matched by `key` (the nodeid without the target component) and
params, so the same suite run against two different directories lines up. When
a run holds several targets, tests with the same key are paired by target
label first, then in order.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from pytest_nvme_ai.report import charts
from pytest_nvme_ai.report.drives import drive_compare_rows, environment_rows
from pytest_nvme_ai.core.text import size_or_none
from pytest_nvme_ai.report.fmt import as_list, as_map, fmt, fmt_ratio, fmt_size, num
from pytest_nvme_ai.report.render import build_tests, run_info
from pytest_nvme_ai.report.sections import SUITE_TITLES
from pytest_nvme_ai.report.sections.base import Chart, draw, param, sort_key
from pytest_nvme_ai.report.view import Cell, Table, TestView, metric_order, metric_value

SUITE_ORDER = {name: i for i, name in enumerate(SUITE_TITLES)}
T = TypeVar("T")
SHORT = {"iodepth": "QD", "queue_depth": "QD", "numjobs": "jobs ", "intra_op_parallelism": "parallelism "}


@dataclass
class Pair:
    a: TestView | None
    b: TestView | None

    @property
    def any(self) -> TestView:
        return self.a or self.b  # type: ignore[return-value]


@dataclass
class CompareSection:
    id: str
    title: str
    charts: list[Chart] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


def match_key(v: TestView) -> str:
    params = as_map(v.raw.get("params"))
    return str(v.raw.get("key") or v.nodeid) + "|" + json.dumps(params, sort_keys=True, default=str)


def _pair(a: Sequence[T], b: Sequence[T], key: Callable[[T], str],
          target: Callable[[T], Any]) -> list[tuple[T | None, T | None]]:
    """Match by key; among several candidates the one on the same target first, then in order."""
    by_key: dict[str, list[T]] = {}
    for v in b:
        by_key.setdefault(key(v), []).append(v)
    pairs: list[tuple[T | None, T | None]] = []
    for va in a:
        cands = by_key.get(key(va), [])
        pick = next((vb for vb in cands if target(vb) == target(va)), cands[0] if cands else None)
        if pick is not None:
            cands.remove(pick)
        pairs.append((va, pick))
    pairs.extend((None, vb) for vs in by_key.values() for vb in vs)
    return pairs


def pair_tests(a: list[TestView], b: list[TestView]) -> list[Pair]:
    return [Pair(x, y) for x, y in _pair(a, b, match_key, lambda v: v.target)]


def change(ratio: float | None, better: str, tol_pct: float) -> tuple[str, str]:
    """(text, css) for B relative to A, counted only beyond the tolerance, in the metric's direction."""
    if ratio is None:
        return "—", ""
    rel = ratio - 1.0
    if abs(rel) * 100 <= tol_pct + 1e-9:   # exactly at the tolerance is within it, despite float rounding
        return "≈ same", "muted"
    good = rel > 0 if better == "higher" else rel < 0
    return ("better", "v-improvement") if good else ("worse", "v-regression")


def metric_rows(p: Pair, tol: float, *, only_gated: bool) -> list[list[Cell]]:
    ma = as_map(p.a.raw.get("metrics")) if p.a else {}
    mb = as_map(p.b.raw.get("metrics")) if p.b else {}
    rows = []
    for name in metric_order(set(ma) | set(mb)):
        xa, xb = as_map(ma.get(name)), as_map(mb.get(name))
        if only_gated and not is_gated(xa, xb):
            continue
        unit = str(xa.get("unit") or xb.get("unit") or "")
        va, vb = num(xa.get("value")), num(xb.get("value"))
        ratio = vb / va if va and vb is not None else None
        text, css = change(ratio, str(xa.get("better") or xb.get("better") or "higher"), tol)
        rows.append([Cell(name), Cell(fmt(va, unit)), Cell(fmt(vb, unit)), Cell(fmt_ratio(ratio), css),
                     Cell(text, css)])
    return rows


def tolerance_of(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """The wider of both runs' tolerances (percent): a change inside either run's noise allowance is no change."""
    return max(num(as_map(a.get("run")).get("tolerance")) or 10.0, num(as_map(b.get("run")).get("tolerance")) or 10.0)


def is_gated(xa: Mapping[str, Any], xb: Mapping[str, Any]) -> bool:
    """Gated unless both runs mark the metric report-only (what the gated table of the page shows)."""
    return not (xa.get("gated") is False and xb.get("gated") is False)


def verdict_cell(v: TestView | None) -> Cell:
    return Cell(v.status, f"v-{v.status}") if v else Cell("absent", "v-skipped")


def pair_table(title: str, pairs: list[Pair], tol: float, *, only_gated: bool) -> Table:
    """Rows of (test, metric); the test's cells only on its first row, which carries a group rule."""
    rows: list[list[Cell]] = []
    for p in pairs:
        name = p.any.nodeid if p.a is None or p.b is None else str(p.any.raw.get("key") or p.any.nodeid)
        head = [Cell(name), verdict_cell(p.a), verdict_cell(p.b)]
        mrows = metric_rows(p, tol, only_gated=only_gated) or [[Cell("—")] * 4 + [Cell("no metrics")]]
        for i, m in enumerate(mrows):
            cells = head + m if i == 0 else [Cell("")] * 3 + m
            rows.append([replace(c, css=f"{c.css} grp".strip()) for c in cells] if i == 0 else cells)
    return Table(["test", "A", "B", "metric", "A", "B", "B / A", "change"], rows, title, numeric_from=4,
                 css="pairs", folded=not only_gated)


def ratio_chart(title: str, pairs: list[Pair], metric: str, size_param: tuple[str, ...], line_params: tuple[str, ...],
                la: str, lb: str) -> Chart:
    """B/A of `metric` vs block size, one line per queue depth / job count: how the whole curve moved."""
    lines: dict[str, list[tuple[float, float]]] = {}
    order: dict[str, tuple[Any, ...]] = {}
    for p in pairs:
        if p.a is None or p.b is None:
            continue
        x = size_or_none(param(p.a, *size_param))
        va, vb = metric_value(p.a.raw, metric), metric_value(p.b.raw, metric)
        if x is None or not va or vb is None:
            continue
        label = " × ".join(f"{SHORT.get(n, n)}{param(p.a, n)}" for n in line_params
                           if param(p.a, n) is not None) or metric
        lines.setdefault(label, []).append((float(x), vb / va))
        order[label] = tuple(sort_key(param(p.a, n)) for n in line_params)
    series = [charts.Series(k, [x for x, _ in sorted(v)], [y for _, y in sorted(v)])
              for k, v in sorted(lines.items(), key=lambda kv: order[kv[0]])]
    ticks = {x: fmt_size(int(x)) for x in sorted({x for v in lines.values() for x, _ in v})}
    panel = charts.Panel(title, series, "block size", f"{lb} / {la}", ticks, refline=(1.0, "equal"))
    return draw(f"{metric}: {lb} relative to {la} (above 1: {lb} reads faster)", charts.line_chart, [panel], cols=1,
                height=2.8)


def zi_chart(pairs: list[Pair], la: str, lb: str) -> Chart:
    groups: dict[str, list[charts.Series]] = {}
    for side, label, dashed in (("a", la, False), ("b", lb, True)):
        pts: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for p in pairs:
            v = getattr(p, side)
            y = metric_value(v.raw, "total_throughput") if v else None
            x = num(param(v, "batch_size")) if v else None
            if v is None or y is None or x is None:
                continue
            pts.setdefault((str(param(v, "model")), str(param(v, "offload") or "none")), []).append((x, y))
        for (model, off), xy in sorted(pts.items()):
            xy.sort()
            groups.setdefault(model, []).append(charts.Series(
                f"{off} · {label}", [x for x, _ in xy], [y for _, y in xy], colour=charts.NAMED_COLOURS.get(off),
                dashed=dashed, marker="o" if not dashed else "s"))
    panels = [charts.Panel(m, s, "batch size", "tokens/s (total)",
                           {x: f"{x:g}" for x in sorted({x for ser in s for x in ser.x})}) for m, s in groups.items()]
    return draw(f"Total throughput vs batch size: {la} solid, {lb} dashed", charts.line_chart, panels, height=3.2)


def side_by_side(rows_a: list[tuple[str, str, str]], rows_b: list[tuple[str, str, str]]) -> list[list[Cell]]:
    """Zip two field lists by name; fields that differ are highlighted."""
    b = {name: (value, css) for name, value, css in rows_b}
    names = list(dict.fromkeys([r[0] for r in rows_a] + [r[0] for r in rows_b]))
    a = {name: (value, css) for name, value, css in rows_a}
    out = []
    for n in names:
        va, ca = a.get(n, ("—", ""))
        vb, cb = b.get(n, ("—", ""))
        diff = "b" if va != vb else ""
        out.append([Cell(n, diff), Cell(va, " ".join(x for x in (ca, diff) if x)),
                    Cell(vb, " ".join(x for x in (cb, diff) if x))])
    return out


def drive_tables(a: Mapping[str, Any], b: Mapping[str, Any], la: str, lb: str) -> list[Table]:
    ta = [t for t in as_list(a.get("targets")) if isinstance(t, Mapping)]
    tb = [t for t in as_list(b.get("targets")) if isinstance(t, Mapping)]
    tables = []
    for i in range(max(len(ta), len(tb), 1)):
        ra = drive_compare_rows(ta[i]) if i < len(ta) else []
        rb = drive_compare_rows(tb[i]) if i < len(tb) else []
        tables.append(Table(["", la, lb], side_by_side(ra, rb), f"Drive {i + 1}", numeric_from=99, css="side"))
    env = side_by_side([(n, v, "") for n, v in environment_rows(as_map(a.get("environment")))],
                       [(n, v, "") for n, v in environment_rows(as_map(b.get("environment")))])
    tables.append(Table(["", la, lb], env, "Environment", numeric_from=99, css="side"))
    return tables


def default_labels(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[str, str]:
    ia, ib = str(as_map(a.get("run")).get("id") or "A"), str(as_map(b.get("run")).get("id") or "B")
    return (ia, ib) if ia != ib else (f"A {ia}", f"B {ib}")


def compare_context(a: Mapping[str, Any], b: Mapping[str, Any], out: Path, *, labels: tuple[str, str] | None,
                    run_dirs: tuple[Path | None, Path | None]) -> dict[str, Any]:
    la, lb = labels or default_labels(a, b)
    pairs = pair_tests(build_tests(a, out.parent, run_dirs[0]), build_tests(b, out.parent, run_dirs[1]))
    tol = tolerance_of(a, b)
    suites: dict[str, list[Pair]] = {}
    for p in pairs:
        suites.setdefault(p.any.suite, []).append(p)
    sections: list[CompareSection] = []
    for suite, ps in sorted(suites.items(), key=lambda kv: (SUITE_ORDER.get(kv[0], len(SUITE_ORDER)), kv[0])):
        sec = CompareSection(f"s-{len(sections)}", SUITE_TITLES.get(suite, f"Suite: {suite}"))
        if suite == "seq_read":
            sec.charts.append(ratio_chart("Read bandwidth ratio vs block size", ps, "bw", ("bs", "block_size"),
                                          ("iodepth", "numjobs"), la, lb))
        elif suite == "aio_read":
            sec.charts.append(ratio_chart("aio bandwidth ratio vs block size", ps, "bw", ("block_size", "bs"),
                                          ("queue_depth", "intra_op_parallelism"), la, lb))
        elif suite == "zero_inference":
            sec.charts.append(zi_chart(ps, la, lb))
        ps.sort(key=lambda p: p.a is None or p.b is None)   # stable: run A's order, unmatched tests last
        sec.tables.append(pair_table(f"Gated metrics (A = {la}, B = {lb})", ps, tol, only_gated=True))
        sec.tables.append(pair_table(f"All metrics, including report-only ones ({len(ps)} tests)", ps, tol,
                                     only_gated=False))
        sections.append(sec)
    summary = {"matched": sum(1 for p in pairs if p.a and p.b), f"only in {la}": sum(1 for p in pairs if not p.b),
               f"only in {lb}": sum(1 for p in pairs if not p.a)}
    # Counted on the gated tables: those are the metrics a regression gate would act on.
    gated_rows = [r for s in sections for t in s.tables if not t.folded for r in t.rows]
    worse = sum(1 for r in gated_rows if r[-1].text == "worse")
    better = sum(1 for r in gated_rows if r[-1].text == "better")
    return {
        "title": f"pytest-nvme-ai compare: {la} vs {lb}", "la": la, "lb": lb, "tolerance": f"±{tol:g}%",
        "summary": summary, "worse": worse, "better": better,
        "run_rows": side_by_side([(n, v, "") for n, v in run_info(a)], [(n, v, "") for n, v in run_info(b)]),
        "drive_tables": drive_tables(a, b, la, lb), "sections": sections,
    }


# ---- the comparison as data: `nvme-ai compare --format text|json` and `--exit-code` -------------------
CHANGE_WORDS = {"better": "better", "worse": "worse", "≈ same": "same", "—": "not compared"}


@dataclass(frozen=True)
class MetricChange:
    """One metric of one matched test: B relative to A, judged against the tolerance in the metric's direction."""

    test: str
    metric: str
    unit: str
    better: str
    gated: bool
    a: float | None
    b: float | None
    ratio: float | None
    change: str           # better | worse | same | not compared (a side has no value)

    def to_json(self) -> dict[str, Any]:
        return {"test": self.test, "metric": self.metric, "unit": self.unit, "better": self.better,
                "gated": self.gated, "a": self.a, "b": self.b, "ratio": self.ratio, "change": self.change}


@dataclass(frozen=True)
class Comparison:
    label_a: str
    label_b: str
    tolerance: float
    matched: int
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]
    changes: tuple[MetricChange, ...]

    def count(self, change: str, *, gated: bool = True) -> int:
        return sum(1 for c in self.changes if c.gated == gated and c.change == change)

    @property
    def worse(self) -> tuple[MetricChange, ...]:
        """Gated metrics that got worse beyond the tolerance: what `--exit-code` acts on."""
        return tuple(c for c in self.changes if c.gated and c.change == "worse")

    def to_json(self) -> dict[str, Any]:
        counts = {g: {w: self.count(w, gated=g == "gated") for w in CHANGE_WORDS.values()}
                  for g in ("gated", "report_only")}
        return {"a": self.label_a, "b": self.label_b, "tolerance_pct": self.tolerance, "matched": self.matched,
                "only_in_a": list(self.only_a), "only_in_b": list(self.only_b), "counts": counts,
                "worse": len(self.worse), "changes": [c.to_json() for c in self.changes]}


def _record_key(t: Mapping[str, Any]) -> str:
    return str(t.get("key") or t.get("nodeid")) + "|" + json.dumps(as_map(t.get("params")), sort_keys=True, default=str)


def _metric_changes(test: str, ta: Mapping[str, Any], tb: Mapping[str, Any], tol: float) -> list[MetricChange]:
    ma, mb = as_map(ta.get("metrics")), as_map(tb.get("metrics"))
    out = []
    for name in metric_order(set(ma) | set(mb)):
        xa, xb = as_map(ma.get(name)), as_map(mb.get(name))
        va, vb = num(xa.get("value")), num(xb.get("value"))
        ratio = vb / va if va and vb is not None else None
        better = str(xa.get("better") or xb.get("better") or "higher")
        text, _css = change(ratio, better, tol)
        out.append(MetricChange(test, name, str(xa.get("unit") or xb.get("unit") or ""), better, is_gated(xa, xb),
                                va, vb, ratio, CHANGE_WORDS[text]))
    return out


def compare_runs(a: Mapping[str, Any], b: Mapping[str, Any], labels: tuple[str, str] | None = None) -> Comparison:
    """The same pairing and the same rule as the HTML page, as data (no page is rendered)."""
    la, lb = labels or default_labels(a, b)
    tol = tolerance_of(a, b)
    tests_a = [t for t in as_list(a.get("tests")) if isinstance(t, Mapping)]
    tests_b = [t for t in as_list(b.get("tests")) if isinstance(t, Mapping)]
    changes: list[MetricChange] = []
    only_a: list[str] = []
    only_b: list[str] = []
    matched = 0
    for ta, tb in _pair(tests_a, tests_b, _record_key, lambda t: t.get("target_label")):
        if ta is None or tb is None:
            (only_b if ta is None else only_a).append(str((ta or tb or {}).get("nodeid")))
            continue
        matched += 1
        changes.extend(_metric_changes(str(ta.get("key") or ta.get("nodeid")), ta, tb, tol))
    return Comparison(la, lb, tol, matched, tuple(only_a), tuple(only_b), tuple(changes))


def _value(v: float | None, unit: str) -> str:
    from pytest_nvme_ai.core.metrics import format_value

    return "—" if v is None else format_value(v, unit)


def compare_text(c: Comparison, *, listed: int = 20) -> str:
    """What a CI log shows: the counts, then each gated metric that changed, worst first."""
    lines = [f"compare A = {c.label_a}  B = {c.label_b}",
             f"tolerance ±{c.tolerance:g}% (a change within it counts as the same)",
             f"tests: {c.matched} matched, {len(c.only_a)} only in A, {len(c.only_b)} only in B",
             "gated metrics: " + ", ".join(f"{c.count(w)} {w}" for w in CHANGE_WORDS.values()),
             "report-only metrics (never counted by --exit-code): "
             + ", ".join(f"{c.count(w, gated=False)} {w}" for w in ("worse", "better"))]
    for word in ("worse", "better"):
        rows = sorted((m for m in c.changes if m.gated and m.change == word),
                      key=lambda m: abs(math.log(m.ratio)) if m.ratio and m.ratio > 0 else 0.0, reverse=True)
        if not rows:
            continue
        lines.append(f"{word.upper()} (gated, beyond ±{c.tolerance:g}%):")
        lines.extend(f"  {m.test}  {m.metric}  {_value(m.a, m.unit)} -> {_value(m.b, m.unit)}  "
                     f"{fmt_ratio(m.ratio)} ({m.better} is better)" for m in rows[:listed])
        if len(rows) > listed:
            lines.append(f"  ... and {len(rows) - listed} more (--format json lists all)")
    for side, ids in (("A", c.only_a), ("B", c.only_b)):
        if ids:
            lines.append(f"only in {side} (not compared): " + ", ".join(ids[:5])
                         + (f" and {len(ids) - 5} more" if len(ids) > 5 else ""))
    return "\n".join(lines)


def cli_compare(args: Any) -> int:
    """`nvme-ai compare A B [--format text|json|html] [-o FILE] [--exit-code]`.

    Without --format: HTML when -o is given (as before), else text on stdout. --exit-code returns 1 when a
    gated metric got worse beyond the tolerance and 0 otherwise, as `git diff --exit-code` does."""
    from pytest_nvme_ai.core.fsutil import atomic_write_text
    from pytest_nvme_ai.core.results import load_results, results_path

    pa, pb = results_path(args.a), results_path(args.b)
    a, b = load_results(pa), load_results(pb)
    labels = (str(args.labels[0]), str(args.labels[1])) if getattr(args, "labels", None) else None
    out = Path(args.output) if getattr(args, "output", None) else None
    fmt_ = getattr(args, "format", None) or ("html" if out is not None else "text")
    result = compare_runs(a, b, labels)
    if fmt_ == "html":
        from pytest_nvme_ai.report.render import render_page

        out = out or Path("compare.html")   # what report.render_compare does (importing it would be a cycle)
        atomic_write_text(out, render_page("compare.j2", compare_context(a, b, out, labels=labels,
                                                                        run_dirs=(pa.parent, pb.parent))))
        print(f"compare: {out} ({len(result.worse)} gated metric(s) worse beyond ±{result.tolerance:g}%)")
    else:
        text = json.dumps(result.to_json(), indent=1) if fmt_ == "json" else compare_text(result)
        if out is None:
            print(text)
        else:
            atomic_write_text(out, text + "\n")
            print(f"compare: {out}", file=sys.stderr)
    if getattr(args, "exit_code", False) and result.worse:
        print(f"compare: {len(result.worse)} gated metric(s) worse beyond ±{result.tolerance:g}%: exit 1",
              file=sys.stderr)
        return 1
    return 0
