"""The run's side of the history store: checked at configure, written once by the end of the run.

- configure (`RunHistory(choice)`, made by the session): the store named by --nvme-ai-history (ini
  nvme_ai_history, env NVME_AI_HISTORY) is opened and its schema checked, so an unreachable store or one
  written by a newer pytest-nvme-ai stops the run before anything is measured. The embedded default
  (history.sqlite in the report dir) is checked if it exists and created at the first append, so a session
  that records nothing leaves no file behind.
- the end of the run (run/finish.py) appends the run's document, the one it wrote as results.json, and
  reads back the trends of its gated metrics for the page. A store that refuses the write is reported with
  what to do and the run exits 1; results.json is never touched.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai import history
from pytest_nvme_ai.core.history_types import SeriesKey, Trend
from pytest_nvme_ai.history.changes import find_changes
from pytest_nvme_ai.history.flatten import flatten
from pytest_nvme_ai.report import load_results, render_run, results_path
from pytest_nvme_ai.run.settings.resolved import StoreChoice

TREND_RUNS = 30        # points per trend chart: the last N runs on this device fingerprint and runner
MAX_TRENDS = 24        # charts per report (~0.1-0.2 s each to draw); the rest are named in a note


class RunHistory:
    """The run's history store: opened at configure (the check), appended to once, closed at the end."""

    def __init__(self, choice: StoreChoice) -> None:
        self.choice = choice
        self.store: Any = None
        if choice.url is not None and not (choice.embedded and not Path(choice.url).exists()):
            self.store = self._open()

    @property
    def enabled(self) -> bool:
        return self.choice.url is not None

    def _open(self) -> Any:
        try:   # history.open_store imports SQLAlchemy: only a run with a store pays for it
            return history.open_store(str(self.choice.url), create=True)
        except history.HistoryError as exc:
            raise pytest.UsageError(f"pytest-nvme-ai: history store ({self.choice.source}): {exc}") from None

    def display(self) -> str:
        return self.store.display if self.store is not None else str(self.choice.url)

    def append(self, data: Mapping[str, Any], source: Path) -> tuple[str, list[Trend]]:
        """Store the run; the summary line and the trends of its gated metrics. Raises what the store raises."""
        if self.store is None:
            self.store = self._open()
        added = self.store.append(data, source=str(source))
        n = len(data.get("tests") or [])
        line = (f"history: run {data['run']['id']} ({n} tests) "
                f"{'appended to' if added else 'already in'} {self.store.display}")
        trends = run_trends(self.store, data)
        if trends:
            line += f"; report trends: {len(trends)} series"
        return line, trends

    def failure(self, exc: BaseException, results_path: Path | None) -> str:
        """The summary line of a store that refused the write: what failed and how to add the run later."""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return (f"history NOT written to {self.display()}: {type(exc).__name__}: {first}\n"
                f"  results.json is intact at {results_path}; add it later with:\n"
                f"  nvme-ai history import {results_path} --history '{self.display()}'")

    def close(self) -> None:
        """Idempotent: the end of the run and unconfigure both call it."""
        if self.store is not None:
            self.store.close()
            self.store = None


def run_trends(store: Any, data: Mapping[str, Any]) -> list[Any]:
    """A Trend per (test, gated metric) of this run with at least two runs on this fingerprint and runner."""
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
    src = results_path(args.results)
    data = load_results(src)
    try:
        store = history.open_store(args.history, create=False)
    except history.HistoryError as exc:
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
