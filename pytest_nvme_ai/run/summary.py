"""What the terminal shows: the header (targets, devices, baselines, warnings) and the summary, a compact
table of what the gate decided and where the run's outputs went."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from pytest_nvme_ai.core.extras import QualExtra
from pytest_nvme_ai.core.metrics import format_value
from pytest_nvme_ai.core.targets import Target
from pytest_nvme_ai.gate.window import MIN_SESSIONS
from pytest_nvme_ai.run import environment   # looked up at call time: a conftest may stand in for fio_version
from pytest_nvme_ai.run.ab import ab_ratio_text
from pytest_nvme_ai.run.records import TestRecord

if TYPE_CHECKING:
    from pytest_nvme_ai.run.session import NvmeAiSession


Row = tuple[str, str, str, str, str, str, str]
HEAD: Row = ("test", "metric", "baseline", "now", "delta", "min det.", "verdict")


def header_lines(s: "NvmeAiSession") -> list[str]:
    st = s.settings
    lines = [f"nvme-ai: profile {st.profile_name}, tolerance {st.tolerance:g}%, run {s.run_id}, "
             f"fio {environment.fio_version() or 'not found (apt-get install fio)'}"]
    lines.extend(s.ab.describe())
    for t in s.targets:
        summary = t.device.summary() if t.device is not None else "device unknown"
        lines.append(f"nvme-ai target {t.id}: {t.path}{' (embedded default)' if t.embedded else ''} -> {summary}")
        lines.append(_baseline_line(s, t))
        lines.extend(f"nvme-ai WARNING {t.id}: {w}" for w in target_warnings(t, s.targets.leftovers.get(t.label, [])))
        lines.extend(f"nvme-ai WARNING {w}" for w in s.baselines.gate_warnings if w.startswith(f"{t.id}: "))
    lines.extend(f"nvme-ai WARNING {w}" for w in s.targets.cgroup_leftovers)
    return lines


def _baseline_line(s: "NvmeAiSession", t: Target) -> str:
    sibling = s.baselines.sibling(t.label)
    if sibling is not None:
        return (f"nvme-ai baseline for {t.id}: none for this exact device; comparing with {sibling} (same model, "
                f"other firmware or PCIe link): results are 'incomparable' ('error' with --nvme-ai-strict)")
    bf = s.baselines.file(t.label)
    path = s.baselines.paths[t.label]
    return (f"nvme-ai baseline for {t.id}: {path} ({len(bf.entries)} entries)" if bf else
            f"nvme-ai baseline for {t.id}: none yet at {path}")


def warning_lines(s: "NvmeAiSession") -> list[str]:
    """The header's warnings alone (for -q, where pytest prints no header)."""
    lines = [f"nvme-ai WARNING {t.id}: {w}" for t in s.targets
             for w in target_warnings(t, s.targets.leftovers.get(t.label, []))]
    return lines + [f"nvme-ai WARNING {w}" for w in (*s.targets.cgroup_leftovers, *s.baselines.gate_warnings)]


def target_warnings(t: Target, leftovers: list[str]) -> list[str]:
    out = []
    pcie = (t.device.to_dict().get("pcie") or {}) if t.device is not None else {}
    if pcie.get("downtrained"):
        out.append(f"PCIe link trained below its maximum: Gen{pcie.get('current_gen')} x{pcie.get('current_width')} "
                   f"of Gen{pcie.get('max_gen')} x{pcie.get('max_width')}; bandwidth is capped by the link")
    if leftovers:
        # Their session lock is not held by anyone: the runs that made them are dead (crash, kill -9).
        out.append(f"leftover private directories of runs that died without cleaning up: {', '.join(leftovers)} "
                   f"in {t.path} (no live session holds them: safe to remove, e.g. rm -r {t.path / leftovers[0]})")
    return out


def mdc_text(c: Any) -> str:
    """The minimum detectable change (percent) of a comparison; '?' while the window is too short."""
    if c.verdict in ("new", "incomparable"):
        return "-"
    if c.min_detectable_change is None:
        return f"? ({c.window_sessions}/{MIN_SESSIONS} sess.)"
    return f"{c.min_detectable_change:.0f}%" + ("!" if c.blind else "")


def iter_table_rows(records: list[TestRecord]) -> Iterator[Row]:
    """Compact rows: a test with no baseline yet is one line; else its gated metrics, plus any
    ungated metric that moved beyond tolerance (worth a look, though it does not fail the test)."""
    for rec in records:
        if rec.comparisons and all(c.verdict == "new" for c in rec.comparisons):
            yield rec.nodeid, f"{len(rec.comparisons)} metrics", "-", "-", "-", "-", "new"
            continue
        for c in rec.comparisons:
            if not c.gated and c.verdict in ("pass", "new", "incomparable", "unknown"):
                continue
            base = format_value(c.baseline, c.unit) if c.baseline is not None else "-"
            now = format_value(c.now, c.unit)
            delta = f"{c.delta * 100:+.1f}%" if c.delta is not None else "-"
            yield (rec.nodeid, c.metric, base, now, delta, mdc_text(c),
                   c.verdict if c.gated else f"{c.verdict} (not gated)")


def write_summary(tr: Any, session: "NvmeAiSession") -> None:
    if not session.records:
        return
    rows = list(iter_table_rows(list(session.records.values())))
    tr.section("nvme-ai", sep="=")
    if rows:
        widths = [min(70, max(len(r[i]) for r in rows + [HEAD])) for i in range(len(HEAD))]
        fmt = "  ".join("{:<%d}" % w for w in widths)
        tr.write_line(fmt.format(*HEAD))
        for r in rows:
            cells = list(r)
            if len(cells[0]) > widths[0]:
                cells[0] = "…" + cells[0][-(widths[0] - 1):]
            tr.write_line(fmt.format(*cells), red=r[6] == "regression", green=r[6] == "improvement",
                          yellow=r[6] == "unknown")
        if any(r[5].endswith("!") for r in rows):
            tr.write_line("min det. = the smallest change the gate catches 9 times in 10 on this runner (from the "
                          "baseline window); '!' = the drift between sessions hides a change of the tolerance's "
                          "size (more repetitions, a longer run or a quieter runner)")
    elif not any(r.ab for r in session.records.values()):
        tr.write_line("no measured metrics in this run")
    write_ab_table(tr, list(session.records.values()))
    for line in rigor_lines(list(session.records.values())):
        tr.write_line(line, yellow=True)
    improvements = [r for r in rows if r[6] == "improvement"]
    if improvements:
        tr.write_line(f"{len(improvements)} metric(s) improved beyond tolerance: refresh the baseline with "
                      "--nvme-ai-save-baseline (or `nvme-ai baseline promote`) once the change is reviewed")
    state, out = session.state, session.outputs
    if state.status != "complete":
        # An interrupted or cut-short run must never read as a green one.
        tr.write_line(f"nvme-ai run {state.status.upper()}: {state.detail}", red=True, bold=True)
    if out.results_path:
        tr.write_line(f"results: {out.results_path}")
    if out.report_path:
        tr.write_line(f"report:  {out.report_path}")
    if out.history_line:
        tr.write_line(f"nvme-ai {out.history_line}", red=out.history_failed, bold=out.history_failed)
    for p in out.saved_baselines:
        tr.write_line(f"baseline saved: {p}")
    if out.saved_baselines and out.saved_short_window:
        tr.write_line(f"baseline saved with {len(out.saved_short_window)} session(s) that failed only by the "
                      f"within-session rule while their window was too short to know the drift (kept, so the window "
                      f"learns the runner's drift): {', '.join(out.saved_short_window)}")
    for err in out.save_errors:
        tr.write_line(f"baseline NOT saved: {err}", red=True)
    for err in out.late_errors:
        tr.write_line(f"nvme-ai output: {err}", red=True)


def rigor_lines(records: list[TestRecord]) -> list[str]:
    """Qualification flags (docs/qualification.md): points not steady (not gated), host-bound, throttled."""
    lines: list[str] = []
    steady = [r for r in records if isinstance(r.extra.get(QualExtra.STEADY_STATE), dict)]
    for rec in steady:
        ss = rec.extra[QualExtra.STEADY_STATE]
        if not ss.get("reached"):
            lines.append(f"NOT STEADY (not gated): {rec.nodeid}: {ss.get('reason')}")
    for rec in records:
        hb = rec.extra.get(QualExtra.HOST_BOUND)
        if isinstance(hb, dict) and hb.get("flagged"):
            lines.append(f"HOST-BOUND: {rec.nodeid}: {hb.get('reason')}")
        health = rec.extra.get(QualExtra.HEALTH)
        if isinstance(health, dict) and any(health.get("repetitions_throttled") or ()):
            lines.append(f"THROTTLED: {rec.nodeid}: {health.get('throttle_reason')}")
    if steady:
        n = sum(bool(r.extra[QualExtra.STEADY_STATE].get("reached")) for r in steady)
        crit = steady[0].extra[QualExtra.STEADY_STATE].get("criterion")
        lines.append(f"steady state: {n} of {len(steady)} point(s) steady ({crit})")
    return lines


AB_HEAD: tuple[str, ...] = ("test", "metric", "B/A [interval]", "band", "pairs", "noise", "verdict")
AB_COLOURS = {"worse": "red", "unknown": "yellow", "same": "green", "better": "green"}


def ab_rows(records: list[TestRecord]) -> list[tuple[str, ...]]:
    """One row per A/B test and decided metric (a test with several fio points: one per point)."""
    rows: list[tuple[str, ...]] = []
    for rec in records:
        for point in (rec.ab or {}).get("points") or []:
            for name, d in (point.get("metrics") or {}).items():
                label = rec.nodeid + (f" [{point['label']}]" if len(rec.ab["points"]) > 1 else "")  # type: ignore[index]
                noise = d.get("noise_pct")
                rows.append((label, name, ab_ratio_text(d), f"±{d.get('tolerance', 0):g}%", str(d.get("pairs")),
                             "-" if noise is None else f"{noise:.1f}%", str(d.get("verdict"))))
    return rows


def write_ab_table(tr: Any, records: list[TestRecord]) -> None:
    """The A/B table: per test and metric the ratio B/A with its interval, the band, pairs and verdict."""
    rows = ab_rows(records)
    if not rows:
        return
    first = next(r.ab for r in records if r.ab)
    tr.write_line(f"A/B ({first.get('describe')}; arm B as configured"
                  f"{', reads capped at ' + format(first['read_cap_b'], 'g') if first.get('read_cap_b') else ''}):")
    widths = [min(70, max(len(r[i]) for r in rows + [AB_HEAD])) for i in range(len(AB_HEAD))]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    tr.write_line(fmt.format(*AB_HEAD))
    for r in rows:
        cells = list(r)
        if len(cells[0]) > widths[0]:
            cells[0] = "…" + cells[0][-(widths[0] - 1):]
        colour = AB_COLOURS.get(r[6], "yellow")
        tr.write_line(fmt.format(*cells), **{colour: True})
    unknown = [r for r in rows if r[6] == "unknown"]
    if unknown:
        tr.write_line(f"{len(unknown)} A/B check(s) unknown: the budget ran out before the interval left or fit "
                      "the band (results.json says about how many pairs would decide); raise --nvme-ai-ab-budget, "
                      "or use a quieter runner", yellow=True)
