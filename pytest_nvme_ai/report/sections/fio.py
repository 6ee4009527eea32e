"""fio sequential read: bandwidth and latency percentiles vs block size, one line per QD × jobs."""
from __future__ import annotations

from typing import Iterable

from pytest_nvme_ai.core.text import size_or_none
from pytest_nvme_ai.report import charts, qual
from pytest_nvme_ai.report.fmt import fmt_size
from pytest_nvme_ai.report.sections.base import GB, Card, Section, SectionBuilder, draw, mcell, param, series_from, sort_key, xticks
from pytest_nvme_ai.report.view import Cell, Table, TestView, metric_value, status_cell

ORDER = 10


def latency_unit(views: Iterable[TestView]) -> tuple[float, str]:
    """µs for NVMe-like latencies, ms once the tail reaches tens of milliseconds (HDD, deep queues)."""
    worst = max((metric_value(v.raw, "clat_p999") or metric_value(v.raw, "clat_p50") or 0.0 for v in views),
                default=0.0)
    return (1e6, "ms") if worst >= 1e7 else (1e3, "µs")


def fio_section(views: list[TestView]) -> Section:
    every = views
    views, concurrent, remote = qual.split(views)   # a set's aggregate must not join a drive's curve
    sec = Section(SECTION.suite, SECTION.title, tests=every)
    multi = len({v.target for v in views}) > 1
    rows = sorted(views, key=lambda v: (v.target, str(param(v, "ioengine")), sort_key(param(v, "iodepth")),
                                        sort_key(param(v, "numjobs")), sort_key(param(v, "bs", "block_size"))))
    by_target: dict[str, dict[str, list[tuple[float, TestView]]]] = {}
    for v in rows:
        bs = size_or_none(param(v, "bs", "block_size"))
        if bs is None or metric_value(v.raw, "bw") is None:
            continue
        line = f"QD{param(v, 'iodepth')} × {param(v, 'numjobs') or 1} job(s)"
        if len({str(param(x, "ioengine")) for x in views}) > 1:
            line += f" {param(v, 'ioengine')}"
        by_target.setdefault(v.target, {}).setdefault(line, []).append((float(bs), v))
    all_bs = [x for lines in by_target.values() for pts in lines.values() for x, _ in pts]
    ticks = xticks(all_bs, lambda x: fmt_size(int(x)))
    lat_scale, lat_unit = latency_unit(views)
    bw_panels, lat_panels = [], []
    for target, lines in by_target.items():
        where = f" @{target}" if multi else ""
        bw_panels.append(charts.Panel(f"Read bandwidth vs block size{where}",
                                      [series_from(k, pts, "bw", GB) for k, pts in lines.items()],
                                      "block size", "GB/s", ticks))
        for metric, name in (("clat_p50", "median"), ("clat_p999", "p99.9")):
            series = [series_from(k, pts, metric, lat_scale) for k, pts in lines.items()]
            if any(y is not None for s in series for y in s.y):
                lat_panels.append(charts.Panel(f"Completion latency, {name}{where}", series, "block size", lat_unit,
                                               ticks))
    if bw_panels:
        sec.charts.append(draw("Sequential read bandwidth (median of samples; bars: min–max)",
                               charts.line_chart, bw_panels, cols=1 if len(bw_panels) == 1 else 2,
                               height=3.0 if len(bw_panels) == 1 else 3.2))
    if lat_panels:
        sec.charts.append(draw("Completion latency percentiles", charts.line_chart, lat_panels, cols=2, height=3.0))
    engines = any(param(v, "ioengine") for v in views)
    head = ["target"] * multi + ["block size", "QD", "jobs"] + ["engine"] * engines + [
        "bandwidth", "IOPS", "p50", "p99", "p99.9", "verdict"]
    table_rows = []
    for v in rows:
        table_rows.append([Cell(v.target)] * multi + [
            Cell(fmt_size(size_or_none(param(v, "bs", "block_size")))), Cell(str(param(v, "iodepth") or "—")),
            Cell(str(param(v, "numjobs") or "—"))] + [Cell(str(param(v, "ioengine") or "—"))] * engines + [
            mcell(v, "bw"), mcell(v, "iops"), mcell(v, "clat_p50"), mcell(v, "clat_p99"), mcell(v, "clat_p999"),
            status_cell(v)])
    sec.tables.append(Table(head, table_rows, "Every fio job", numeric_from=3 + engines + multi))
    add_rigor(sec, rows, concurrent, remote)
    return sec


def add_rigor(sec: Section, views: list[TestView], concurrent: list[TestView], remote: list[TestView]) -> None:
    """Steady state, host-bound flags, health during the run, drives at once, remote drives (report/qual.py)."""
    sec.intro.extend(qual.intro_lines(views))
    for table in (qual.rigor_table(views), qual.concurrent_table(concurrent), qual.remote_table(remote)):
        if table is not None:
            sec.tables.append(table)
    cards, panels = qual.health_cards_and_chart(views)
    sec.cards.extend(Card(title, rows) for title, rows in cards)
    if panels:
        sec.charts.append(draw("Bandwidth of each repetition over the run, next to the drive's temperature "
                               "(SMART, sampled during the measurements where the drive allows)",
                               charts.line_chart, panels, cols=2, height=2.8))


SECTION = SectionBuilder("seq_read", "fio sequential read", fio_section)
