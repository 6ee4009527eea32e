"""ZeRO-Inference section: throughput vs batch size, CPU vs NVMe offload per model.

The seed study's question is where NVMe offload catches up with CPU offload as
the batch grows (more tokens per byte of weights streamed in). Runs that ended
in OOM or a timeout are data points of that answer, so they are drawn on the
chart and listed in the tables, never dropped.

A pairing test (`test_nvme_vs_cpu`) holds two runs, recorded with `cpu_` and
`nvme_` prefixes on its metrics and extras; it is unfolded into two `Run`s here
so the CPU side shows up next to the single NVMe runs (in the full profile the
pairing tests are the only CPU runs).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pytest_nvme_ai.core.extras import InferenceExtra
from pytest_nvme_ai.report import charts
from pytest_nvme_ai.report.fmt import as_map, fmt, fmt_ratio, num
from pytest_nvme_ai.report.sections.base import OFFLOAD_ORDER, Section, SectionBuilder, draw, param, sort_key, xticks
from pytest_nvme_ai.report.sections.drive_speed import zi_roofline_panels, zi_roofline_sentences
from pytest_nvme_ai.report.view import Cell, Table, TestView, metric_range, metric_value

ORDER = 30

# Columns of the per-run table: (header, metric). A column nobody measured is dropped.
RUN_COLUMNS = (
    ("prefill latency", "prefill_latency"), ("decode latency", "decode_latency"),
    ("prefill tok/s", "prefill_throughput"), ("decode tok/s", "decode_throughput"),
    ("total tok/s", "total_throughput"),
    # energy next to throughput (measure/energy.py); dropped where no counter was readable
    ("GPU J/token", "gpu_energy_per_token"), ("GPU W", "gpu_avg_power"),
    ("CPU J/token", "cpu_energy_per_token"), ("CPU W", "cpu_avg_power"),
    ("peak GPU mem", "peak_gpu_mem"), ("peak RSS", "peak_rss"),
    ("read from target", "target_read_bytes"), ("read bandwidth", "target_read_bw"),
    # what reached the drive (issue 24): device bytes in the worker's own cgroup, and their ratio to the above
    ("device read", "device_read_bytes"), ("device / app read", "device_read_ratio"),
    ("offloaded", "offloaded_bytes"), ("offloaded share", "offloaded_fraction"),
    ("roofline tok/s", "roofline_throughput"), ("read bw / fio", "read_bw_vs_fio"),
    ("accel. util.", "accelerator_utilization"), ("overlap", "overlap"),
)
PARAM_COLUMNS = ("offloaded_fraction",)  # shown as a column, recorded as a param (it decides comparability)
NOT_RUN = ("skipped", "not_applicable", "—")   # no number, and not a failure either
PAIR_SIDES = ("cpu", "nvme")


@dataclass(frozen=True)
class Run:
    """One generate() measurement: a single test, or one side of a pairing test."""

    view: TestView
    offload: str
    prefix: str = ""    # "cpu_" / "nvme_" inside a pairing test

    def value(self, metric: str) -> float | None:
        if metric in PARAM_COLUMNS:
            if self.prefix:
                return num(as_map(as_map(self.view.raw.get("extra")).get(self.prefix + InferenceExtra.PARAMS)).get(metric))
            return num(param(self.view, metric)) if self.offload != "cpu" else None
        return metric_value(self.view.raw, self.prefix + metric)

    def spread(self, metric: str) -> tuple[float | None, float | None]:
        return metric_range(self.view.raw, self.prefix + metric)

    @property
    def batch(self) -> float | None:
        return num(param(self.view, "batch_size"))

    @property
    def outcome(self) -> str:
        """ok / oom / timeout / error / not_applicable, from the child's record, else from pytest's."""
        recorded = as_map(self.view.raw.get("extra")).get(self.prefix + InferenceExtra.RUN_OUTCOME)
        if recorded:
            return str(recorded)
        if self.view.outcome == "skipped":
            return "skipped"
        if self.value("total_throughput") is not None:
            return "ok"
        return "error" if self.view.status == "error" else "—"

    @property
    def failed(self) -> bool:
        return self.outcome not in ("ok",) + NOT_RUN


def is_pair(v: TestView) -> bool:
    extra = as_map(v.raw.get("extra"))
    return "|" in str(param(v, "offload") or "") or any(InferenceExtra.key(s, InferenceExtra.RUN_OUTCOME) in extra for s in PAIR_SIDES)


def offload_of(v: TestView) -> str:
    return str(param(v, "offload") or "none")


def group_label(v: TestView, multi_target: bool) -> str:
    parts = [str(param(v, "model") or "model ?")]
    q = param(v, "quant_bits")
    if q not in (None, 0, 16, "", "none"):
        parts.append(f"{q}-bit")
    if param(v, "kv_offload"):
        parts.append("KV offload")
    pl, gl = param(v, "prompt_len"), param(v, "gen_len")
    if pl is not None or gl is not None:
        parts.append(f"prompt {pl or '?'} / gen {gl or '?'}")
    if multi_target and v.target:
        parts.append(f"@{v.target}")
    return " · ".join(parts)


def groups_of(views: list[TestView]) -> tuple[dict[str, list[Run]], dict[tuple[str, Any], TestView]]:
    """Runs per model configuration, and the pairing test per (configuration, batch) for its ratio.

    A single test wins over the same run inside a pairing test (the full profile reuses the NVMe run):
    it carries that configuration's own gate verdict.
    """
    multi = len({v.target for v in views}) > 1
    ordered = sorted(views, key=lambda v: (sort_key(param(v, "batch_size")), offload_of(v)))
    groups: dict[str, list[Run]] = {}
    pairs: dict[tuple[str, Any], TestView] = {}
    seen: set[tuple[str, Any, str]] = set()
    for v in ordered:
        if not is_pair(v):
            label = group_label(v, multi)
            groups.setdefault(label, []).append(Run(v, offload_of(v)))
            seen.add((label, param(v, "batch_size"), offload_of(v)))
    for v in ordered:
        if is_pair(v):
            label = group_label(v, multi)
            pairs[(label, param(v, "batch_size"))] = v
            for side in PAIR_SIDES:
                if (label, param(v, "batch_size"), side) not in seen:
                    groups.setdefault(label, []).append(Run(v, side, f"{side}_"))
    for runs in groups.values():
        runs.sort(key=lambda r: (sort_key(r.batch), offload_rank(r.offload)))
    # Configurations that measured something first; ones where everything was skipped at the end.
    ordered_groups = sorted(groups.items(), key=lambda kv: all(r.outcome in NOT_RUN for r in kv[1]))
    return dict(ordered_groups), pairs


def offload_rank(offload: str) -> int:
    return OFFLOAD_ORDER.index(offload) if offload in OFFLOAD_ORDER else len(OFFLOAD_ORDER)


def panel_for(title: str, runs: list[Run]) -> charts.Panel:
    series, fails = [], []
    for off in sorted({r.offload for r in runs}, key=offload_rank):
        # sort on the batch alone: two runs of one batch (a user test repeating a suite case) must not
        # make Python compare Run objects
        pts = sorted(((r.batch, r) for r in runs
                      if r.offload == off and r.batch is not None and r.value("total_throughput") is not None),
                     key=lambda p: p[0])
        if pts:
            lo_hi = [p[1].spread("total_throughput") for p in pts]
            series.append(charts.Series(f"{off} offload", [p[0] for p in pts],
                                        [p[1].value("total_throughput") for p in pts],
                                        [x[0] for x in lo_hi], [x[1] for x in lo_hi],
                                        colour=charts.NAMED_COLOURS.get(off)))
        fails += [charts.FailMark(r.batch, f"{off}: {shout(r.outcome)}", charts.NAMED_COLOURS.get(off))
                  for r in runs if r.offload == off and r.batch is not None and r.failed]
    batches = [r.batch for r in runs if r.batch is not None and r.batch > 0]
    return charts.Panel(title, series, "batch size", "tokens/s (total)", xticks(batches, lambda x: f"{x:g}"), fails)


def by_batch(runs: list[Run]) -> dict[Any, dict[str, Run]]:
    out: dict[Any, dict[str, Run]] = {}
    for r in runs:
        out.setdefault(param(r.view, "batch_size"), {})[r.offload] = r
    return dict(sorted(out.items(), key=lambda kv: sort_key(kv[0])))


def nvme_cpu_ratio(row: dict[str, Run], pair: TestView | None) -> float | None:
    """The pairing test's own ratio (per-loop, back to back) when there is one, else the two medians."""
    r = metric_value(pair.raw, "nvme_vs_cpu_throughput") if pair is not None else None
    if r is not None:
        return r
    nv, cpu = row.get("nvme"), row.get("cpu")
    a = nv.value("total_throughput") if nv else None
    b = cpu.value("total_throughput") if cpu else None
    return a / b if a is not None and b else None


def crossover(title: str, runs: list[Run], pairs: dict[tuple[str, Any], TestView]) -> str:
    """One sentence on where NVMe offload stands against CPU offload as the batch grows."""
    rows = by_batch(runs)
    for batch, row in rows.items():
        cpu, nv = row.get("cpu"), row.get("nvme")
        if cpu and nv and cpu.failed and nv.outcome == "ok":
            return (f"{title}: CPU offload ends in {shout(cpu.outcome)} at batch {batch} while NVMe offload "
                    f"still runs ({fmt(nv.value('total_throughput'), 'tokens/s')}).")
    ratios = [(b, r) for b, row in rows.items() if (r := nvme_cpu_ratio(row, pairs.get((title, b)))) is not None]
    if not ratios:
        return ""
    caught = next(((b, r) for b, r in ratios if r >= 1.0), None)
    if caught:
        return f"{title}: NVMe offload matches or beats CPU offload from batch {caught[0]} ({fmt_ratio(caught[1])})."
    trend = "narrows" if ratios[-1][1] > ratios[0][1] else "does not narrow"
    best = max(ratios, key=lambda br: br[1])
    return (f"{title}: NVMe offload stays below CPU offload up to batch {ratios[-1][0]} "
            f"(best {fmt_ratio(best[1])} at batch {best[0]}); the gap {trend} with batch size.")


def outcome_cell(oc: str) -> Cell:
    if oc in ("ok", "—"):
        return Cell(oc)
    return Cell(shout(oc), "v-skipped" if oc in NOT_RUN else "v-error")


def shout(outcome: str) -> str:
    return outcome.upper().replace("_", " ")


def side_by_side(groups: dict[str, list[Run]], pairs: dict[tuple[str, Any], TestView]) -> Table:
    offloads = sorted({r.offload for runs in groups.values() for r in runs}, key=offload_rank)
    rows = []
    for title, runs in groups.items():
        for batch, row in by_batch(runs).items():
            cells = [Cell(title), Cell(fmt(batch))]
            for off in offloads:
                r = row.get(off)
                if r is None:
                    cells.append(Cell("—"))
                elif r.outcome in ("ok", "—"):
                    cells.append(Cell(fmt(r.value("total_throughput"), "tokens/s"), "", f"#{r.view.anchor}"))
                else:
                    cells.append(replace(outcome_cell(r.outcome), href=f"#{r.view.anchor}"))
            ratio = nvme_cpu_ratio(row, pairs.get((title, batch)))
            cells.append(Cell(fmt_ratio(ratio), "" if ratio is None else ("good" if ratio >= 1 else "")))
            rows.append(cells)
    return Table(["model", "batch"] + [f"{o} offload" for o in offloads] + ["NVMe / CPU"], rows,
                 "Total throughput, offload devices side by side", numeric_from=1)


def run_cell(r: Run, metric: str) -> Cell:
    """Throughputs without their unit (the header says tok/s): keeps a 15-column table on one screen."""
    v = r.value(metric)
    if metric.endswith("_throughput"):
        return Cell(fmt(v))
    if metric in PARAM_COLUMNS:
        return Cell("—" if v is None else f"{v:.1%}")
    unit = str(as_map(as_map(r.view.raw.get("metrics")).get(r.prefix + metric)).get("unit") or "")
    return Cell(fmt(v, unit))


def run_tables(groups: dict[str, list[Run]]) -> list[Table]:
    """One table per model configuration: the label is the caption, so the rows stay one line each."""
    tables = []
    for title, runs in groups.items():
        cols = [(h, m) for h, m in RUN_COLUMNS if any(r.value(m) is not None for r in runs)]
        rows = [[Cell(fmt(param(r.view, "batch_size"))),
                 Cell(r.offload + (" (pair)" if r.prefix else ""), title=r.view.nodeid), outcome_cell(r.outcome)]
                + [run_cell(r, m) for _, m in cols] + [Cell(r.view.status, f"v-{r.view.status}", f"#{r.view.anchor}")]
                for r in runs]
        tables.append(Table(["batch", "offload", "outcome"] + [h for h, _ in cols] + ["verdict"], rows,
                            f"{title}: latency breakdown, memory and I/O per run", numeric_from=3, css="wide"))
    return tables


def breakdown(groups: dict[str, list[Run]]) -> list[tuple[str, list[charts.BarGroup]]]:
    panels = []
    for title, runs in groups.items():
        bars = []
        for r in runs:
            label = f"bs {param(r.view, 'batch_size')} · {r.offload}"
            pre, dec = r.value("prefill_latency"), r.value("decode_latency")
            if pre is None and dec is None:
                bars.append(charts.BarGroup(label, {}, shout(r.outcome) if r.outcome != "—" else "no data"))
            else:
                bars.append(charts.BarGroup(label, {"prefill": pre or 0.0, "decode": dec or 0.0}))
        panels.append((title, bars))
    return panels


def zi_section(views: list[TestView]) -> Section:
    sec = Section(SECTION.suite, SECTION.title, tests=views)
    groups, pairs = groups_of(views)
    # A configuration is charted when something ran (a failure is a result); all-skipped ones only get table rows.
    charted = {t: runs for t, runs in groups.items() if any(r.outcome not in NOT_RUN for r in runs)}
    panels = [panel_for(title, runs) for title, runs in charted.items()]
    if panels:
        sec.charts.append(draw("Total generation throughput vs batch size; ✕ marks runs that produced no number",
                               charts.line_chart, panels, height=3.2))
    sec.intro.extend(s for s in (crossover(t, runs, pairs) for t, runs in groups.items()) if s)
    roof = zi_roofline_panels(views)
    if roof:
        sec.charts.append(draw("Decode throughput vs read bandwidth per NVMe-offloaded case: the I/O slope, the "
                               "compute ceiling (weights resident), the model with the measured overlap, and the "
                               "drive's fio bandwidth (docs/roofline.md)", charts.line_chart, roof, height=3.2))
    sec.intro.extend(zi_roofline_sentences(views))
    if any(r.value(m) is not None for runs in groups.values() for r in runs
           for m in ("prefill_latency", "decode_latency")):
        sec.charts.append(draw("Latency breakdown per run: prefill (first forward) and decode (remaining tokens)",
                               charts.stacked_bars, breakdown(charted), xlabel="seconds"))
    sec.tables.append(side_by_side(groups, pairs))
    sec.tables.extend(run_tables(groups))
    return sec


SECTION = SectionBuilder("zero_inference", "DeepSpeed ZeRO-Inference", zi_section)
