"""Qualification rigor in the seq-read section: steady state, host-bound flags, drive health during
the run (temperature next to bandwidth), and the drives-at-once (concurrent) and remote runs.

Everything here reads what measure/fio recorded in each test's `extra` (docs/qualification.md):
`steady_state`, `host_bound`, `health`, `timeline`, `concurrent`, `precondition`.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from pytest_nvme_ai.core.extras import QualExtra
from pytest_nvme_ai.core.results import SEQ_READ_CONCURRENT, SEQ_READ_REMOTE, SuiteTest
from pytest_nvme_ai.core.text import size_or_none
from pytest_nvme_ai.report import charts
from pytest_nvme_ai.report.fmt import as_list, as_map, fmt, fmt_size, num
from pytest_nvme_ai.report.view import Cell, Table, TestView, metric_value, status_cell

GB = 1e9


def extra(v: TestView) -> Mapping[str, Any]:
    return as_map(v.raw.get("extra"))


def is_concurrent(v: TestView) -> bool:
    return SuiteTest.of(v.raw) == SEQ_READ_CONCURRENT


def is_remote(v: TestView) -> bool:
    return SuiteTest.of(v.raw) == SEQ_READ_REMOTE


def split(views: list[TestView]) -> tuple[list[TestView], list[TestView], list[TestView]]:
    """(per-target points, concurrent runs, remote runs): the per-target charts must not mix in a set's sum."""
    conc = [v for v in views if is_concurrent(v)]
    remote = [v for v in views if is_remote(v)]
    return [v for v in views if v not in conc and v not in remote], conc, remote


def _param(v: TestView, name: str) -> Any:
    return as_map(v.raw.get("params")).get(name)


def point_text(v: TestView) -> str:
    bs = size_or_none(_param(v, "bs"))
    return f"{fmt_size(bs) if bs else '—'} QD{_param(v, 'iodepth') or '—'} ×{_param(v, 'numjobs') or 1}"


# ---- steady state and flags --------------------------------------------------------------------
def steady_cell(v: TestView) -> Cell:
    ss = as_map(extra(v).get(QualExtra.STEADY_STATE))
    if not ss:
        return Cell("not sought", "muted", title="steady state is off for this profile (--nvme-ai-ss-budget)")
    if ss.get("reached"):
        return Cell(f"steady after {fmt(ss.get('after_s'), 's')}", "v-pass", title=str(ss.get("reason") or ""))
    return Cell("NOT steady: not gated", "v-incomparable", title=str(ss.get("reason") or ""))


def flags_cell(v: TestView) -> Cell:
    ex = extra(v)
    flags, why = [], []
    hb = as_map(ex.get(QualExtra.HOST_BOUND))
    if hb.get("flagged"):
        flags.append("host-bound")
        why.append(str(hb.get("reason") or ""))
    health = as_map(ex.get(QualExtra.HEALTH))
    if any(as_list(health.get("repetitions_throttled"))):
        flags.append("throttled")
        why.append(str(health.get("throttle_reason") or ""))
    if not flags:
        return Cell("—", "muted", title=str(hb.get("reason") or ""))
    return Cell(", ".join(flags), "v-regression", title="; ".join(why))


def _fio_ss_text(rep: Mapping[str, Any]) -> str:
    return (f"{'attained' if rep.get('fio_attained') else 'not attained'}; slope excursion "
            f"{fmt(rep.get('slope_excursion_pct'), '')}%, range {fmt(rep.get('range_pct'), '')}%")


def rigor_table(views: Sequence[TestView]) -> Table | None:
    """One row per point: steady-state verdict with fio's parsed result, CPU, and the flags."""
    if not any(extra(v).get(QualExtra.STEADY_STATE) or extra(v).get(QualExtra.HOST_BOUND) for v in views):
        return None
    multi = len({v.target for v in views}) > 1
    head = ["target"] * multi + ["point", "steady state", "ran (s, per repetition)", "fio steady-state result",
                                 "fio CPU (busiest job)", "flags", "verdict"]
    rows = []
    for v in views:
        ex = extra(v)
        ss = as_map(ex.get(QualExtra.STEADY_STATE))
        reps = [as_map(r) for r in as_list(ss.get("repetitions"))]
        hb = as_map(ex.get(QualExtra.HOST_BOUND))
        cpus = [num(as_map(r).get("job_cpu_pct")) for r in as_list(hb.get("repetitions"))]
        cpu = max((c for c in cpus if c is not None), default=None)
        rows.append([Cell(v.target)] * multi + [
            Cell(point_text(v)), steady_cell(v),
            Cell(", ".join(f"{num(r.get('ran_s')) or 0:.1f}" for r in reps) or "—"),
            Cell(" | ".join(_fio_ss_text(r) for r in reps) or "—", title=str(ss.get("criterion") or "")),
            Cell(f"{cpu:.0f}% of a core" if cpu is not None else "—"), flags_cell(v), status_cell(v)])
    caption = "Steady state, CPU and flags per point"
    crit = next((as_map(extra(v).get(QualExtra.STEADY_STATE)).get("criterion") for v in views
                 if extra(v).get(QualExtra.STEADY_STATE)), None)
    if crit:
        caption += f" — criterion: {crit}"
    return Table(head, rows, caption, numeric_from=len(head))


def intro_lines(views: Sequence[TestView]) -> list[str]:
    out = []
    sought = [v for v in views if extra(v).get(QualExtra.STEADY_STATE)]
    if sought:
        n = sum(bool(as_map(extra(v).get(QualExtra.STEADY_STATE)).get("reached")) for v in sought)
        out.append(f"Steady state: {n} of {len(sought)} point(s) reached it within the budget. A point that did not "
                   f"is reported but not gated (\"not steady: not gated\").")
    bound = [v for v in views if as_map(extra(v).get(QualExtra.HOST_BOUND)).get("flagged")]
    if bound:
        out.append(f"{len(bound)} point(s) are host-bound: their figures describe the host's CPU, not the drive.")
    pre = [as_map(extra(v).get(QualExtra.PRECONDITION)) for v in views if extra(v).get(QualExtra.PRECONDITION)]
    if pre:
        out.append("Preconditioning: " + str(pre[0].get("reason") or ""))
    return out


# ---- health during the run ----------------------------------------------------------------------
def health_cards_and_chart(views: Sequence[TestView]) -> tuple[list[tuple[str, list[tuple[str, str]]]], Any]:
    """Per target: a card of what SMART said during the run, and the panels: bandwidth over the run's time
    next to the temperature curve (same time axis)."""
    by_target: dict[str, list[TestView]] = {}
    for v in views:
        by_target.setdefault(v.target, []).append(v)
    starts = [num(as_list(t)[0]) for v in views for t in as_list(extra(v).get(QualExtra.TIMELINE)) if as_list(t)]
    t0 = min((s for s in starts if s is not None), default=None)
    cards, panels = [], []
    for target, tviews in by_target.items():
        healths = [as_map(extra(v).get(QualExtra.HEALTH)) for v in tviews if extra(v).get(QualExtra.HEALTH)]
        samples = sorted({tuple(as_list(s)) for h in healths for s in as_list(h.get("samples"))
                          if as_list(s) and num(as_list(s)[0]) is not None}, key=lambda s: s[0])
        unavailable = next((str(h["unavailable"]) for h in healths if h.get("unavailable")), "")
        throttled = [v for v in tviews if any(as_list(as_map(extra(v).get(QualExtra.HEALTH)).get("repetitions_throttled")))]
        temps = [t for t in (num(s[1]) for s in samples if len(s) > 1) if t is not None]
        rows = [("SMART samples during the measurements", str(len(samples)) if samples else
                 f"none: {unavailable or 'not recorded'}")]
        if temps:
            rows.append(("temperature", f"{min(temps):g}–{max(temps):g} °C"))
            rows.append(("points measured while throttling", str(len(throttled)) if throttled else "none"))
        cards.append((f"Drive health during the run (@{target})" if target else "Drive health during the run", rows))
        if t0 is None:
            continue
        where = f" @{target}" if len(by_target) > 1 else ""
        pts = sorted(((num(as_list(t)[0]) or 0.0, num(as_list(t)[1]) or 0.0, num(as_list(t)[2]))
                      for v in tviews for t in as_list(extra(v).get(QualExtra.TIMELINE)) if len(as_list(t)) >= 3),
                     key=lambda p: p[0])
        if pts:
            xs = [((a + b) / 2) - t0 for a, b, _ in pts]
            ys = [None if bw is None else bw / GB for _, _, bw in pts]
            panels.append(charts.Panel(f"Read bandwidth over the run{where}", [charts.Series("fio repetition", xs, ys)],
                                       "seconds since the first measurement", "GB/s"))
        if temps:
            xs = [num(s[0]) - t0 for s in samples if num(s[1]) is not None]  # type: ignore[operator]
            panels.append(charts.Panel(f"Drive temperature (SMART){where}",
                                       [charts.Series("composite temperature", xs, temps, marker=".",
                                                      colour="#D55E00")],
                                       "seconds since the first measurement", "°C"))
    return cards, panels


# ---- several drives at once, and remote drives ------------------------------------------------
def concurrent_table(views: Sequence[TestView]) -> Table | None:
    measured = [v for v in views if metric_value(v.raw, "bw") is not None]
    if not measured:
        return None
    head = ["drives", "point", "aggregate (last-done)", "first-done", "per-drive bandwidth", "first / last done",
            "flags", "verdict"]
    rows = []
    for v in measured:
        runs = [as_map(r) for r in as_list(extra(v).get(QualExtra.CONCURRENT))]
        labels = sorted({k for r in runs for k in as_map(r.get("drives"))})
        per_drive = []
        for label in labels:
            m = metric_value(v.raw, f"bw_drive_{label}")
            per_drive.append(f"@{label} {fmt(m, 'B/s')}")
        last = runs[-1] if runs else {}
        rows.append([Cell(str(_param(v, "n_drives") or len(labels))), Cell(point_text(v)), Cell(fmt(
            metric_value(v.raw, "bw"), "B/s")), Cell(fmt(metric_value(v.raw, "bw_first_done"), "B/s")),
            Cell(", ".join(per_drive) or "—"),
            Cell(f"@{last.get('first_done')} / @{last.get('last_done')}" if last else "—"), flags_cell(v),
            status_cell(v)])
    return Table(head, rows, "All targets at once (--nvme-ai-concurrent): one fio run, one job per drive. "
                 "Last-done: all bytes / time until the slowest drive finished; first-done: the sum of the drives' "
                 "rates while all were reading (elbencho's two figures)", numeric_from=2)


def remote_table(views: Sequence[TestView]) -> Table | None:
    if not views:
        return None
    head = ["host", "remote directory", "point", "bandwidth", "IOPS", "verdict"]
    rows = [[Cell(f"{_param(v, 'host') or '—'}:{_param(v, 'port') or ''}"), Cell(str(_param(v, "remote_dir") or "—")),
             Cell(point_text(v)), Cell(fmt(metric_value(v.raw, "bw"), "B/s")),
             Cell(fmt(metric_value(v.raw, "iops"), "IO/s")), status_cell(v)] for v in views]
    return Table(head, rows, "Remote drives through fio client/server (--nvme-ai-fio-client HOST=DIR)", numeric_from=3)
