"""The terminal summary: a compact table of what the gate decided."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from pytest_nvme_ai.core.metrics import format_value
from pytest_nvme_ai.gate.window import MIN_SESSIONS
from pytest_nvme_ai.run.records import TestRecord

if TYPE_CHECKING:
    from pytest_nvme_ai.run.session import NvmeAiSession


Row = tuple[str, str, str, str, str, str, str]
HEAD: Row = ("test", "metric", "baseline", "now", "delta", "min det.", "verdict")


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
            if not c.gated and c.verdict in ("pass", "new", "incomparable"):
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
            tr.write_line(fmt.format(*cells), red=r[6] == "regression", green=r[6] == "improvement")
        if any(r[5].endswith("!") for r in rows):
            tr.write_line("min det. = the smallest change the gate catches 9 times in 10 on this runner (from the "
                          "baseline window); '!' = the drift between sessions hides a change of the tolerance's "
                          "size (more repetitions, a longer run or a quieter runner)")
    else:
        tr.write_line("no measured metrics in this run")
    for line in rigor_lines(list(session.records.values())):
        tr.write_line(line, yellow=True)
    improvements = [r for r in rows if r[6] == "improvement"]
    if improvements:
        tr.write_line(f"{len(improvements)} metric(s) improved beyond tolerance: refresh the baseline with "
                      "--nvme-ai-save-baseline (or `nvme-ai baseline promote`) once the change is reviewed")
    if session.status != "complete":
        # An interrupted or cut-short run must never read as a green one.
        tr.write_line(f"nvme-ai run {session.status.upper()}: {session.status_detail}", red=True, bold=True)
    if session.results_path:
        tr.write_line(f"results: {session.results_path}")
    if session.report_path:
        tr.write_line(f"report:  {session.report_path}")
    for p in session.saved_baselines:
        tr.write_line(f"baseline saved: {p}")
    if session.saved_baselines and session.saved_short_window:
        tr.write_line(f"baseline saved with {len(session.saved_short_window)} session(s) that failed only by the "
                      f"within-session rule while their window was too short to know the drift (kept, so the window "
                      f"learns the runner's drift): {', '.join(session.saved_short_window)}")
    for err in session.save_errors:
        tr.write_line(f"baseline NOT saved: {err}", red=True)
    for err in getattr(session, "late_errors", []):
        tr.write_line(f"nvme-ai output: {err}", red=True)


def rigor_lines(records: list[TestRecord]) -> list[str]:
    """Qualification flags (docs/qualification.md): points not steady (not gated), host-bound, throttled."""
    lines: list[str] = []
    steady = [r for r in records if isinstance(r.extra.get("steady_state"), dict)]
    for rec in steady:
        ss = rec.extra["steady_state"]
        if not ss.get("reached"):
            lines.append(f"NOT STEADY (not gated): {rec.nodeid}: {ss.get('reason')}")
    for rec in records:
        hb = rec.extra.get("host_bound")
        if isinstance(hb, dict) and hb.get("flagged"):
            lines.append(f"HOST-BOUND: {rec.nodeid}: {hb.get('reason')}")
        health = rec.extra.get("health")
        if isinstance(health, dict) and any(health.get("repetitions_throttled") or ()):
            lines.append(f"THROTTLED: {rec.nodeid}: {health.get('throttle_reason')}")
    if steady:
        n = sum(bool(r.extra["steady_state"].get("reached")) for r in steady)
        crit = steady[0].extra["steady_state"].get("criterion")
        lines.append(f"steady state: {n} of {len(steady)} point(s) steady ({crit})")
    return lines
