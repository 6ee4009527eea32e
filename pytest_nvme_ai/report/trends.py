"""Trend section of the run page: each gated metric over the last runs on this device, from the history store.

The end of the run reads the trends from the store (run/history_hook.run_trends) and hands them over as
`core.history_types.Trend`s; this module only draws. One small panel per series: the values of the
last N runs in order, their sample spread, change points as dashed vertical lines with the step
written next to them, and the run the page is about as a large ring. Inline SVG, no script.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_nvme_ai.core.history_types import Trend
from pytest_nvme_ai.report import charts
from pytest_nvme_ai.report.fmt import fmt
from pytest_nvme_ai.report.sections.base import Section, draw
from pytest_nvme_ai.report.view import Cell, Table

PANELS_PER_CHART = 6
HIGHLIGHT = "#D55E00"
CHANGE = "#6b7280"
# (unit, scale, axis label): the y axis in the units the rest of the page uses.
_AXIS = {"B/s": (1e9, "GB/s"), "B": (1e9, "GB"), "ns": (1e3, "µs"), "s": (1.0, "s")}


def axis(unit: str) -> tuple[float, str]:
    return _AXIS.get(unit, (1.0, unit))


def trend_section(trends: Sequence[Trend]) -> Section:
    sec = Section(id="trends", title="Trends (run history)")
    if not trends:
        return sec
    n_runs = max(len(t.points) for t in trends)
    sec.intro.append(
        f"Each gated metric over the last runs of the same test on this runner and this exact device fingerprint "
        f"(up to {n_runs} runs, oldest left), read from the history store. The ringed point is this run; "
        "dashed lines are change points (PELT, kept when the step is at least 5% and Welch's t-test gives "
        "p < 0.001). Change points across firmware or PCIe-link changes: nvme-ai history changes.")
    for i in range(0, len(trends), PANELS_PER_CHART):
        group = trends[i:i + PANELS_PER_CHART]
        caption = ", ".join(f"{t.key.metric} of {t.key.test_key}" for t in group)
        sec.charts.append(draw(caption, trend_chart, group))
    rows = []
    for t in trends:
        for c in t.changes:
            rows.append([Cell(t.key.test_key), Cell(t.key.metric), Cell(c.before.run_id), Cell(c.after.run_id),
                         Cell(fmt(c.median_before, t.unit)), Cell(fmt(c.median_after, t.unit)),
                         Cell(f"{c.relative_change * 100:+.1f}%"), Cell(f"{c.p_value:.2g}")])
    if rows:
        sec.tables.append(Table(["test", "metric", "last run before", "first run after", "median before",
                                 "median after", "step", "p"], rows, caption="Change points in these trends",
                                numeric_from=4))
    for t in trends:
        sec.intro.extend(t.notes)
    return sec


def trend_chart(trends: Sequence[Trend], *, width: float = 9.0) -> str:
    from matplotlib.figure import Figure

    cols = min(len(trends), 3)
    rows = (len(trends) + cols - 1) // cols
    with charts._rc():
        fig = Figure(figsize=(width, 2.6 * rows), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
        for k, ax in enumerate(axes.flat):
            if k >= len(trends):
                ax.set_visible(False)
                continue
            _panel(ax, trends[k], title_chars=int(width / cols * 11))
        return charts._to_svg(fig)


def _panel(ax: Any, t: Trend, title_chars: int) -> None:
    scale, label = axis(t.unit)
    xs = list(range(len(t.points)))
    ys = [p.value / scale for p in t.points]
    lo = [(min(p.samples) if p.samples else p.value) / scale for p in t.points]
    hi = [(max(p.samples) if p.samples else p.value) / scale for p in t.points]
    colour = charts.PALETTE[0]
    ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.3, color=colour)
    ax.errorbar(xs, ys, yerr=[[y - a for y, a in zip(ys, lo)], [b - y for y, b in zip(ys, hi)]], fmt="none",
                ecolor=colour, elinewidth=0.8, alpha=0.6)
    for c in t.changes:
        x = c.index - 0.5
        ax.axvline(x, color=CHANGE, linestyle="--", linewidth=1.1)
        ax.annotate(f"{c.relative_change * 100:+.0f}%", (x, 1), xycoords=("data", "axes fraction"),
                    xytext=(3, -10), textcoords="offset points", fontsize=7, color=CHANGE)
    for i, p in enumerate(t.points):
        if p.run_id == t.highlight_run:
            ax.plot([i], [ys[i]], marker="o", markersize=10, markerfacecolor="none", markeredgewidth=2,
                    color=HIGHLIGHT, linestyle="none")
            ax.annotate("this run", (i, ys[i]), xytext=(0, 9), textcoords="offset points", ha="center",
                        fontsize=7, color=HIGHLIGHT, fontweight="bold")
    ticks = sorted({0, len(xs) - 1, *(c.index for c in t.changes)})
    ax.set_xticks(ticks, [t.points[i].started[5:16].replace("T", " ") for i in ticks], fontsize=7)
    ax.set_xlim(-0.7, len(xs) - 0.3)
    ax.set_ylim(bottom=0, top=max(hi) * 1.18 if max(hi) > 0 else 1)
    ax.set_ylabel(label)
    ax.set_xlabel(f"last {len(xs)} runs (UTC start)")
    ax.set_title(charts._wrap(f"{t.key.metric} · {t.key.test_key.rsplit('::', 1)[-1]}", title_chars), loc="left")

