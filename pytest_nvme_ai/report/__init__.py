"""HTML report: results.json -> one self-contained page (inline CSS and SVG, no scripts, no network).

Public entry points:
- `render_run(data, out, run_dir)`: called by the session at the end of a run.
- `cli_report(args)`: `nvme-ai report RESULTS.json [-o FILE]`.
- `nvme-ai compare` lives in report/compare.py (`cli_compare`: text, json or html, `--exit-code`).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping, Sequence

from pytest_nvme_ai.core.results import load_results, results_path  # re-exported: the CLI reads them here
from pytest_nvme_ai.core.fsutil import atomic_write_text

__all__ = ["render_run", "render_compare", "cli_report", "load_results", "results_path"]


def render_run(data: Mapping[str, Any], out: Path, run_dir: Path | None = None, trends: Sequence[Any] = ()) -> None:
    """Write the run page to `out` atomically; artifact links are made relative to `out`.
    `trends` (core.history_types.Trend, from the history store) adds the trend section."""
    from pytest_nvme_ai.report.render import render_page, run_context

    out = Path(out)
    context = run_context(data, out, Path(run_dir) if run_dir is not None else None)
    if trends:
        from pytest_nvme_ai.report.trends import trend_section

        context["sections"] = [*context["sections"], trend_section(trends)]
    html = render_page("run.j2", context)
    atomic_write_text(out, html)


def render_compare(a: Mapping[str, Any], b: Mapping[str, Any], out: Path, *, labels: tuple[str, str] | None = None,
                   run_dirs: tuple[Path | None, Path | None] = (None, None)) -> None:
    from pytest_nvme_ai.report.compare import compare_context
    from pytest_nvme_ai.report.render import render_page

    out = Path(out)
    html = render_page("compare.j2", compare_context(a, b, out, labels=labels, run_dirs=run_dirs))
    atomic_write_text(out, html)


def cli_report(args: argparse.Namespace) -> int:
    src = results_path(args.results)
    data = load_results(src)
    out = Path(args.output) if getattr(args, "output", None) else src.parent / "index.html"
    render_run(data, out, run_dir=src.parent)
    print(f"report: {out}")
    return 0
