"""What every suite section is made of, and the helpers they share.

A section module (`report/sections/<suite>.py`) defines `SECTION = SectionBuilder(suite, title, build)`
and optionally `ORDER`; `report.sections` finds it. It imports this module and `report.view`, never
the page (`report.render`) that lays the sections out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from pytest_nvme_ai.core.text import size_or_none
from pytest_nvme_ai.report import charts
from pytest_nvme_ai.report.fmt import as_map, fmt, num
from pytest_nvme_ai.report.view import Cell, Table, TestView, metric_range, metric_value, status_cell

OFFLOAD_ORDER = ("none", "cpu", "nvme")
GB = 1e9


@dataclass
class Chart:
    svg: str
    caption: str
    error: str = ""


@dataclass
class Card:
    title: str
    rows: list[tuple[str, str]]
    css: str = ""


@dataclass
class Section:
    id: str
    title: str
    intro: list[str] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    tests: list[TestView] = field(default_factory=list)


def draw(caption: str, fn: Callable[..., str], *args: Any, **kw: Any) -> Chart:
    """Draw a chart; a chart bug shows up as a visible note on the page instead of losing the tables."""
    try:
        return Chart(fn(*args, **kw), caption)
    except Exception as exc:  # noqa: BLE001 - any drawing failure is reported on the page itself
        return Chart("", caption, f"chart could not be drawn: {type(exc).__name__}: {exc}")


def param(v: TestView, *names: str) -> Any:
    p = as_map(v.raw.get("params"))
    for n in names:
        if n in p:
            return p[n]
    # A test that skipped before recording its params still has the parametrized object (the ZeRO-Inference
    # suite's `case`, serialised as a dict): its fields say what would have run.
    for nested in p.values():
        if isinstance(nested, Mapping):
            for n in names:
                if n in nested:
                    return nested[n]
    return None


def sort_key(x: Any) -> tuple[int, float, str]:
    """Sort mixed params (numbers, "1M", None) without TypeError."""
    n = num(x)
    if n is None:
        n = num(size_or_none(x))
    return (0, n, "") if n is not None else (1, 0.0, str(x))


def series_from(label: str, points: Sequence[tuple[float, TestView]], metric: str, scale: float,
                **kw: Any) -> charts.Series:
    points = sorted(points, key=lambda p: p[0])
    ys, los, his = [], [], []
    for _, v in points:
        y = metric_value(v.raw, metric)
        lo, hi = metric_range(v.raw, metric)
        ys.append(None if y is None else y / scale)
        los.append(None if lo is None else lo / scale)
        his.append(None if hi is None else hi / scale)
    return charts.Series(label, [p[0] for p in points], ys, los, his, **kw)


def xticks(values: Iterable[float], label: Callable[[float], str]) -> dict[float, str]:
    return {x: label(x) for x in sorted(set(values))}


def mcell(v: TestView, metric: str, unit: str = "") -> Cell:
    m = as_map(as_map(v.raw.get("metrics")).get(metric))
    return Cell(fmt(m.get("value"), unit or str(m.get("unit") or "")) if m else "—")


@dataclass(frozen=True)
class SectionBuilder:
    """One suite's section: the suite name tests carry in results.json, its title, and how to build it."""

    suite: str
    title: str
    build: Callable[[list[TestView]], Section]


def generic_section(sid: str, title: str, views: list[TestView]) -> Section:
    sec = Section(sid, title, tests=views)
    sec.tables.append(Table(["test", "parameters", "duration", "verdict"],
                            [[Cell(v.nodeid), Cell(v.params or "—"), Cell(v.duration), status_cell(v)]
                             for v in views], numeric_from=2))
    return sec
