"""The end of the run, in one function: `end_run`.

Read top to bottom, it is everything a finished session leaves behind, in order: the run's status, the
document (results.json's content, built once and kept in memory), results.json, the history store and the
trends it gives back, the page (rendered once, with those trends), the `latest` link, the baselines, and
the pytest-benchmark export. Nothing reads results.json back: each step gets the document. An output that
fails is recorded in `RunOutputs` with where its content went instead, and turns a green run into exit 1.
"""
from __future__ import annotations

import importlib
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_nvme_ai import report
from pytest_nvme_ai.core.fsutil import atomic_symlink, atomic_write_json
from pytest_nvme_ai.core.redact import redact_argv
from pytest_nvme_ai.core.schema import SCHEMA_VERSION
from pytest_nvme_ai.core.writable import fallback_dir
from pytest_nvme_ai.gate import baseline
from pytest_nvme_ai.gate.policy import SaveCandidate, saveable
from pytest_nvme_ai.run.benchmark_export import write_benchmark_json
from pytest_nvme_ai.run.environment import commit_info
from pytest_nvme_ai.run.history_hook import RunHistory
from pytest_nvme_ai.run.outputs import NvmeAiWarning, RunOutputs
from pytest_nvme_ai.run.records import TestRecord, jsonable
from pytest_nvme_ai.run.session import NvmeAiSession


def end_run(s: NvmeAiSession, exitstatus: int) -> None:
    """Everything the run leaves behind, once, in order (plugin.py's `pytest_sessionfinish`, after the
    session's long-lived children are closed)."""
    try:
        if s.settings.collect_only or not s.records:
            return
        s.state.decide(exitstatus, s.records.values())
        document = build_document(s, exitstatus)
        write_results(s.outputs, document)
        trends = append_history(s.history, s.outputs, document)
        render_report(s.outputs, document, trends)
        point_latest(s.outputs)
        if s.settings.save_baseline:
            save_baselines(s, document)
        if s.settings.benchmark_json is not None:
            export_benchmark(s.outputs, s.settings.benchmark_json, document)
    finally:
        s.release()   # the history store, the targets' private dirs and locks


def build_document(s: NvmeAiSession, exitstatus: int) -> dict[str, Any]:
    """results.json's content, JSON-clean (what a reader of the file would get back)."""
    st = s.settings
    run = {
        "id": s.run_id, "started": s.started.isoformat(), "finished": datetime.now(timezone.utc).isoformat(),
        "profile": st.profile_name, "tolerance": st.tolerance, "baseline_window": st.baseline_window,
        "gate_warnings": list(s.baselines.gate_warnings), "commit": commit_info(),
        "argv": redact_argv(st.argv),   # results.json is shared: a password on the command line stays out
        "exitstatus": int(exitstatus), "status": s.state.status, "status_detail": s.state.detail,
        "plugin_version": _plugin_version(),
    }
    smart_after = s.targets.read_smart()
    document: dict[str, Any] = jsonable({
        "schema_version": SCHEMA_VERSION, "run": run, "environment": s.environment,
        "targets": s.targets.documents(smart_after, s.baselines.paths),
        "tests": [r.to_dict() for r in s.records.values()],
    })
    return document


def _plugin_version() -> str:
    # The package root's __version__ (one place, with pyproject's): looked up, as the layout keeps run/
    # from importing the root package, which imports the plugin.
    return str(importlib.import_module("pytest_nvme_ai").__version__)


def write_results(out: RunOutputs, document: dict[str, Any]) -> None:
    """results.json in the run dir; when that fails late, in a temp dir, and say so."""
    try:
        out.results_path = out.directory() / "results.json"
        atomic_write_json(out.results_path, document)
    except OSError as exc:
        intended = out.report_dir / out.run_id
        out.run_dir = fallback_dir(out.run_id)
        out.results_path = out.run_dir / "results.json"
        atomic_write_json(out.results_path, document)
        out.late_errors.append(f"could not write the results to {intended} ({exc}); they are kept in "
                               f"{out.run_dir} instead")


def append_history(history: RunHistory, out: RunOutputs, document: dict[str, Any]) -> list[Any]:
    """The run into the history store; the trends for the page. A refusing store is reported, exit 1."""
    if not history.enabled or out.results_path is None:
        return []
    try:
        out.history_line, trends = history.append(document, out.results_path)
    except Exception as exc:  # noqa: BLE001 - any store failure is reported; results.json stays as written
        out.history_failed = True
        out.history_line = history.failure(exc, out.results_path)
        return []
    return trends


def render_report(out: RunOutputs, document: dict[str, Any], trends: list[Any]) -> None:
    """index.html beside results.json; a report bug never loses the results, already written."""
    page = out.directory() / "index.html"
    try:
        report.render_run(document, page, run_dir=out.directory(), trends=trends)
    except Exception as exc:  # noqa: BLE001 - a report bug must not lose results.json, already written
        warnings.warn(NvmeAiWarning(f"HTML report failed ({type(exc).__name__}: {exc}); results.json is intact, "
                                    f"re-render with: nvme-ai report {out.results_path}"))
        return
    out.report_path = page


def point_latest(out: RunOutputs) -> None:
    """DIR/latest -> this run, unless the results went elsewhere (then `latest` keeps the last good run)."""
    if out.run_dir != out.report_dir / out.run_id:
        return
    try:
        atomic_symlink(out.report_dir / "latest", out.run_id)
    except OSError as exc:
        warnings.warn(NvmeAiWarning(f"could not point {out.report_dir / 'latest'} at this run: {exc}"))


def save_baselines(s: NvmeAiSession, document: dict[str, Any]) -> None:
    """Each target's saveable tests (gate.policy.saveable) into its baseline window; none from an interrupted run."""
    out = s.outputs
    if s.state.status == "interrupted":
        out.baseline_skipped = ("the run was interrupted: no baseline saved from it (rerun it, or promote "
                                f"the tests you trust with: nvme-ai baseline promote {out.results_path})")
        out.save_errors.append(out.baseline_skipped)
        return
    window = s.settings.baseline_window
    by_label: dict[str, list[TestRecord]] = {}
    for rec in s.records.values():
        if rec.metrics and rec.target is not None and saveable(_candidate(rec), window):
            by_label.setdefault(rec.target.label, []).append(rec)
    for t in s.targets:
        recs = by_label.get(t.label)
        if recs:
            _save_target(out, s.baselines.paths[t.label], t.device.fingerprint(), recs, document, window)


def _candidate(rec: TestRecord) -> SaveCandidate:
    return SaveCandidate.of(rec.outcome, rec.verdict, rec.comparisons)


def _save_target(out: RunOutputs, path: Path, fingerprint: dict[str, Any], recs: list[TestRecord],
                 document: dict[str, Any], window: int) -> None:
    sessions = [baseline.new_session_from_record(r.to_dict()) for r in recs]
    try:
        baseline.save_sessions(path, name=path.stem, fingerprint=fingerprint, sessions=sessions,
                               run=document["run"], environment=document["environment"], window=window)
    except baseline.BaselineError as exc:
        out.save_errors.append(str(exc))
        return
    except OSError as exc:  # changed under the run (checked at configure): keep the run, say how to save it
        out.save_errors.append(f"{path}: {exc}; this run's results are in {out.results_path}: save them "
                               f"later with nvme-ai baseline promote {out.results_path} --name {path.stem}")
        return
    out.saved_baselines.append(path)
    out.saved_short_window.extend(r.nodeid for r in recs if r.outcome != "passed")


def export_benchmark(out: RunOutputs, path: Path, document: dict[str, Any]) -> None:
    try:
        write_benchmark_json(path, document)
    except OSError as exc:
        out.late_errors.append(f"--nvme-ai-benchmark-json {path} not written: {exc}; "
                               f"the same figures are in {out.results_path}")
