"""The run's side of the history store: open it at configure, append the run after results.json.

- configure: the store named by --nvme-ai-history (ini nvme_ai_history, env NVME_AI_HISTORY) is opened
  and its schema checked, so an unreachable store or one written by a newer pytest-nvme-ai stops the run
  before anything is measured. The embedded default (history.sqlite in the report dir) is checked if it
  exists and created at the first append, so a session that records nothing leaves no file behind.
- session finish: after the session has written results.json and index.html, the run is appended from
  that file, the trends of this run's gated metrics are read back and the report is rendered again with
  its trend section. A store that refuses the write is reported with what to do and the run exits 1;
  results.json is never touched.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.run import settings

TREND_RUNS = 30        # points per trend chart: the last N runs on this device fingerprint and runner
MAX_TRENDS = 24        # charts per report (~0.1-0.2 s each to draw); the rest are named in a note
DEFAULT_FILE = "history.sqlite"


@dataclass(frozen=True)
class StoreChoice:
    url: str | None          # None: turned off
    source: str              # where the choice came from, for messages
    embedded: bool           # the default SQLite file beside the reports


def choose_store(config: pytest.Config) -> StoreChoice:
    raw = settings.resolve(config, "history")
    if raw is None:
        report_dir = settings.resolve_path(config, "report_dir")
        assert report_dir is not None
        return StoreChoice(str(report_dir / DEFAULT_FILE), "default (beside the reports)", True)
    value = str(raw).strip()
    if value.lower() == "none":
        return StoreChoice(None, "--nvme-ai-history none", False)
    if "://" in value:
        return StoreChoice(value, "--nvme-ai-history", False)
    path = settings.resolve_path(config, "history")  # relative to where it was given, like every path setting
    return StoreChoice(str(path), "--nvme-ai-history", False)


def register(config: pytest.Config) -> None:
    """Called from plugin.py's configure (after --help/--version have returned)."""
    if config.option.collectonly:
        return
    config.pluginmanager.register(HistoryHooks(config, choose_store(config)), "nvme_ai_history")


class HistoryHooks:
    def __init__(self, config: pytest.Config, choice: StoreChoice) -> None:
        self.config = config
        self.choice = choice
        self.store: Any = None
        self.outcome: str | None = None     # one line for the terminal summary
        self.failed = False
        if choice.url is not None and not (choice.embedded and not Path(choice.url).exists()):
            self.store = self._open(create=True)

    def _open(self, *, create: bool) -> Any:
        from pytest_nvme_ai.history import HistoryError, open_store

        try:
            return open_store(str(self.choice.url), create=create)
        except HistoryError as exc:
            raise pytest.UsageError(f"pytest-nvme-ai: history store ({self.choice.source}): {exc}") from None

    @pytest.hookimpl(wrapper=True, trylast=True)  # innermost: after the session wrote results.json, before the summary
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> Generator[None, Any, Any]:
        result = yield
        if self.choice.url is None:
            return result
        results_path = self._results_path()
        if results_path is None:
            return result
        try:
            self.append(results_path)
        except Exception as exc:  # noqa: BLE001 - any store failure is reported; results.json stays as written
            self.failed = True
            self.outcome = (f"history NOT written to {self._display()}: {type(exc).__name__}: "
                            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}\n"
                            f"  results.json is intact at {results_path}; add it later with:\n"
                            f"  nvme-ai history import {results_path} --history '{self._display()}'")
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        finally:
            if self.store is not None:
                self.store.close()
        return result

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.outcome:
            terminalreporter.write_line(f"nvme-ai {self.outcome}", red=self.failed, bold=self.failed)

    def _display(self) -> str:
        return self.store.display if self.store is not None else str(self.choice.url)

    def _results_path(self) -> Path | None:
        from pytest_nvme_ai.run.session import SESSION_KEY

        s = self.config.stash.get(SESSION_KEY, None)
        if s is None:
            return None
        p = getattr(s, "results_path", None)
        if p is None and getattr(s, "run_id", None) and getattr(s, "report_dir", None):
            p = Path(s.report_dir) / s.run_id / "results.json"   # where the session writes it by default
        if p is None:
            return None
        p = Path(p)
        return p if p.is_file() else None

    def append(self, results_path: Path) -> None:
        data = json.loads(results_path.read_text(encoding="utf-8"))
        if self.store is None:
            self.store = self._open(create=True)
        added = self.store.append(data, source=str(results_path))
        n = len(data.get("tests") or [])
        self.outcome = (f"history: run {data['run']['id']} ({n} tests) "
                        f"{'appended to' if added else 'already in'} {self.store.display}")
        trends = run_trends(self.store, data)
        if trends:
            self.outcome += f"; report trends: {len(trends)} series"
            self._rerender(data, results_path, trends)

    def _rerender(self, data: Mapping[str, Any], results_path: Path, trends: list[Any]) -> None:
        """index.html again, now with the trend section; on a report bug the first page stays."""
        import warnings

        from pytest_nvme_ai.report import render_run
        from pytest_nvme_ai.run.session import SESSION_KEY, NvmeAiWarning

        s = self.config.stash.get(SESSION_KEY, None)
        out = getattr(s, "report_path", None)
        if out is None:
            return
        try:
            render_run(data, Path(out), run_dir=results_path.parent, trends=trends)
        except Exception as exc:  # noqa: BLE001 - the page without trends is already there
            warnings.warn(NvmeAiWarning(f"report trend section failed ({type(exc).__name__}: {exc}); "
                                        f"the report without it is intact"))


def run_trends(store: Any, data: Mapping[str, Any]) -> list[Any]:
    """A Trend per (test, gated metric) of this run with at least two runs on this fingerprint and runner."""
    from pytest_nvme_ai.core.history_types import SeriesKey, Trend
    from pytest_nvme_ai.history.changes import find_changes
    from pytest_nvme_ai.history.flatten import flatten

    rows = flatten(data)
    outcome = {t["test_index"]: t["outcome"] for t in rows.tests}
    candidates = [m for m in rows.metrics
                  if m["gated"] and m["value"] is not None and outcome.get(m["test_index"]) == "passed"]
    # Every test's first gated metric before any test's second: a capped page still shows every test.
    rank: dict[int, int] = {}
    order = []
    for pos, m in enumerate(candidates):
        rank[m["test_index"]] = rank.get(m["test_index"], -1) + 1
        order.append((rank[m["test_index"]], pos, m))
    trends: list[Trend] = []
    skipped = 0
    for _, _, m in sorted(order, key=lambda x: (x[0], x[1])):
        key = SeriesKey(m["test_key"], m["name"], m["drive_model"], m["runner"])
        if len(trends) >= MAX_TRENDS:
            skipped += 1
            continue
        points = store.series(key, fingerprint=m["fingerprint"], last=TREND_RUNS)
        if len(points) < 2:
            continue
        trends.append(Trend(key=key, unit=str(m["unit"] or ""), better=str(m["better"] or "higher"),
                            points=tuple(points), changes=tuple(find_changes(points)), highlight_run=rows.run_id,
                            fingerprint=m["fingerprint"]))
    # Back in page order (by test, then metric), as the sections above list them.
    page = {(m["test_key"], m["name"]): pos for pos, m in enumerate(candidates)}
    trends.sort(key=lambda t: page[(t.key.test_key, t.key.metric)])
    if skipped and trends:
        last = trends[-1]
        note = f"{skipped} more series not drawn (at most {MAX_TRENDS} per report): nvme-ai history --test KEY lists them"
        trends[-1] = dataclasses.replace(last, notes=(note,))
    return trends


def cli_report_with_trends(args: Any) -> int:
    """`nvme-ai report RESULTS --history URL`: the run page with its trend section, from a stored history."""
    from pytest_nvme_ai.history import HistoryError, open_store
    from pytest_nvme_ai.report import load_results, render_run, results_path

    src = results_path(args.results)
    data = load_results(src)
    try:
        store = open_store(args.history, create=False)
    except HistoryError as exc:
        raise ValueError(str(exc)) from None
    try:
        if not store.has_run(str(data["run"].get("id"))):
            raise ValueError(f"run {data['run'].get('id')} is not in {store.display}: add it first with "
                             f"nvme-ai history import {src} --history URL")
        trends = run_trends(store, data)
    finally:
        store.close()
    out = Path(args.output) if getattr(args, "output", None) else src.parent / "index.html"
    render_run(data, out, run_dir=src.parent, trends=trends)
    print(f"report: {out} ({len(trends)} trend series)")
    return 0
