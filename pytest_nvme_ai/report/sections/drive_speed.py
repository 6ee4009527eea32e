"""The roofline view of offloaded inference: decode throughput against read bandwidth.

Per NVMe-offloaded case (extra `roofline` of `test_zero_inference`, extra `drive_speed` of
`test_drive_speed`): the measured points, the two bounds — the I/O slope (tokens per step × bw ÷
bytes per step) and the compute ceiling (tokens per step ÷ t_compute) — the model's curve with the
measured overlap, and the drive's own fio bandwidth marked. The figures come from the measuring
side (docs/roofline.md); this module only draws them.
"""
from __future__ import annotations

from typing import Any, Mapping

from pytest_nvme_ai.core.extras import RooflineExtra
from pytest_nvme_ai.report import charts
from pytest_nvme_ai.report.fmt import as_map, fmt, num
from pytest_nvme_ai.report.sections.base import Section, SectionBuilder, draw, param
from pytest_nvme_ai.report.view import Cell, Table, TestView, metric_range, metric_value

ORDER = 35

GB = 1e9
TITLE = "Drive-speed emulation (block throttle)"


def case_title(v: TestView) -> str:
    parts = [str(param(v, "model") or "model ?"), f"bs {param(v, 'batch_size')}"]
    q = param(v, "quant_bits")
    if q not in (None, 16):
        parts.append(f"{q}-bit")
    frac = num(param(v, "offloaded_fraction"))
    if frac is not None:
        parts.append(f"{frac:.0%} offloaded")
    return " · ".join(parts)


def _bounds_series(tokens: float, bytes_per_step: float, t_compute: float, fio_bw: float,
                   x_max: float, y_top: float, bw_label: str = "drive's fio bandwidth") -> list[charts.Series]:
    """The I/O slope up to the compute ceiling, the ceiling itself, and the drive's fio (or aio) bandwidth."""
    ceiling = tokens / t_compute
    x_end = min(x_max, y_top * bytes_per_step / tokens)  # the slope stops at the top of the plot
    return [
        charts.Series("I/O bound", [0.0, x_end / GB], [0.0, tokens * x_end / bytes_per_step], colour="#D55E00",
                      dashed=True, marker=""),
        charts.Series("compute bound", [0.0, x_max / GB], [ceiling, ceiling], colour="#0072B2", dashed=True, marker=""),
        charts.Series(bw_label, [fio_bw / GB, fio_bw / GB], [0.0, y_top], colour="#6b7280",
                      dashed=True, marker=""),
    ]


def panel(title: str, tokens: float, bytes_per_step: float, t_compute: float, fio_bw: float,
          points: list[tuple[float, float, float | None, float | None]], curve: list[Any],
          bw_label: str = "drive's fio bandwidth") -> charts.Panel:
    """`points`: (read bw B/s, tokens/s, lo, hi) measured; `curve`: [bw, tokens/s] from the model."""
    xs = [p[0] for p in points] + [float(c[0]) for c in curve] + [fio_bw]
    x_max = max(xs) * 1.05
    ceiling = tokens / t_compute
    y_top = 1.15 * max([ceiling] + [p[1] for p in points] + [float(c[1]) for c in curve])
    series = _bounds_series(tokens, bytes_per_step, t_compute, fio_bw, x_max, y_top, bw_label)
    if curve:
        series.append(charts.Series("model (measured overlap)", [float(c[0]) / GB for c in curve],
                                    [float(c[1]) for c in curve], colour="#009E73", marker=""))
    pts = sorted(points)
    series.append(charts.Series("measured", [p[0] / GB for p in pts], [p[1] for p in pts],
                                [p[2] for p in pts], [p[3] for p in pts], colour="#000000"))
    return charts.Panel(title, series, "read bandwidth (GB/s)", "decode tokens/s")


def zi_roofline_panels(views: list[TestView]) -> list[charts.Panel]:
    """One panel per NVMe-offloaded single test that recorded its bounds."""
    panels = []
    for v in views:
        r = as_map(as_map(v.raw.get("extra")).get(RooflineExtra.ROOFLINE))
        d = as_map(r.get("decode"))
        bw, per_step, thr = num(r.get("fio_bw")), num(r.get("decode_bytes_per_step")), metric_value(v.raw, "decode_throughput")
        if not d or not bw or not per_step or thr is None or not num(d.get("t_compute")):
            continue
        lo, hi = metric_range(v.raw, "decode_throughput")
        label = "drive's fio bandwidth" if r.get("bw_source", "fio") == "fio" else "drive's DeepSpeed aio bandwidth (no fio)"
        panels.append(panel(case_title(v), float(d["tokens_per_step"]), per_step, float(d["t_compute"]), bw,
                            [(bw, thr, lo, hi)], list(r.get("curve") or []), label))
    return panels


def zi_roofline_sentences(views: list[TestView]) -> list[str]:
    out = []
    for v in views:
        text = as_map(as_map(v.raw.get("extra")).get(RooflineExtra.ROOFLINE)).get("sentence")
        if text:
            out.append(f"{case_title(v)}: {text}")
    return out


def drive_speed_section(views: list[TestView]) -> Section:
    sec = Section("drive_speed", TITLE, tests=views)
    panels, rows = [], []
    for v in views:
        ds = as_map(as_map(v.raw.get("extra")).get(RooflineExtra.DRIVE_SPEED))
        if ds.get("skipped"):
            sec.intro.append(f"{case_title(v)}: skipped — {ds['skipped']}")
            continue
        pts = [as_map(p) for p in ds.get("points") or []]
        measured = [(float(p["fio_bw"]), float(p["measured"]), min(p["decode_throughput"]), max(p["decode_throughput"]))
                    for p in pts if p.get("measured") is not None and not p.get("refused")]
        t_c, per_step, bw = num(ds.get("t_compute")), num(ds.get("bytes_per_step")), num(ds.get("drive_bw"))
        if measured and t_c and per_step and bw:
            panels.append(panel(case_title(v), float(ds["tokens_per_step"]), per_step, t_c, bw, measured,
                                list(ds.get("curve") or [])))
        rows += [_cap_row(v, p) for p in pts]
        sec.intro.append(_sensitivity_sentence(case_title(v), ds))
    if panels:
        sec.charts.append(draw("Decode throughput vs read bandwidth: measured caps, the I/O slope and the compute "
                               "ceiling, the model's prediction (overlap from the uncapped point only)",
                               charts.line_chart, panels, height=3.2))
    if rows:
        sec.tables.append(Table(["case", "cap", "cap MB/s", "fio in cgroup MB/s", "measured tok/s", "predicted tok/s",
                                 "error", "hidden-model tok/s", "error", "refused"], rows,
                                "Per cap: measured against predicted (two-bound model, overlap from the uncapped "
                                "point; hidden model: t_step = max(t_io, uncapped t_step))", numeric_from=1))
    return sec


def _cap_row(v: TestView, p: Mapping[str, Any]) -> list[Cell]:
    err, err_h = num(p.get("error")), num(p.get("error_hidden"))
    return [Cell(case_title(v), href=f"#{v.anchor}"), Cell(f"{float(p['fraction']):g}×"),
            Cell(fmt(float(p["cap_bw"]) / 1e6)), Cell(fmt(float(p["fio_bw"]) / 1e6)), Cell(fmt(num(p.get("measured")))),
            Cell(fmt(num(p.get("predicted")))), Cell("—" if err is None else f"{err:+.1%}"),
            Cell(fmt(num(p.get("predicted_hidden")))), Cell("—" if err_h is None else f"{err_h:+.1%}"),
            Cell(str(p.get("refused") or ""), "v-error" if p.get("refused") else "")]


def _sensitivity_sentence(title: str, ds: Mapping[str, Any]) -> str:
    m, pred = num(ds.get("bandwidth_sensitivity")), num(ds.get("bandwidth_sensitivity_predicted_above"))
    parts = [f"{title}:"]
    parts.append(f"doubling the read bandwidth from ½ to 1× the drive's speed gave {m:+.0%} decode throughput "
                 f"(per doubling of the bandwidths fio read in the two cgroups)"
                 if m is not None else "the ½ and 1× caps were not both accepted (or the drive drifted so far between "
                 "them that they were not a doubling apart), so no measured sensitivity")
    if pred is not None:
        parts.append(f"; the bounds predict {pred:+.0%} from a drive twice as fast as this one")
    return " ".join(parts) + "."


SECTION = SectionBuilder("drive_speed", TITLE, drive_speed_section)
