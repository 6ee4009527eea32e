"""DeepSpeed aio read vs fio: bandwidth per block size and queue depth, and the tuner's cards."""
from __future__ import annotations

import statistics
from typing import Any, Iterable, Mapping

from pytest_nvme_ai.core.extras import AioSuiteExtra, TunerExtra
from pytest_nvme_ai.core.text import size_or_none
from pytest_nvme_ai.report import charts
from pytest_nvme_ai.report.fmt import as_map, fmt, fmt_size, num
from pytest_nvme_ai.report.sections.base import (GB, Card, Section, SectionBuilder, draw, mcell, param, series_from, sort_key,
                                                 xticks)
from pytest_nvme_ai.report.view import Cell, Table, TestView, metric_value, status_cell

ORDER = 20
PARALLELISM = ("intra_op_parallelism", "parallelism")   # DeepSpeed's key, and the aio suite's param name


def setting_text(key: str, val: Any) -> str:
    """An aio setting as it would be written in a DeepSpeed config (sizes as 8M, booleans as JSON)."""
    if isinstance(val, bool):
        return "true" if val else "false"
    if "size" in key and num(val):
        return fmt_size(int(val))
    return str(val)


def tuned_cards(views: Iterable[TestView]) -> list[Card]:
    """One card per target and tuned block (tuning runs once per session and target, many tests carry it)."""
    cards = []
    seen: set[str] = set()
    for v in views:
        extra = as_map(v.raw.get("extra"))
        tuned = extra.get(TunerExtra.BLOCK)
        key = v.target + repr(tuned)
        if not isinstance(tuned, Mapping) or key in seen:
            continue
        seen.add(key)
        rows = [(str(k), setting_text(str(k), val)) for k, val in tuned.items()]
        d, t = num(extra.get(TunerExtra.DEFAULT_BW)), num(extra.get(TunerExtra.TUNED_BW))
        rows.append(("bandwidth, default settings", fmt(d, "B/s")))
        rows.append(("bandwidth, tuned settings", fmt(t, "B/s")))
        if d and t is not None:
            rows.append(("gain from tuning", f"{(t / d - 1) * 100:+.1f}%"))
        cards.append(Card(f"Tuned aio settings (@{v.target})" if v.target else "Tuned aio settings", rows))
    return cards


def aio_section(views: list[TestView]) -> Section:
    sec = Section(SECTION.suite, SECTION.title, tests=views)
    measured = [v for v in views if metric_value(v.raw, "bw") is not None]
    fio_bws = [f for f in (num(as_map(v.raw.get("extra")).get(AioSuiteExtra.FIO_BW)) for v in views) if f]
    pars = sorted({str(param(v, *PARALLELISM)) for v in measured}, key=sort_key)
    best: dict[str, dict[float, TestView]] = {}
    for v in measured:
        bs = size_or_none(param(v, "block_size", "bs"))
        if bs is None:
            continue
        line = best.setdefault(f"QD{param(v, 'queue_depth')}", {})
        cur = line.get(float(bs))
        # One point per block size and queue depth: the best parallelism, which is what a tuner would pick.
        if cur is None or (metric_value(v.raw, "bw") or 0) > (metric_value(cur.raw, "bw") or 0):
            line[float(bs)] = v
    if best:
        ticks = xticks([x for line in best.values() for x in line], lambda x: fmt_size(int(x)))
        ordered = sorted(best.items(), key=lambda kv: sort_key(kv[0][2:]))
        series = [series_from(k, list(pts.items()), "bw", GB) for k, pts in ordered]
        ref = (statistics.median(fio_bws) / GB, "fio, same file") if fio_bws else None
        title = "aio read bandwidth vs block size" + (
            f" (best of intra_op_parallelism {', '.join(pars)})" if len(pars) > 1 else "")
        sec.charts.append(draw("DeepSpeed aio read bandwidth; dotted line: fio on the same file",
                               charts.line_chart, [charts.Panel(title, series, "block size", "GB/s", ticks,
                                                                refline=ref)], cols=1, height=3.0))
    if fio_bws:
        sec.intro.append(f"fio reference bandwidth on the same file: {fmt(statistics.median(fio_bws), 'B/s')}.")
    rows = sorted(views, key=lambda v: -(metric_value(v.raw, "bw") or -1.0))
    head = ["block size", "QD", "intra-op parallelism", "bandwidth", "fio bandwidth", "aio / fio", "read latency",
            "verdict"]
    cells = [[Cell(fmt_size(size_or_none(param(v, "block_size", "bs")))), Cell(str(param(v, "queue_depth") or "—")),
              Cell(str(param(v, *PARALLELISM) or "—")), mcell(v, "bw"),
              Cell(fmt(as_map(v.raw.get("extra")).get(AioSuiteExtra.FIO_BW), "B/s")), mcell(v, "aio_vs_fio"),
              mcell(v, "read_latency"), status_cell(v)] for v in rows]
    if len(cells) > 16:
        # A full sweep is 80+ rows: the few fastest answer "what should I configure", the rest stay one click away.
        sec.tables.append(Table(head, cells[:10], f"Fastest 10 of {len(cells)} aio configurations", numeric_from=3))
        sec.tables.append(Table(head, cells, f"All {len(cells)} aio configurations, fastest first", numeric_from=3,
                                folded=True))
    else:
        sec.tables.append(Table(head, cells, "Every aio configuration, fastest first", numeric_from=3))
    return sec


SECTION = SectionBuilder("aio_read", "DeepSpeed aio read vs fio", aio_section)
