"""Per-suite sections of the run page: fio, DeepSpeed aio, ZeRO-Inference, anything else.

Each builder takes the suite's `TestView`s and returns a `Section` (charts,
summary tables, cards, and the tests themselves for the per-metric details).
Unknown suites get the generic section, so a new suite shows up without a
change here.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from pytest_nvme_ai.report import charts
from pytest_nvme_ai.report.fmt import as_map, fmt, fmt_size, num, parse_size
from pytest_nvme_ai.report.render import Cell, Table, TestView, metric_range, metric_value, status_cell

SUITE_TITLES = {
    "seq_read": "fio sequential read",
    "aio_read": "DeepSpeed aio read vs fio",
    "zero_inference": "DeepSpeed ZeRO-Inference",
    "write": "Write side: fio sequential write and checkpoint",
    "zero_infinity": "DeepSpeed ZeRO-Infinity training step",
}
OFFLOAD_ORDER = ("none", "cpu", "nvme")
PARALLELISM = ("intra_op_parallelism", "parallelism")   # DeepSpeed's key, and the aio suite's param name
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
        n = num(parse_size(x))
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


# ---- fio -------------------------------------------------------------------------------------
def latency_unit(views: Iterable[TestView]) -> tuple[float, str]:
    """µs for NVMe-like latencies, ms once the tail reaches tens of milliseconds (HDD, deep queues)."""
    worst = max((metric_value(v.raw, "clat_p999") or metric_value(v.raw, "clat_p50") or 0.0 for v in views),
                default=0.0)
    return (1e6, "ms") if worst >= 1e7 else (1e3, "µs")


def fio_section(views: list[TestView]) -> Section:
    sec = Section("seq_read", SUITE_TITLES["seq_read"], tests=views)
    multi = len({v.target for v in views}) > 1
    rows = sorted(views, key=lambda v: (v.target, str(param(v, "ioengine")), sort_key(param(v, "iodepth")),
                                        sort_key(param(v, "numjobs")), sort_key(param(v, "bs", "block_size"))))
    by_target: dict[str, dict[str, list[tuple[float, TestView]]]] = {}
    for v in rows:
        bs = parse_size(param(v, "bs", "block_size"))
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
            Cell(fmt_size(parse_size(param(v, "bs", "block_size")))), Cell(str(param(v, "iodepth") or "—")),
            Cell(str(param(v, "numjobs") or "—"))] + [Cell(str(param(v, "ioengine") or "—"))] * engines + [
            mcell(v, "bw"), mcell(v, "iops"), mcell(v, "clat_p50"), mcell(v, "clat_p99"), mcell(v, "clat_p999"),
            status_cell(v)])
    sec.tables.append(Table(head, table_rows, "Every fio job", numeric_from=3 + engines + multi))
    return sec


# ---- DeepSpeed aio ---------------------------------------------------------------------------
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
        tuned = extra.get("tuned_aio")
        key = v.target + repr(tuned)
        if not isinstance(tuned, Mapping) or key in seen:
            continue
        seen.add(key)
        rows = [(str(k), setting_text(str(k), val)) for k, val in tuned.items()]
        d, t = num(extra.get("default_aio_bw")), num(extra.get("tuned_aio_bw"))
        rows.append(("bandwidth, default settings", fmt(d, "B/s")))
        rows.append(("bandwidth, tuned settings", fmt(t, "B/s")))
        if d and t is not None:
            rows.append(("gain from tuning", f"{(t / d - 1) * 100:+.1f}%"))
        cards.append(Card(f"Tuned aio settings (@{v.target})" if v.target else "Tuned aio settings", rows))
    return cards


def aio_section(views: list[TestView]) -> Section:
    sec = Section("aio_read", SUITE_TITLES["aio_read"], tests=views)
    measured = [v for v in views if metric_value(v.raw, "bw") is not None]
    fio_bws = [f for f in (num(as_map(v.raw.get("extra")).get("fio_bw")) for v in views) if f]
    pars = sorted({str(param(v, *PARALLELISM)) for v in measured}, key=sort_key)
    best: dict[str, dict[float, TestView]] = {}
    for v in measured:
        bs = parse_size(param(v, "block_size", "bs"))
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
    cells = [[Cell(fmt_size(parse_size(param(v, "block_size", "bs")))), Cell(str(param(v, "queue_depth") or "—")),
              Cell(str(param(v, *PARALLELISM) or "—")), mcell(v, "bw"),
              Cell(fmt(as_map(v.raw.get("extra")).get("fio_bw"), "B/s")), mcell(v, "aio_vs_fio"),
              mcell(v, "read_latency"), status_cell(v)] for v in rows]
    if len(cells) > 16:
        # A full sweep is 80+ rows: the few fastest answer "what should I configure", the rest stay one click away.
        sec.tables.append(Table(head, cells[:10], f"Fastest 10 of {len(cells)} aio configurations", numeric_from=3))
        sec.tables.append(Table(head, cells, f"All {len(cells)} aio configurations, fastest first", numeric_from=3,
                                folded=True))
    else:
        sec.tables.append(Table(head, cells, "Every aio configuration, fastest first", numeric_from=3))
    return sec


def build_sections(views: list[TestView]) -> list[Section]:
    from pytest_nvme_ai.report.training import training_section, write_section
    from pytest_nvme_ai.report.zi import zi_section

    by_suite: dict[str, list[TestView]] = {}
    for v in views:
        by_suite.setdefault(v.suite, []).append(v)
    builders: dict[str, Callable[[list[TestView]], Section]] = {
        "seq_read": fio_section, "aio_read": aio_section, "write": write_section, "zero_inference": zi_section,
        "zero_infinity": training_section}
    sections = [builders[s](by_suite.pop(s)) for s in builders if s in by_suite]
    sections += [generic_section(f"suite-{i}", suite, by_suite[suite]) for i, suite in enumerate(sorted(by_suite))]
    # Tuned settings are recorded by whichever test asked for them (`--nvme-ai-aio auto` tunes inside the
    # ZeRO-Inference tests): show them once per target, next to the aio sweep when there is one.
    cards = tuned_cards(views)
    if cards:
        home = next((s for s in sections if s.id == "aio_read"), None)
        if home is None:
            home = Section("aio_tuning", "DeepSpeed aio tuning")
            sections.insert(0 if not sections or sections[0].id != "seq_read" else 1, home)
        home.cards.extend(cards)
    return sections


def generic_section(sid: str, suite: str, views: list[TestView]) -> Section:
    sec = Section(sid, SUITE_TITLES.get(suite, f"Suite: {suite}"), tests=views)
    sec.tables.append(Table(["test", "parameters", "duration", "verdict"],
                            [[Cell(v.nodeid), Cell(v.params or "—"), Cell(v.duration), status_cell(v)]
                             for v in views], numeric_from=2))
    return sec
