"""ZeRO-Infinity training section: step time, swap bandwidth and I/O bound per case; NVMe vs CPU offload.

A pairing test (`test_nvme_vs_cpu`) holds two runs recorded with `nvme_`/`cpu_` prefixes; it is
unfolded into two rows here, as the ZeRO-Inference section does. Runs that ended without numbers
(OOM, timeout, error) are listed with their outcome, never dropped. The loss curve is drawn: a
training run whose loss did not fall on its fixed batch did not train.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pytest_nvme_ai.core.extras import TrainingExtra
from pytest_nvme_ai.report import charts
from pytest_nvme_ai.report.fmt import as_map, fmt, fmt_ratio
from pytest_nvme_ai.report.sections.base import Section, SectionBuilder, draw, param
from pytest_nvme_ai.report.view import Cell, Table, TestView, metric_value, status_cell

ORDER = 40
TITLE = "DeepSpeed ZeRO-Infinity training step"
PAIR_SIDES = ("nvme", "cpu")
# (header, metric): a column nobody measured is dropped.
COLUMNS = (("step time", "step_time"), ("tok/s", "train_throughput"), ("read / step", "target_read_bytes"),
           ("written / step", "target_write_bytes"), ("read bw", "target_read_bw"), ("write bw", "target_write_bw"),
           ("device read / step", "device_read_bytes"), ("device written / step", "device_write_bytes"),
           ("life at rated TBW", "endurance_life_days"), ("rated life used", "endurance_run_share"),
           ("I/O bound", "step_io_bound"), ("bound / step", "step_io_fraction"), ("peak RSS", "peak_rss"))


@dataclass(frozen=True)
class TrainRun:
    """One training run: a single test, or one side of a pairing test."""

    view: TestView
    prefix: str = ""

    @property
    def extra(self) -> Mapping[str, Any]:
        return as_map(self.view.raw.get("extra"))

    def value(self, metric: str) -> float | None:
        return metric_value(self.view.raw, self.prefix + metric)

    def get(self, key: str) -> Any:
        return self.extra.get(self.prefix + key)

    def param(self, name: str) -> Any:
        own = as_map(self.extra.get(self.prefix + TrainingExtra.PARAMS)) if self.prefix else {}
        return own.get(name, param(self.view, name))

    @property
    def outcome(self) -> str:
        recorded = self.get(TrainingExtra.RUN_OUTCOME)
        if recorded:
            return str(recorded)
        return "skipped" if self.view.outcome == "skipped" else ("ok" if self.value("step_time") else "—")

    @property
    def label(self) -> str:
        pipe = [n for n, k in (("read", "pipeline_read"), ("write", "pipeline_write")) if self.param(k) is True]
        parts = [str(self.param("model") or "?"), f"bs {self.param('batch_size')} × {self.param('seq_len')}",
                 str(self.param("offload") or "?")]
        if pipe:
            parts.append("pipeline " + "+".join(pipe))
        return " · ".join(parts)

    @property
    def losses(self) -> list[float]:
        curve = self.get(TrainingExtra.LOSS_CURVE)
        return [float(x) for x in curve] if isinstance(curve, list) else []


def runs_of(views: list[TestView]) -> list[TrainRun]:
    out: list[TrainRun] = []
    for v in views:
        extra = as_map(v.raw.get("extra"))
        sides = [s for s in PAIR_SIDES if TrainingExtra.key(s, TrainingExtra.RUN_OUTCOME) in extra]
        out += [TrainRun(v, f"{s}_") for s in sides] if sides else [TrainRun(v)]
    return out


def loss_text(r: TrainRun) -> str:
    xs = r.losses
    return f"{xs[0]:.3g} → {xs[-1]:.3g}" if xs else "—"


def outcome_cell(outcome: str) -> Cell:
    if outcome in ("ok", "—"):
        return Cell(outcome)
    css = "v-skipped" if outcome in ("skipped", "not_applicable") else "v-error"
    return Cell(outcome.upper().replace("_", " "), css)


def run_table(runs: list[TrainRun]) -> Table:
    cols = [(h, m) for h, m in COLUMNS if any(r.value(m) is not None for r in runs)]
    rows = []
    for r in runs:
        cells = [Cell(r.label + (" (pair)" if r.prefix else ""), title=r.view.nodeid), outcome_cell(r.outcome)]
        for _, m in cols:
            unit = str(as_map(as_map(r.view.raw.get("metrics")).get(r.prefix + m)).get("unit") or "")
            cells.append(Cell(fmt(r.value(m), "" if m == "train_throughput" else unit)))
        cells += [Cell(loss_text(r)), status_cell(r.view)]
        rows.append(cells)
    return Table(["case", "outcome"] + [h for h, _ in cols] + ["loss first → last", "verdict"], rows,
                 "Per case: median over the measured steps; the I/O bound is the step's bytes at fio's read and "
                 "write bandwidth on the same target", numeric_from=2, css="wide")


def pair_sentences(views: list[TestView]) -> list[str]:
    out = []
    for v in views:
        ratio = metric_value(v.raw, "nvme_vs_cpu_step")
        nv, cpu = metric_value(v.raw, "nvme_step_time"), metric_value(v.raw, "cpu_step_time")
        if ratio is None or nv is None or cpu is None:
            continue
        out.append(f"{TrainRun(v, 'nvme_').label.rsplit(' · ', 1)[0]}: a step takes {fmt(nv, 's')} with everything "
                   f"offloaded to the target and {fmt(cpu, 's')} in host memory (NVMe / CPU {fmt_ratio(ratio)}).")
    return out


def loss_panel(runs: list[TrainRun]) -> charts.Panel:
    series = [charts.Series(r.label, list(range(1, len(r.losses) + 1)), r.losses) for r in runs if r.losses]
    steps = max((len(r.losses) for r in runs), default=0)
    return charts.Panel("Training loss per step (warm-up first), one fixed batch", series, "step", "loss",
                        {float(i): str(i) for i in range(1, steps + 1)} if steps > 1 else {})


def training_section(views: list[TestView]) -> Section:
    sec = Section("zero_infinity", TITLE, tests=views)
    runs = runs_of(views)
    sec.intro.extend(pair_sentences(views))
    if any(r.losses for r in runs):
        sec.charts.append(draw("Loss per step: it must fall on a fixed batch", charts.line_chart,
                               [loss_panel(runs)], cols=1, height=3.0))
    sec.tables.append(run_table(runs))
    return sec



SECTION = SectionBuilder("zero_infinity", TITLE, training_section)
