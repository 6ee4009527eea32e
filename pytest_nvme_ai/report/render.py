"""Run page: results.json -> view model -> one self-contained HTML document.

Templates only loop and print: every figure is formatted here, so the page
reads the same in every section and a template cannot invent a number. All
reads of results.json go through `.get` with defaults because a page must
render from any valid file (a partial run, a suite missing, an old plugin).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from pytest_nvme_ai.core.redact import redact_argv
from pytest_nvme_ai.report.fmt import as_list, as_map, first_line, fmt, fmt_delta, num
from pytest_nvme_ai.report.view import ATTENTION, STATUSES, TestView, baseline_metrics, view_of


# ---- verdict at a glance --------------------------------------------------------------------
@dataclass(frozen=True)
class Attention:
    status: str
    test: TestView
    metric: str
    baseline: str
    now: str
    delta: str
    note: str


def counts(views: Iterable[TestView]) -> dict[str, int]:
    out = {s: 0 for s in STATUSES}
    for v in views:
        out[v.status] = out.get(v.status, 0) + 1
    return out


# run.status values other than "complete": the banner says so before any verdict.
RUN_STATUS_BANNER = {"interrupted": "INTERRUPTED", "incomplete": "INCOMPLETE", "error": "RUN ERROR"}


def overall(c: Mapping[str, int], total: int, run_status: str | None = None) -> tuple[str, str]:
    if run_status in RUN_STATUS_BANNER:
        # An interrupted run never looks green, whatever the tests that did run said.
        return RUN_STATUS_BANNER[str(run_status)], "v-error"
    if c.get("regression"):
        return "REGRESSION", "v-regression"
    if c.get("error"):
        return "ERRORS", "v-error"
    if total == 0 or c.get("skipped") == total:
        return "NOTHING MEASURED", "v-incomparable"
    if c.get("new") and not c.get("pass") and not c.get("improvement") and not c.get("unknown"):
        # Nothing was compared: "PASS" would claim a gate that did not happen.
        return "NO BASELINE YET", "v-new"
    if c.get("unknown"):
        # Passed, but some checks could not see a change of the tolerance's size: never green.
        return f"PASS, {c['unknown']} UNKNOWN", "v-unknown"
    return "PASS", "v-pass"


def attention(views: Iterable[TestView]) -> list[Attention]:
    """Metric rows that need a human: regressions first, worst delta first."""
    rows: list[tuple[int, float, Attention]] = []
    for v in views:
        found = False
        for name, c in baseline_metrics(v.raw).items():
            if not isinstance(c, Mapping) or c.get("verdict") not in ATTENTION or c.get("gated") is False:
                continue
            found = True
            unit = str(c.get("unit") or "")
            d = num(c.get("delta")) or 0.0
            rows.append((ATTENTION.index(str(c["verdict"])), -abs(d), Attention(
                str(c["verdict"]), v, name, fmt(c.get("baseline"), unit), fmt(c.get("now"), unit),
                fmt_delta(c.get("delta")), str(c.get("message") or ""))))
        if not found and v.status in ATTENTION:
            note = first_line(v.raw.get("longrepr")) or (f"run outcome: {v.run_outcome}" if v.run_outcome else "")
            if v.run_outcome and v.run_outcome != "ok" and note and v.run_outcome not in note:
                note = f"{v.run_outcome}: {note}"
            rows.append((ATTENTION.index(v.status), 0.0, Attention(v.status, v, "", "", "", "", note)))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows]


# ---- page -----------------------------------------------------------------------------------
def run_info(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    run = as_map(data.get("run"))
    commit = as_map(run.get("commit"))
    cid = str(commit.get("id") or "")[:12]
    commit_text = " ".join(x for x in (cid, f"({commit['branch']})" if commit.get("branch") else "",
                                       "dirty" if commit.get("dirty") else "") if x) or "—"
    tol = num(run.get("tolerance"))
    status = str(run.get("status") or "—")
    return [
        ("Run", str(run.get("id") or "—")),
        ("Status", status + (f" ({run['status_detail']})" if run.get("status_detail") else "")),
        ("Profile", str(run.get("profile") or "—")),
        ("Started", str(run.get("started") or "—")),
        ("Finished", str(run.get("finished") or "—")),
        ("Tolerance", f"±{tol:g}%" if tol is not None else "—"),
        ("Baseline window", f"{run['baseline_window']} sessions" if run.get("baseline_window") else "—"),
        *[("Gate warning", str(w)) for w in as_list(run.get("gate_warnings"))],
        ("Commit", commit_text),
        ("Exit status", str(run.get("exitstatus", "—"))),
        ("Plugin", str(run.get("plugin_version") or "—")),
        ("Command", " ".join(redact_argv(as_list(run.get("argv")))) or "—"),   # an older results.json kept secrets
    ]


def run_notices(data: Mapping[str, Any]) -> list[str]:
    """Lines shown under the banner: how the run ended, and dead runs' leftovers in the targets."""
    run = as_map(data.get("run"))
    out = []
    if run.get("status") not in (None, "complete"):
        out.append(f"Run {run.get('status')}: {run.get('status_detail') or ''}".rstrip(": "))
    for t in as_list(data.get("targets")):
        left = [str(x) for x in as_list(as_map(t).get("leftovers"))]
        if left:
            out.append(f"Leftover private directories of runs that died without cleaning up in "
                       f"{as_map(t).get('path')}: {', '.join(left)}")
    return out


def build_tests(data: Mapping[str, Any], out_dir: Path, run_dir: Path | None) -> list[TestView]:
    return [view_of(i, t, out_dir, run_dir) for i, t in enumerate(as_list(data.get("tests")))
            if isinstance(t, Mapping)]


def environment(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    from pytest_nvme_ai.report.drives import environment_rows

    return environment_rows(as_map(data.get("environment")))


def run_context(data: Mapping[str, Any], out: Path, run_dir: Path | None) -> dict[str, Any]:
    from pytest_nvme_ai.report.drives import drive_view
    from pytest_nvme_ai.report.sections import build_sections  # the suites' sections: heavier, page-only

    views = build_tests(data, out.parent, run_dir)
    c = counts(views)
    run = as_map(data.get("run"))
    verdict, verdict_css = overall(c, len(views), str(run.get("status") or "") or None)
    targets = as_list(data.get("targets"))
    return {
        "run_notices": run_notices(data),
        "title": f"pytest-nvme-ai run {run.get('id') or ''}".strip(),
        "verdict": verdict, "verdict_css": verdict_css, "counts": c, "total": len(views),
        "attention": attention(views), "run_info": run_info(data),
        "drives": [drive_view(t) for t in targets if isinstance(t, Mapping)],
        "environment": environment(data), "sections": ab_first(views) + build_sections(views),
    }


def ab_first(views: list[TestView]) -> list[Any]:
    """The A/B section (report/sections/ab.py), first when the run compared two arms; else nothing."""
    from pytest_nvme_ai.report.sections.ab import ab_section

    sec = ab_section(views)
    return [sec] if sec is not None else []


# The `unknown` verdict's colour (yellow: passed, not green). The stylesheet template has no rule for it yet;
# until it does (one line in templates/style.css.j2), the page gets it here, inside its own <style>.
UNKNOWN_CSS = (".v-unknown{background:#fef9c3;color:#854d0e}"
               "td.v-unknown{text-align:center}")


def render_page(template: str, context: Mapping[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,                  # every string from results.json is untrusted text
        undefined=jinja2.StrictUndefined,  # a template typo fails the tests, not silently blanks a cell
        trim_blocks=True, lstrip_blocks=True,
    )
    page = env.get_template(template).render(**context)
    return page if ".v-unknown{" in page else page.replace("</style>", UNKNOWN_CSS + "\n</style>", 1)
