"""The session's baselines: per target, the file it is gated against and the file it saves into.

Which file that is (own or a sibling drive's) is gate/'s decision (gate.policy.choose_baseline); this part
holds the answers, checks at configure that a save could succeed, and says what the gate cannot see.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from pytest_nvme_ai.core.names import path_in
from pytest_nvme_ai.core.targets import Target
from pytest_nvme_ai.core.writable import check_writable_file
from pytest_nvme_ai.gate.baseline import BaselineError, BaselineFile
from pytest_nvme_ai.gate.policy import BaselineChoice, choose_baseline, window_warnings
from pytest_nvme_ai.run.settings.resolved import RunSettings


class RunBaselines:
    def __init__(self) -> None:
        self.paths: dict[str, Path] = {}              # target label -> its own baseline file (saved into)
        self.chosen: dict[str, BaselineChoice] = {}   # target label -> what it is gated against
        self.gate_warnings: list[str] = []            # what the gate cannot see here (results.json, the report)

    def file(self, label: str) -> BaselineFile | None:
        choice = self.chosen.get(label)
        return choice.file if choice is not None else None

    def sibling(self, label: str) -> str | None:
        choice = self.chosen.get(label)
        return choice.sibling if choice is not None else None

    def load(self, targets: Sequence[Target], st: RunSettings) -> None:
        """One baseline name per device (or the one given), its file, and what the gate compares with."""
        if st.baseline_name and len({t.device.slug() for t in targets}) > 1:
            raise pytest.UsageError(
                "pytest-nvme-ai: --nvme-ai-baseline-name names one baseline, but the targets are on devices with "
                "different fingerprints; run one target at a time, or drop the name to get one baseline per device"
            )
        for t in targets:
            try:
                path = path_in(st.baseline_dir, st.baseline_name or t.device.slug(), ".json", what="baseline name")
            except ValueError as exc:
                raise pytest.UsageError(f"pytest-nvme-ai: {exc}") from None
            self.paths[t.label] = path
            try:
                self.chosen[t.label] = choose_baseline(path, st.baseline_dir, t.device.fingerprint(),
                                                       named=bool(st.baseline_name))
            except BaselineError as exc:
                raise pytest.UsageError(f"pytest-nvme-ai: {exc}") from None
        self.gate_warnings = self._window_warnings(targets, st)

    def _window_warnings(self, targets: Sequence[Target], st: RunSettings) -> list[str]:
        """What the gate cannot see (gate.policy.window_warnings), per target, worked out at session start,
        not in the header hook: under -q pytest calls no header hook, and CI runs often use -q."""
        out: list[str] = []
        for t in targets:
            own = self.chosen[t.label].own
            if own is not None:
                out.extend(f"{t.id}: {w}" for w in window_warnings(own, st.tolerance, st.baseline_window))
        return out

    def check_files(self, save: bool) -> None:
        """With --nvme-ai-save-baseline, each baseline this run will replace must be replaceable."""
        if not save:
            return
        found = []
        for path in dict.fromkeys(self.paths.values()):
            prob = check_writable_file(path, "baseline file", "fix it (chattr -i / chmod u+w), move it away, or "
                                                              "save under another --nvme-ai-baseline-name")
            if prob is not None:
                found.append(prob.message)
        if found:
            raise pytest.UsageError("pytest-nvme-ai: nothing was measured: " + "; ".join(found))
