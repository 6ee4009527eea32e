"""Cold model load: each loader's bandwidth next to fio on the same file, and from_pretrained's time to first token."""
from __future__ import annotations

import statistics
from typing import Any

from pytest_nvme_ai.report import charts
from pytest_nvme_ai.report.fmt import as_map, fmt, fmt_bytes, num
from pytest_nvme_ai.report.sections.base import GB, Section, SectionBuilder, draw, mcell, param
from pytest_nvme_ai.report.view import Cell, Table, TestView, metric_value, status_cell

ORDER = 45
TITLE = "Cold model load"
LOADER_ORDER = ("safetensors", "from_pretrained", "fastsafetensors", "deepspeed_aio")
FIO_LABEL = "fio (same file, direct)"


def _extra(v: TestView) -> Any:
    return as_map(v.raw.get("extra"))


def _model(v: TestView) -> str:
    return str(param(v, "model") or _extra(v).get("model") or "?")


def _loader(v: TestView) -> str:
    return str(param(v, "loader") or _extra(v).get("loader") or "?")


def _order(v: TestView) -> tuple[str, int, str]:
    loader = _loader(v)
    rank = LOADER_ORDER.index(loader) if loader in LOADER_ORDER else len(LOADER_ORDER)
    return (_model(v), rank, loader)


def _bars(views: list[TestView]) -> list[tuple[str, list[charts.BarGroup]]]:
    """One panel per model: a bar per loader's median load bandwidth, and one for fio's median."""
    panels: dict[str, list[charts.BarGroup]] = {}
    fio: dict[str, list[float]] = {}
    for v in sorted(views, key=_order):
        bw = metric_value(v.raw, "load_bw")
        group = panels.setdefault(_model(v), [])
        if bw is None:
            group.append(charts.BarGroup(_loader(v), {}, note=v.status))
            continue
        group.append(charts.BarGroup(_loader(v), {"load": bw / GB}))
        f = num(_extra(v).get("fio_bw"))
        if f:
            fio.setdefault(_model(v), []).append(f)
    for model, group in panels.items():
        if fio.get(model):
            group.append(charts.BarGroup(FIO_LABEL, {"fio": statistics.median(fio[model]) / GB}))
    return [(f"{model}: cold load bandwidth", groups) for model, groups in panels.items()
            if any(g.segments for g in groups)]


def model_load_section(views: list[TestView]) -> Section:
    sec = Section(SECTION.suite, SECTION.title, tests=views)
    sec.intro.append("Each load runs in its own process after the model's pages were evicted from the page cache "
                     "(and checked gone with mincore); every loaded tensor is checked against the written bytes. "
                     "fio reads the same file, direct and sequential, in the same rounds.")
    panels = _bars(views)
    if panels:
        sec.charts.append(draw("Median cold load bandwidth per loader; last bar: fio on the same file",
                               charts.stacked_bars, panels, xlabel="GB/s"))
    rows = []
    for v in sorted(views, key=_order):
        extra = _extra(v)
        rows.append([Cell(_model(v)), Cell(_loader(v), title=str(extra.get("loader_version") or "")),
                     Cell(fmt_bytes(extra.get("model_file_bytes"))), mcell(v, "load_bw"),
                     Cell(fmt(extra.get("fio_bw"), "B/s")), mcell(v, "load_vs_fio"), mcell(v, "ttft_cold"),
                     mcell(v, "target_read_bytes"), status_cell(v)])
    sec.tables.append(Table(["model", "loader", "file", "load bw", "fio bw", "load / fio", "TTFT (cold)",
                             "read from storage", "verdict"], rows,
                            "Cold load per loader (medians over interleaved rounds)", numeric_from=2))
    return sec


SECTION = SectionBuilder("model_load", TITLE, model_load_section)
