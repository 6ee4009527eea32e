"""The terminal summary: a compact table of what the gate decided."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from pytest_nvme_ai.core.metrics import format_value
from pytest_nvme_ai.run.records import TestRecord

if TYPE_CHECKING:
    from pytest_nvme_ai.run.session import NvmeAiSession


def iter_table_rows(records: list[TestRecord]) -> Iterator[tuple[str, str, str, str, str, str]]:
    """Compact rows: a test with no baseline yet is one line; else its gated metrics, plus any
    ungated metric that moved beyond tolerance (worth a look, though it does not fail the test)."""
    for rec in records:
        if rec.comparisons and all(c.verdict == "new" for c in rec.comparisons):
            yield rec.nodeid, f"{len(rec.comparisons)} metrics", "-", "-", "-", "new"
            continue
        for c in rec.comparisons:
            if not c.gated and c.verdict in ("pass", "new", "incomparable"):
                continue
            base = format_value(c.baseline, c.unit) if c.baseline is not None else "-"
            now = format_value(c.now, c.unit)
            delta = f"{c.delta * 100:+.1f}%" if c.delta is not None else "-"
            yield rec.nodeid, c.metric, base, now, delta, c.verdict if c.gated else f"{c.verdict} (not gated)"


def write_summary(tr: Any, session: "NvmeAiSession") -> None:
    if not session.records:
        return
    rows = list(iter_table_rows(list(session.records.values())))
    tr.section("nvme-ai", sep="=")
    if rows:
        head = ("test", "metric", "baseline", "now", "delta", "verdict")
        widths = [min(70, max(len(r[i]) for r in rows + [head])) for i in range(6)]
        fmt = "  ".join("{:<%d}" % w for w in widths)
        tr.write_line(fmt.format(*head))
        for r in rows:
            cells = list(r)
            if len(cells[0]) > widths[0]:
                cells[0] = "…" + cells[0][-(widths[0] - 1):]
            tr.write_line(fmt.format(*cells), red=r[5] == "regression", green=r[5] == "improvement")
    else:
        tr.write_line("no measured metrics in this run")
    improvements = [r for r in rows if r[5] == "improvement"]
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
    for err in session.save_errors:
        tr.write_line(f"baseline NOT saved: {err}", red=True)
    for err in getattr(session, "late_errors", []):
        tr.write_line(f"nvme-ai output: {err}", red=True)
