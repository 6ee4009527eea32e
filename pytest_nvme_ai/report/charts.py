"""Inline SVG charts for the report, drawn with matplotlib's Agg/SVG backend.

The charts know nothing about suites: callers pass `Panel`s of `Series` in
display units (GB/s, tokens/s, ms). Every chart comes back as SVG markup ready
to inline into the page: no XML prolog, no DOCTYPE (its URL is a network
address in the file), no metadata block, and element ids prefixed per chart so
that several SVGs can share one HTML document.

matplotlib is imported inside functions: importing the report package (done by
the plugin at session end and by `nvme-ai --help`) must stay cheap.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

# Colour-blind-safe palette (Okabe-Ito), in the order series are assigned colours.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
# Fixed colours where a series has a meaning readers learn once (offload device).
NAMED_COLOURS = {"cpu": "#0072B2", "nvme": "#D55E00", "none": "#6b7280", "A": "#0072B2", "B": "#D55E00"}
FAIL_COLOUR = "#b91c1c"

_RC: dict[str, Any] = {
    "svg.fonttype": "none",          # real <text>: small, searchable, selectable
    "svg.hashsalt": "pytest-nvme-ai",  # deterministic ids: identical input -> identical page
    "text.parse_math": False,        # a model name with "$" must print as typed, not as TeX
    "text.usetex": False,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial"],
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#9ca3af",
    "axes.grid": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.7,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "xtick.color": "#374151",
    "ytick.color": "#374151",
}


@dataclass(frozen=True)
class Series:
    """One line: y may hold None where a point was not measured (gap, not zero)."""

    label: str
    x: Sequence[float]
    y: Sequence[float | None]
    lo: Sequence[float | None] | None = None   # min over samples, for an error bar
    hi: Sequence[float | None] | None = None   # max over samples
    colour: str | None = None
    dashed: bool = False
    marker: str = "o"


@dataclass(frozen=True)
class FailMark:
    """A point that produced no number (OOM, timeout): drawn as data on the x axis."""

    x: float
    text: str
    colour: str | None = None


@dataclass(frozen=True)
class Panel:
    title: str
    series: Sequence[Series]
    xlabel: str
    ylabel: str
    xticks: dict[float, str] = field(default_factory=dict)   # position -> label; sets a log2 x axis
    fails: Sequence[FailMark] = ()
    refline: tuple[float, str] | None = None                 # horizontal reference (e.g. fio bandwidth)


@dataclass(frozen=True)
class BarGroup:
    """Stacked horizontal bar: one row label, stacked segments (name -> value)."""

    label: str
    segments: dict[str, float]
    note: str = ""   # drawn instead of a bar when there is nothing to stack (e.g. "OOM")


def line_chart(panels: Sequence[Panel], *, width: float = 9.0, height: float = 3.4, cols: int = 0) -> str:
    """Small multiples of line charts with one shared legend on top; returns SVG markup."""
    from matplotlib.figure import Figure

    if not panels:
        return ""
    cols = cols or min(len(panels), 3)
    rows = (len(panels) + cols - 1) // cols
    # One colour per label across all panels: "QD16" is the same colour in every panel and in the legend.
    colours = colour_map(s.label for p in panels for s in p.series)
    with _rc():
        fig = Figure(figsize=(width, height * rows + 0.35), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, panel in itertools.zip_longest(axes.flat, panels):
            if panel is None:
                ax.set_visible(False)
                continue
            _draw_lines(ax, panel, colours, title_chars=int(width / cols * 11))
        _figure_legend(fig, axes)
        return _to_svg(fig)


def colour_map(labels: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for label in labels:
        if label not in out:
            out[label] = PALETTE[len(out) % len(PALETTE)]
    return out


def _figure_legend(fig: Any, axes: Any) -> None:
    """A single legend above the panels: never covers data, and reads before the curves."""
    seen: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if seen:
        # As many columns as fit the figure width (~0.075 in per character at 8 pt, plus the line sample).
        entry = 0.6 + 0.075 * max(len(label) for label in seen)
        ncols = max(1, min(len(seen), 6, int(fig.get_figwidth() / entry)))
        fig.legend(list(seen.values()), list(seen), loc="outside upper center", ncols=ncols)


def stacked_bars(panels: Sequence[tuple[str, Sequence[BarGroup]]], *, xlabel: str, width: float = 9.0,
                 cols: int = 0) -> str:
    """Horizontal stacked bars, one panel per title (e.g. prefill + decode latency per batch and offload)."""
    from matplotlib.figure import Figure

    panels = [(t, g) for t, g in panels if g]
    if not panels:
        return ""
    cols = cols or min(len(panels), 3)
    rows = (len(panels) + cols - 1) // cols
    tallest = max(len(g) for _, g in panels)
    colours = colour_map(n for _, groups in panels for g in groups for n in g.segments)
    with _rc():
        fig = Figure(figsize=(width, (1.1 + 0.24 * tallest) * rows + 0.35), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, panel in itertools.zip_longest(axes.flat, panels):
            if panel is None:
                ax.set_visible(False)
                continue
            _draw_bars(ax, panel[0], panel[1], xlabel, colours, title_chars=int(width / cols * 11))
        _figure_legend(fig, axes)
        return _to_svg(fig)


def _draw_bars(ax: Any, title: str, groups: Sequence[BarGroup], xlabel: str, colours: dict[str, str],
               title_chars: int) -> None:
    ys = list(range(len(groups)))[::-1]
    left = [0.0] * len(groups)
    for name, colour in colours.items():
        vals = [g.segments.get(name, 0.0) for g in groups]
        ax.barh(ys, vals, left=left, height=0.7, label=name, color=colour)
        left = [a + b for a, b in zip(left, vals)]
    for y, g in zip(ys, groups):
        if g.note:
            ax.text(0, y, f" {g.note}", va="center", ha="left", color=FAIL_COLOUR, fontweight="bold", fontsize=7)
    ax.set_yticks(ys, [g.label for g in groups])
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(xlabel)
    ax.set_title(_wrap(title, title_chars), loc="left")


def _draw_lines(ax: Any, panel: Panel, colours: dict[str, str], title_chars: int) -> None:
    for s in panel.series:
        _draw_series(ax, s, s.colour or colours.get(s.label, PALETTE[0]))
    for i, f in enumerate(panel.fails):
        ax.plot([f.x], [0], marker="X", markersize=9, color=f.colour or FAIL_COLOUR, clip_on=False, zorder=5,
                linestyle="none")
        # Staggered heights: neighbouring failures (cpu OOM at 32, nvme timeout at 64) must not overprint.
        ax.annotate(f.text, (f.x, 0), xytext=(0, 8 + 11 * (i % 3)), textcoords="offset points", ha="center",
                    color=f.colour or FAIL_COLOUR, fontsize=7, fontweight="bold")
    if panel.refline is not None:
        value, label = panel.refline
        ax.axhline(value, color="#6b7280", linestyle=":", linewidth=1.2, label=label)
    if panel.xticks:
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(panel.xticks), list(panel.xticks.values()))
        ax.minorticks_off()
        lo, hi = min(panel.xticks), max(panel.xticks)
        pad = 2 ** 0.25 if lo != hi else 2.0   # a single batch size or block size still gets a visible axis
        ax.set_xlim(lo / pad, hi * pad)
    ax.set_ylim(bottom=0)
    ax.set_title(_wrap(panel.title, title_chars), loc="left")
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)


def _wrap(title: str, chars: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(title, max(chars, 20))) or title


def _draw_series(ax: Any, s: Series, colour: str) -> None:
    pts = [(x, y, _at(s.lo, i), _at(s.hi, i)) for i, (x, y) in enumerate(zip(s.x, s.y)) if y is not None]
    if not pts:
        return
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    style = "--" if s.dashed else "-"
    ax.plot(xs, ys, linestyle=style, marker=s.marker, markersize=4, linewidth=1.6, color=colour, label=s.label)
    if s.lo is not None and s.hi is not None:
        # Sample spread (min..max over repetitions): a noisy point should look noisy.
        lo = [y - (lo if lo is not None else y) for _, y, lo, _ in pts]
        hi = [(hi if hi is not None else y) - y for _, y, _, hi in pts]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor=colour, elinewidth=1, capsize=2, alpha=0.7)


def _at(seq: Sequence[float | None] | None, i: int) -> float | None:
    if seq is None or i >= len(seq):
        return None
    return seq[i]


@contextlib.contextmanager
def _rc() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(_RC):  # type: ignore[arg-type]  # keys are valid rcParams; the stub wants Literals
        yield


def _to_svg(fig: Any) -> str:
    # A bare Figure (no pyplot): no global figure registry, no GUI backend, nothing leaks between runs.
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buf.getvalue()
    # Prefix from the content: the same results render to the same page (diffable), and two different
    # charts cannot share an id. Identical charts sharing ids would share identical definitions: harmless.
    return clean_svg(svg, prefix="c" + hashlib.sha1(svg.encode()).hexdigest()[:8] + "-")


_ID_ATTR = re.compile(r'\sid="([^"]*)"')
_REF = re.compile(r'(href="#|url\(#)([^")]+)')


def clean_svg(svg: str, prefix: str) -> str:
    """Make a standalone SVG file fit for inlining into HTML.

    Drops the prolog/DOCTYPE/metadata, drops ids nothing refers to (matplotlib
    writes "figure_1", "axes_1"... in every chart: duplicates across charts),
    and prefixes the ids that are referenced so charts cannot capture each
    other's markers or clip paths.
    """
    start = svg.find("<svg")
    svg = svg[start:] if start >= 0 else svg
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)
    referenced = {m.group(2) for m in _REF.finditer(svg)}

    def fix_id(m: re.Match[str]) -> str:
        return f' id="{prefix}{m.group(1)}"' if m.group(1) in referenced else ""

    svg = _ID_ATTR.sub(fix_id, svg)
    svg = _REF.sub(lambda m: f"{m.group(1)}{prefix}{m.group(2)}", svg)
    # Responsive: the viewBox keeps the aspect ratio; CSS decides the width.
    svg = re.sub(r'<svg([^>]*?)\swidth="[^"]*"\sheight="[^"]*"', r'<svg\1 role="img"', svg, count=1)
    return svg.strip()
