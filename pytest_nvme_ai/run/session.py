"""The pytest session of a run, in parts: its settings, targets, baselines, records, outputs and state.

plugin.py stays thin and hands everything to an `NvmeAiSession` (the pytest-benchmark split), kept in a
`pytest.StashKey`, never in private attributes on the config. The session holds its parts and says what
happens per test; the gate's decisions are gate/'s (gate.policy), the end of the run is run/finish.py's
`end_run`.
Only run/ writes the session's fields: the plugin calls its methods.
"""
from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

import pytest

from pytest_nvme_ai.core.cache import SessionCache
from pytest_nvme_ai.core.lifecycle import ChildRegistry
from pytest_nvme_ai.core.profiles import Profile
from pytest_nvme_ai.core.targets import Target, strip_target_id
from pytest_nvme_ai.core.writable import check_writable_dir, check_writable_file
from pytest_nvme_ai.gate.policy import AbGate, GateRules, GateSettingError, GateSubject, GateVerdict, decide, final_verdict
from pytest_nvme_ai.run import settings
from pytest_nvme_ai.run.ab import AbSetupError, RunAb, TestAb
from pytest_nvme_ai.run.baseline_set import RunBaselines
from pytest_nvme_ai.run.environment import collect as collect_environment
from pytest_nvme_ai.run.history_hook import RunHistory
from pytest_nvme_ai.run.outputs import NvmeAiWarning, RunOutputs, RunState
from pytest_nvme_ai.run.records import RECORD_KEY, SessionRecorder, TestRecord, jsonable
from pytest_nvme_ai.run.settings.resolved import RunSettings, StoreChoice, run_settings
from pytest_nvme_ai.run.target_set import TargetSet

__all__ = ["SESSION_KEY", "NvmeAiSession", "NvmeAiWarning", "get_session", "profile_of"]

SESSION_KEY = pytest.StashKey["NvmeAiSession"]()
NO_HISTORY = StoreChoice(None, "--collect-only", False)   # nothing runs, nothing is stored


def get_session(config: pytest.Config) -> "NvmeAiSession":
    try:
        return config.stash[SESSION_KEY]
    except KeyError:
        raise RuntimeError("pytest-nvme-ai is not configured (is the plugin loaded?)") from None


class NvmeAiSession:
    """The run's parts, and what the plugin's hooks ask of them."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings: RunSettings = run_settings(config)      # every setting, resolved once, frozen
        self.run_id = datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        self.started = datetime.now(timezone.utc)
        self.targets = TargetSet()
        self.baselines = RunBaselines()
        self.records: dict[str, TestRecord] = {}
        self.outputs = RunOutputs(self.settings.report_dir, self.run_id)
        self.state = RunState()
        self.environment: dict[str, Any] = {}
        # Per-session cache shared by fixtures (e.g. fio data files laid out once per target and size).
        self.cache = SessionCache()
        # Long-lived children (aio worker, engine pool, fork server, cgroups): closed at sessionfinish.
        self.children = ChildRegistry()
        # The history store is opened here: a store that cannot be used stops the run before anything runs.
        self.history = RunHistory(self.settings.history if not self.settings.collect_only else NO_HISTORY)
        st = self.settings
        self.ab = RunAb(st.ab, st.read_cap, st.ab_budget_s, "abba" if st.ab_order == "abba" else "random")

    # ---- start -----------------------------------------------------------------------------
    def start(self) -> None:
        """Outputs checked, targets claimed, baselines chosen, SMART and the machine read: before any test."""
        try:
            if not self.settings.collect_only:
                self.check_outputs()      # before any target is touched or anything measured
            factory = getattr(self.config, "_tmp_path_factory", None)  # set by pytest's tmpdir plugin
            self.targets.setup(self.settings.targets, basetemp=factory.getbasetemp() if factory else None,
                               run_id=self.run_id, info={"run_id": self.run_id, "started": self.started.isoformat(),
                                                         "argv": list(self.settings.argv)})
            self.baselines.load(self.targets, self.settings)
            self.baselines.check_files(self.settings.save_baseline)
            if not self.settings.collect_only:
                self.setup_ab()
        except BaseException:
            # pytest skips sessionfinish when sessionstart fails: remove our private dirs and locks now.
            self.release()
            raise
        self.environment = collect_environment()

    def setup_ab(self) -> None:
        """Arm A's target (validated like a target, its own private dir); A/B and a baseline save exclude each other."""
        from pytest_nvme_ai.measure.device import identify

        if self.ab.enabled and self.settings.save_baseline:
            raise pytest.UsageError("pytest-nvme-ai: --nvme-ai-save-baseline with --nvme-ai-ab: an A/B session is its "
                                    "own series (history) and would put arm B's figures (capped, or another build) "
                                    "into the baseline window; run the save without --nvme-ai-ab")
        try:
            self.ab.setup(self.run_id, identify)
        except AbSetupError as exc:
            raise pytest.UsageError(str(exc)) from None

    def check_outputs(self) -> None:
        """Refuse at configure what would fail after the whole run: report dir, baseline dir, json file."""
        st = self.settings
        problems = [check_writable_dir(st.report_dir, "report directory", "--nvme-ai-report-dir")]
        if st.save_baseline:
            problems.append(check_writable_dir(st.baseline_dir, "baseline directory", "--nvme-ai-baseline-dir"))
        if st.benchmark_json is not None:
            problems.append(check_writable_dir(st.benchmark_json.parent, "directory of --nvme-ai-benchmark-json",
                                               "--nvme-ai-benchmark-json"))
            problems.append(check_writable_file(st.benchmark_json, "--nvme-ai-benchmark-json file",
                                                "pass a file path this run may replace"))
        found = [p.message for p in problems if p is not None]
        if found:
            raise pytest.UsageError("pytest-nvme-ai: nothing was measured: " + "; ".join(found))

    # ---- per test --------------------------------------------------------------------------
    def marker_kwargs(self, item: pytest.Item) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        # closest marker wins (function over class over module), like pytest-timeout
        for mark in reversed(list(item.iter_markers("nvme_ai"))):
            kw.update(mark.kwargs)
        return kw

    def repeat_for(self, item: pytest.Item) -> int:
        kw = self.marker_kwargs(item)
        if "repeat" in kw:
            return int(settings.parse_marker_value("repeat", kw["repeat"], item.nodeid))
        return self.settings.repeat or self.settings.profile.repeat

    def target_of(self, item: pytest.Item) -> Target | None:
        cs = getattr(item, "callspec", None)
        if cs is not None:
            t = cs.params.get("offload_target")
            if isinstance(t, Target):
                return t
        return None

    def record_for(self, item: pytest.Item) -> TestRecord:
        rec = self.records.get(item.nodeid)
        if rec is not None:
            return rec
        cs = getattr(item, "callspec", None)
        params = {k: v for k, v in (cs.params.items() if cs else []) if k != "offload_target"}
        key = item.nodeid
        if cs is not None:
            stripped = strip_target_id(cs.id)
            key = item.nodeid.split("[", 1)[0] + (f"[{stripped}]" if stripped else "")
        mod = getattr(item, "module", None)
        suite = (mod.__name__.rsplit(".", 1)[-1] if mod else item.nodeid.split("::")[0]).removeprefix("test_")
        rules = self.gate_rules(item)
        # A test that does not take offload_target is attributed to the first target, whose
        # baseline it is gated against and saved into.
        target = self.target_of(item) or (self.targets[0] if self.targets else None)
        rec = TestRecord(
            nodeid=item.nodeid, key=key, suite=suite, target=target, params=params,
            tolerance=rules.tolerance_pct, gated_metrics=rules.gated_metrics,
        )
        self.records[item.nodeid] = rec
        item.stash[RECORD_KEY] = rec
        return rec

    def recorder(self, item: pytest.Item) -> SessionRecorder:
        st = self.settings
        return SessionRecorder(self.record_for(item), config=self.config, profile=st.profile,
                               repeat=self.repeat_for(item), timeout=st.timeout, run_dir=self.outputs.directory,
                               cache=self.cache, aio=st.aio, children=self.children,
                               engine_reuse=st.engine_reuse, fork_workers=st.fork_workers, ab=self.ab_plan(item))

    def ab_plan(self, item: pytest.Item) -> TestAb | None:
        if not self.ab.active:
            return None
        rec = self.record_for(item)
        return self.ab.for_test(rec, self.gate_rules(item), f"{self.run_id} {rec.nodeid}")

    def gate_rules(self, item: pytest.Item) -> GateRules:
        try:
            return GateRules.from_marker(self.marker_kwargs(item), self.settings.tolerance, item.nodeid)
        except GateSettingError as exc:
            raise settings.SettingError(str(exc)) from None

    def gate(self, item: pytest.Item) -> GateVerdict | AbGate | None:
        """Hand the test's record and its baseline to gate/; the verdict is kept in the record."""
        rec = item.stash.get(RECORD_KEY, None)
        if rec is None:
            return None
        if rec.ab is not None:   # an A/B test: its pairs decided (gate.policy.AbGate), not a window of sessions
            ab = AbGate.of(rec.ab)
            rec.verdict = ab.verdict
            return ab
        if not rec.metrics:
            return None
        bfile = self.baselines.file(rec.target.label) if rec.target else None
        test = GateSubject(rec.key, rec.nodeid, dict(rec.metrics), jsonable(rec.params), self.settings.profile_name,
                           rec.target.device.fingerprint() if rec.target is not None else None)
        v = decide(test, self.gate_rules(item), bfile, window=self.settings.baseline_window)
        rec.comparisons, rec.baseline_file, rec.verdict = list(v.comparisons), v.baseline_file, v.verdict
        return v

    def begin_test(self, nodeid: str) -> None:
        self.state.current_test = nodeid

    def end_test(self) -> None:
        self.state.current_test = None

    def log_report(self, report: pytest.TestReport) -> None:
        """A phase of a measured test ended: its outcome, duration and failure text into its record."""
        rec = self.records.get(report.nodeid)
        if rec is None:
            return
        rec.duration += report.duration
        if report.when == "call" or report.outcome != "passed":
            if report.outcome == "failed" and report.when != "call":
                rec.outcome = "error"
            elif rec.outcome != "error":
                rec.outcome = report.outcome
            if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
                rec.longrepr = str(report.longrepr[2])
            elif report.outcome == "failed":
                rec.longrepr = str(report.longrepr)[-4000:]
        if report.when == "teardown":
            rec.verdict = final_verdict(rec.outcome, rec.verdict)

    # ---- finish ----------------------------------------------------------------------------
    def mark_interrupted(self, why: str) -> None:
        self.state.mark_interrupted(why, self.records.get(self.state.current_test or ""))

    def close_children(self) -> list[str]:
        """Close the long-lived children (newest first); what failed, for warnings."""
        return [f"closing {f.name} at the end of the session failed: {f.error}" for f in self.children.close_all()]

    def release(self) -> None:
        """Private dirs, locks and the history store (idempotent; also run at unconfigure)."""
        self.targets.release()
        self.ab.release()
        self.history.close()


def profile_of(config: pytest.Config) -> Profile:
    """The session's Profile (suites read their grid sizes from it at collection)."""
    return get_session(config).settings.profile
