"""What the run leaves behind and how it ended: its directory, files, saved baselines and every output
that failed (which turns a green run into exit 1), and the status results.json records."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_nvme_ai.run.records import TestRecord


class NvmeAiWarning(UserWarning):
    pass


@dataclass
class RunOutputs:
    report_dir: Path
    run_id: str
    run_dir: Path | None = None            # created on first use: a run that records nothing leaves no directory
    results_path: Path | None = None
    report_path: Path | None = None
    saved_baselines: list[Path] = field(default_factory=list)
    saved_short_window: list[str] = field(default_factory=list)  # failed only by the short-window rule, saved
    save_errors: list[str] = field(default_factory=list)
    late_errors: list[str] = field(default_factory=list)   # output that failed after the run, and where it went
    baseline_skipped: str | None = None                     # why --nvme-ai-save-baseline saved nothing
    history_line: str | None = None                         # the history store's one line for the summary
    history_failed: bool = False

    def directory(self) -> Path:
        if self.run_dir is None:
            d = self.report_dir / self.run_id
            d.mkdir(parents=True, exist_ok=True)
            self.run_dir = d
        return self.run_dir

    def failed(self) -> bool:
        """An output the user asked for is missing or elsewhere: a run whose tests passed exits 1."""
        return bool(self.save_errors or self.late_errors or self.history_failed)


@dataclass
class RunState:
    """How the run ended (results.json run.status): complete | interrupted | incomplete | error."""

    status: str = "complete"
    detail: str = ""
    interrupted: str | None = None      # why, when Ctrl-C / SIGTERM / pytest.exit stopped the run
    current_test: str | None = None     # node id of the test running now (marked if interrupted)

    def mark_interrupted(self, why: str, running: TestRecord | None) -> None:
        """Ctrl-C, SIGTERM or pytest.exit: the run never looks complete, the running test is named."""
        self.interrupted = why
        if running is not None and running.outcome in ("not run", "passed"):
            running.outcome = "interrupted"
            running.verdict = None
            running.longrepr = f"interrupted while running: {why}"

    def decide(self, exitstatus: int, records: Iterable[TestRecord]) -> None:
        recs = list(records)
        not_run = [r for r in recs if r.outcome in ("not run", "interrupted")]
        if self.interrupted is not None or exitstatus == pytest.ExitCode.INTERRUPTED:
            self.status = "interrupted"
            why = self.interrupted or "interrupted"
            self.detail = f"{why}; {len(not_run)} of {len(recs)} measured test(s) not run"
        elif exitstatus == pytest.ExitCode.INTERNAL_ERROR:
            self.status, self.detail = "error", "pytest internal error"
        elif not_run:
            self.status = "incomplete"
            self.detail = (f"{len(not_run)} of {len(recs)} measured test(s) not run "
                           "(the session stopped early, e.g. -x / --maxfail)")
        else:
            self.status, self.detail = "complete", ""
