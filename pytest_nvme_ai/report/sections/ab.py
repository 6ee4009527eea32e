"""The A/B section of the run page (issue 23): what two arms measured side by side in one session.

Not a suite section (no SECTION: it is not picked up per suite); render.py puts it first when any test
carries an `ab` record. It shows, per test and decided metric, the ratio B/A with its interval against
the ±tolerance band (a forest plot, log scale), the sequence of per-pair ratios, and the two arms side by
side. The SVGs are drawn here by hand: a few lines and boxes, no matplotlib, no script.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from pytest_nvme_ai.report.fmt import as_list, as_map, num
from pytest_nvme_ai.report.sections.base import Card, Section, draw
from pytest_nvme_ai.report.view import Cell, Table, TestView

COLOURS = {"worse": "#b91c1c", "better": "#047857", "same": "#15803d", "unknown": "#a16207"}
ARM_ROWS = (("target", "target"), ("data file", "data_file"), ("fio", "fio"), ("fio version", "fio_version"),
            ("environment", "env"), ("read cap", "read_cap"), ("not applied", "not_applied"))


@dataclass(frozen=True)
class Row:
    """One forest-plot row: a test's decided metric."""

    label: str
    metric: str
    ratio: float | None
    lo: float | None
    hi: float | None        # None: unbounded
    tolerance: float
    verdict: str
    pairs: int
    ratios: tuple[float, ...]    # B/A per pair, in order


def rows_of(views: Sequence[TestView]) -> list[Row]:
    out = []
    for v in views:
        ab = as_map(v.raw.get("ab"))
        points = as_list(ab.get("points"))
        for p in points:
            p = as_map(p)
            for name, d in as_map(p.get("metrics")).items():
                d = as_map(d)
                ivl = as_list(d.get("interval")) + [None, None]
                pairs = [as_map(x) for x in as_list(p.get("pairs"))]
                ratios = []
                for pr in pairs:
                    a = num(as_map(as_map(pr.get("values")).get("A")).get(name))
                    b = num(as_map(as_map(pr.get("values")).get("B")).get(name))
                    if a and b and a > 0 and b > 0:
                        ratios.append(b / a)
                label = v.nodeid + (f" [{p.get('label')}]" if len(points) > 1 else "")
                out.append(Row(label, str(name), num(d.get("ratio")), num(ivl[0]), num(ivl[1]),
                               num(d.get("tolerance")) or 10.0, str(d.get("verdict") or "unknown"),
                               int(num(d.get("pairs")) or len(pairs)), tuple(ratios)))
    return out


def _x(r: float, lo: float, hi: float, left: float, width: float) -> float:
    return left + (math.log(r) - math.log(lo)) / (math.log(hi) - math.log(lo)) * width


def forest_svg(rows: Sequence[Row]) -> str:
    """Ratio B/A and its interval per row, on a log axis, against the ±tolerance band of each row."""
    finite = [x for r in rows for x in (r.ratio, r.lo, r.hi, 1 - r.tolerance / 100, 1 + r.tolerance / 100)
              if x is not None and x > 0]
    lo, hi = min(finite + [0.5]) * 0.9, max(finite + [1.5]) * 1.1
    left, width, row_h, top = 330.0, 470.0, 26.0, 24.0
    h = top + row_h * len(rows) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {left + width + 110:.0f} {h:.0f}" '
             f'width="100%" role="img" aria-label="A/B forest plot" font-family="sans-serif" font-size="11">']
    x1 = _x(1.0, lo, hi, left, width)
    parts.append(f'<line x1="{x1:.1f}" y1="{top - 8}" x2="{x1:.1f}" y2="{h - 24:.1f}" stroke="#475569" '
                 f'stroke-dasharray="3,3"/>')
    for tick in (0.25, 0.5, 0.7, 0.9, 1.0, 1.1, 1.5, 2.0, 4.0):
        if lo <= tick <= hi:
            x = _x(tick, lo, hi, left, width)
            parts.append(f'<text x="{x:.1f}" y="{h - 8:.1f}" text-anchor="middle" fill="#475569">{tick:g}</text>')
    parts.append(f'<text x="{left + width / 2:.0f}" y="12" text-anchor="middle" fill="#334155">'
                 f'B/A (log scale); shaded: ±tolerance; dashed: no change</text>')
    for i, r in enumerate(rows):
        y = top + i * row_h + row_h / 2
        bl, bh = _x(max(1 - r.tolerance / 100, lo), lo, hi, left, width), _x(min(1 + r.tolerance / 100, hi), lo, hi,
                                                                            left, width)
        parts.append(f'<rect x="{bl:.1f}" y="{y - 9:.1f}" width="{bh - bl:.1f}" height="18" fill="#dcfce7"/>')
        colour = COLOURS.get(r.verdict, "#a16207")
        text = html.escape(f"{_short(r.label)} · {r.metric}")
        parts.append(f'<text x="{left - 8:.0f}" y="{y + 4:.1f}" text-anchor="end" fill="#111827">{text}</text>')
        if r.ratio is not None:
            a = _x(max(r.lo or lo, lo), lo, hi, left, width)
            b = _x(min(r.hi, hi), lo, hi, left, width) if r.hi is not None else left + width
            parts.append(f'<line x1="{a:.1f}" y1="{y:.1f}" x2="{b:.1f}" y2="{y:.1f}" stroke="{colour}" '
                         f'stroke-width="2"/>')
            if r.hi is None:
                parts.append(f'<text x="{b - 2:.1f}" y="{y + 4:.1f}" fill="{colour}">▶</text>')
            parts.append(f'<circle cx="{_x(min(max(r.ratio, lo), hi), lo, hi, left, width):.1f}" cy="{y:.1f}" '
                         f'r="4" fill="{colour}"/>')
        parts.append(f'<text x="{left + width + 8:.0f}" y="{y + 4:.1f}" fill="{colour}">'
                     f'{html.escape(r.verdict)} ({r.pairs})</text>')
    parts.append("</svg>")
    return "".join(parts)


def sequence_svg(rows: Sequence[Row]) -> str:
    """Per row, the B/A ratio of each pair in order (dots) against the band: how the evidence came in."""
    left, width, panel_h = 330.0, 470.0, 60.0
    h = panel_h * len(rows) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {left + width + 110:.0f} {h:.0f}" '
             f'width="100%" role="img" aria-label="A/B pair ratios" font-family="sans-serif" font-size="11">']
    for i, r in enumerate(rows):
        y0 = 5 + i * panel_h
        vals = [x for x in r.ratios if x > 0] or [1.0]
        lo = min(vals + [1 - r.tolerance / 100]) * 0.9
        hi = max(vals + [1 + r.tolerance / 100]) * 1.1

        def y(v: float, y0: float = y0, lo: float = lo, hi: float = hi) -> float:
            return y0 + panel_h - 8 - (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo)) * (panel_h - 16)

        parts.append(f'<rect x="{left:.0f}" y="{y(1 + r.tolerance / 100):.1f}" width="{width:.0f}" '
                     f'height="{y(1 - r.tolerance / 100) - y(1 + r.tolerance / 100):.1f}" fill="#dcfce7"/>')
        parts.append(f'<line x1="{left:.0f}" y1="{y(1.0):.1f}" x2="{left + width:.0f}" y2="{y(1.0):.1f}" '
                     f'stroke="#475569" stroke-dasharray="3,3"/>')
        parts.append(f'<text x="{left - 8:.0f}" y="{y0 + panel_h / 2:.1f}" text-anchor="end">'
                     f'{html.escape(_short(r.label) + " · " + r.metric)}</text>')
        n = max(len(r.ratios), 1)
        colour = COLOURS.get(r.verdict, "#a16207")
        for j, v in enumerate(r.ratios):
            x = left + (j + 0.5) / n * width
            parts.append(f'<circle cx="{x:.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"><title>pair {j + 1}: '
                         f'B/A {v:.3f}</title></circle>')
        parts.append(f'<text x="{left + width + 8:.0f}" y="{y0 + panel_h / 2:.1f}">{len(r.ratios)} pairs</text>')
    parts.append("</svg>")
    return "".join(parts)


def _short(label: str, limit: int = 48) -> str:
    return label if len(label) <= limit else "…" + label[-(limit - 1):]


def _arm_text(value: Any) -> str:
    if value in (None, "", [], {}):
        return "—"
    if isinstance(value, Mapping):
        return " ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(str(x) for x in value)
    return str(value)


def arms_card(views: Sequence[TestView]) -> list[Card]:
    first = next((as_map(v.raw.get("ab")) for v in views if v.raw.get("ab")), None)
    if not first:
        return []
    arms = as_map(first.get("arms"))
    a, b = as_map(arms.get("A")), as_map(arms.get("B"))
    rows = [(label, f"A: {_arm_text(a.get(key))} | B: {_arm_text(b.get(key))}") for label, key in ARM_ROWS]
    rows.insert(0, ("arm A", str(first.get("describe") or "—")))
    rows.append(("series", str(first.get("series") or "—")))
    rows.append(("order", f"{first.get('order')} (seed {first.get('seed')})"))
    return [Card("The two arms", rows)]


def ab_section(views: Sequence[TestView]) -> Section | None:
    tested = [v for v in views if v.raw.get("ab")]
    if not tested:
        return None
    rows = rows_of(tested)
    sec = Section("ab", "A/B: two arms in one session", tests=[])
    sec.intro.append("Arm B is the run as configured; arm A differs by the --nvme-ai-ab overrides. Pairs of one "
                     "run per arm, interleaved; per gated metric the ratio B/A with a confidence sequence that holds "
                     "at every look (docs/ab.md). worse: the interval lies beyond the band on the worse side; same: "
                     "inside it; unknown: the budget ran out first.")
    if rows:
        sec.charts.append(draw("B/A and its interval per test and metric, against the ±tolerance band",
                               forest_svg, rows))
        sec.charts.append(draw("B/A of each pair, in the order they ran", sequence_svg, rows))
    sec.cards.extend(arms_card(tested))
    table_rows = []
    for r in rows:
        hi = "∞" if r.hi is None else f"{r.hi:.3f}"
        ivl = "—" if r.ratio is None else f"[{(r.lo or 0.0):.3f}, {hi}]"
        table_rows.append([Cell(r.label), Cell(r.metric), Cell("—" if r.ratio is None else f"{r.ratio:.3f}"),
                           Cell(ivl), Cell(f"±{r.tolerance:g}%"), Cell(str(r.pairs)),
                           Cell(r.verdict, f"v-{_css(r.verdict)}")])
    sec.tables.append(Table(["test", "metric", "B/A", "interval", "band", "pairs", "verdict"], table_rows,
                            "Per test and metric", numeric_from=2))
    return sec


def _css(verdict: str) -> str:
    return {"worse": "regression", "better": "improvement", "same": "pass"}.get(verdict, "unknown")
