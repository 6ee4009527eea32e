"""The run: targets, records, baselines, gate, results.json.

plugin.py stays thin and hands everything to an `NvmeAiSession`, registered as
a plugin named "nvme_ai_session" (the pytest-benchmark split, pytest-xdist's
registration style). State lives in this object and a `pytest.StashKey`, never
in private attributes on the config.
"""
from __future__ import annotations

import os
import secrets
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.core.cache import SessionCache
from pytest_nvme_ai.core.lifecycle import ChildRegistry
from pytest_nvme_ai.core.schema import SCHEMA_VERSION
from pytest_nvme_ai.run import settings
from pytest_nvme_ai.run.records import RECORD_KEY, SessionRecorder, TestRecord, _jsonable
from pytest_nvme_ai.core.profiles import PROFILES, Profile
from pytest_nvme_ai.core.targets import Target, TargetError, make_labels, strip_target_id, validate_target_dir
from pytest_nvme_ai.run.locks import SessionLock, claim, other_sessions

SESSION_KEY = pytest.StashKey["NvmeAiSession"]()


def get_session(config: pytest.Config) -> "NvmeAiSession":
    try:
        return config.stash[SESSION_KEY]
    except KeyError:
        raise RuntimeError("pytest-nvme-ai is not configured (is the plugin loaded?)") from None


class NvmeAiWarning(UserWarning):
    pass


class NvmeAiSession:
    """Session state and the hooks that need it."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.profile: str = settings.resolve(config, "profile")
        self.profile_obj: Profile = PROFILES[self.profile]
        self.tolerance: float = settings.resolve(config, "tolerance")
        self.baseline_window: int = settings.resolve(config, "baseline_window")
        self.gate_warnings: list[str] = []   # what the header said the gate cannot see (gate.policy.window_warnings)
        self.repeat: int | None = settings.resolve(config, "repeat")
        self.timeout: int | None = settings.resolve(config, "timeout")
        self.save_baseline: bool = bool(settings.resolve(config, "save_baseline"))
        self.strict: bool = bool(settings.resolve(config, "strict"))
        self.baseline_name: str | None = settings.resolve(config, "baseline_name")
        self.aio: str = settings.resolve(config, "aio")
        self.report_dir: Path = settings.resolve_path(config, "report_dir")  # type: ignore[assignment]
        self.baseline_dir: Path = settings.resolve_path(config, "baseline_dir")  # type: ignore[assignment]
        self.benchmark_json: Path | None = settings.resolve_path(config, "benchmark_json")
        self.run_id = datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        self.started = datetime.now(timezone.utc)
        self.targets: list[Target] = []
        self.records: dict[str, TestRecord] = {}
        self.baselines: dict[str, Any] = {}     # target label -> baseline.BaselineFile | None
        self.baseline_paths: dict[str, Path] = {}
        self.smart_before: dict[str, Any] = {}
        self.environment: dict[str, Any] = {}
        self._run_dir: Path | None = None
        self.results_path: Path | None = None
        self.report_path: Path | None = None
        self.saved_baselines: list[Path] = []
        self.saved_short_window: list[str] = []  # failed only by the short-window rule, saved (gate.policy.saveable)
        self.save_errors: list[str] = []
        self.sibling_baselines: dict[str, str] = {}  # target label -> why a sibling baseline is used
        # Per-session cache shared by fixtures (e.g. fio data files laid out once per target and size).
        self.cache = SessionCache()
        # Long-lived children (aio worker, engine pool, fork server, cgroups): closed at sessionfinish.
        self.children = ChildRegistry()
        # How the run ended (results.json run.status): complete | interrupted | incomplete | error.
        self.status: str = "complete"
        self.status_detail: str = ""
        self.interrupted: str | None = None      # why, when Ctrl-C / SIGTERM / pytest.exit stopped the run
        self.current_test: str | None = None     # node id of the test running now (marked if interrupted)
        self.locks: list[SessionLock] = []
        self.leftovers: dict[str, list[str]] = {}  # target label -> private dirs of dead sessions
        self.late_errors: list[str] = []         # output that failed after the run, and where it went instead
        self.baseline_skipped: str | None = None   # why --nvme-ai-save-baseline saved nothing

    # ---- outputs, checked before anything is measured ----------------------------------------
    def check_outputs(self) -> None:
        """Refuse at configure what would fail after the whole run: report dir, baseline dir/file, json."""
        from pytest_nvme_ai.core.writable import check_writable_dir, check_writable_file

        problems = [check_writable_dir(self.report_dir, "report directory", "--nvme-ai-report-dir")]
        if self.save_baseline:
            problems.append(check_writable_dir(self.baseline_dir, "baseline directory", "--nvme-ai-baseline-dir"))
        if self.benchmark_json is not None:
            problems.append(check_writable_dir(self.benchmark_json.parent, "directory of --nvme-ai-benchmark-json",
                                               "--nvme-ai-benchmark-json"))
            problems.append(check_writable_file(self.benchmark_json, "--nvme-ai-benchmark-json file",
                                                "pass a file path this run may replace"))
        found = [p.message for p in problems if p is not None]
        if found:
            raise pytest.UsageError("pytest-nvme-ai: nothing was measured: " + "; ".join(found))

    def check_baseline_files(self) -> None:
        """With --nvme-ai-save-baseline, each baseline this run will replace must be replaceable."""
        from pytest_nvme_ai.core.writable import check_writable_file

        if not self.save_baseline:
            return
        found = []
        for path in dict.fromkeys(self.baseline_paths.values()):
            prob = check_writable_file(path, "baseline file", "fix it (chattr -i / chmod u+w), move it away, or "
                                                              "save under another --nvme-ai-baseline-name")
            if prob is not None:
                found.append(prob.message)
        if found:
            raise pytest.UsageError("pytest-nvme-ai: nothing was measured: " + "; ".join(found))

    # ---- configure -------------------------------------------------------------------------
    def setup_targets(self) -> None:
        raw = settings.resolve(self.config, "target")
        paths: list[Path] = []
        embedded = not raw
        if embedded:
            # The embedded default: a directory under pytest's basetemp, reported as whatever backs it.
            factory = getattr(self.config, "_tmp_path_factory", None)  # set by pytest's tmpdir plugin
            base = factory.getbasetemp() if factory is not None else Path(os.environ.get("TMPDIR", "/tmp"))
            d = Path(base) / "nvme-ai-default-target"
            d.mkdir(parents=True, exist_ok=True)
            paths = [d.resolve()]
        else:
            seen: set[Path] = set()
            for r in raw:
                try:
                    p = validate_target_dir(r)
                except TargetError as exc:
                    raise pytest.UsageError(f"pytest-nvme-ai: {exc}") from None
                if p in seen:
                    raise pytest.UsageError(f"pytest-nvme-ai: target {p} was given twice")
                seen.add(p)
                paths.append(p)
        labels = ["default"] if embedded else make_labels(paths)
        from pytest_nvme_ai.measure.device import identify

        for p, label in zip(paths, labels):
            ident = identify(p)
            self.targets.append(Target(path=p, label=label, run_id=self.run_id, embedded=embedded, device=ident))
        self.claim_targets()

    def claim_targets(self) -> None:
        """Lock each target's private dir; refuse a target another live session is measuring.

        Refuse rather than wait: two sessions on one drive each measure part of its bandwidth
        (a false regression), and a silent wait would spend the CI job's time limit with no
        result; the refusal names the other run at once, and the CI job can be retried."""
        info = {"run_id": self.run_id, "started": self.started.isoformat(),
                "argv": list(self.config.invocation_params.args)}
        busy = []
        for t in self.targets:
            self.locks.append(claim(t, info))
            for other in other_sessions(t):
                if other.live:
                    busy.append(f"target {t.path} is in use by another pytest-nvme-ai session ({other.describe()})")
                else:
                    self.leftovers.setdefault(t.label, []).append(other.directory.name)
        if busy:
            self.release_targets()
            raise pytest.UsageError(
                "pytest-nvme-ai: " + "; ".join(busy) + ". Two sessions measuring one drive each see part of its "
                "bandwidth, which would read as a regression: wait for it to finish, or pass another --nvme-ai-target")

    def release_targets(self) -> None:
        """Remove the private dirs and drop the locks (idempotent; also run at unconfigure)."""
        self.cleanup_targets()
        for lock in self.locks:
            lock.release()
        self.locks.clear()

    def read_smart(self) -> dict[str, Any]:
        from pytest_nvme_ai.measure.device import read_smart

        out: dict[str, Any] = {}
        for t in self.targets:
            out[t.label] = read_smart(t.device)
        return out

    def load_baselines(self) -> None:
        from pytest_nvme_ai.gate import baseline

        names: dict[str, str] = {}
        for t in self.targets:
            names[t.label] = self.baseline_name or t.device.slug()
        from pytest_nvme_ai.core.names import path_in
        if self.baseline_name and len({t.device.slug() for t in self.targets}) > 1:
            raise pytest.UsageError(
                "pytest-nvme-ai: --nvme-ai-baseline-name names one baseline, but the targets are on devices with "
                "different fingerprints; run one target at a time, or drop the name to get one baseline per device"
            )
        for t in self.targets:
            try:
                path = path_in(self.baseline_dir, names[t.label], ".json", what="baseline name")
            except ValueError as exc:
                raise pytest.UsageError(f"pytest-nvme-ai: {exc}") from None
            self.baseline_paths[t.label] = path
            try:
                self.baselines[t.label] = baseline.load(path)
                if self.baselines[t.label] is None and not self.baseline_name:
                    # Same drive model, other firmware or PCIe link: show the change as 'incomparable'
                    # (an error with --nvme-ai-strict) instead of silently starting over as 'new'.
                    sib = baseline.find_sibling(self.baseline_dir, t.device.fingerprint())
                    if sib is not None:
                        self.baselines[t.label] = sib
                        self.sibling_baselines[t.label] = str(sib.path)
            except baseline.BaselineError as exc:
                raise pytest.UsageError(f"pytest-nvme-ai: {exc}") from None

    @property
    def run_dir(self) -> Path:
        if self._run_dir is None:
            d = self.report_dir / self.run_id
            d.mkdir(parents=True, exist_ok=True)
            self._run_dir = d
        return self._run_dir

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
            return settings.parse_marker_value("repeat", kw["repeat"], item.nodeid)
        return self.repeat or self.profile_obj.repeat

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
        return SessionRecorder(self.record_for(item), config=self.config, profile=self.profile_obj,
                               repeat=self.repeat_for(item), timeout=self.timeout, run_dir=lambda: self.run_dir,
                               cache=self.cache, aio=self.aio, children=self.children)

    def gate_rules(self, item: pytest.Item) -> Any:
        from pytest_nvme_ai.gate.policy import GateRules, GateSettingError

        try:
            return GateRules.from_marker(self.marker_kwargs(item), self.tolerance, item.nodeid)
        except GateSettingError as exc:
            raise settings.SettingError(str(exc)) from None

    def gate(self, item: pytest.Item) -> Any:
        """Hand the test's record and its baseline to gate/; returns the gate.policy.GateVerdict (or None)."""
        from pytest_nvme_ai.gate.policy import GateSubject, decide

        rec = item.stash.get(RECORD_KEY, None)
        if rec is None or not rec.metrics:
            return None
        bfile = self.baselines.get(rec.target.label) if rec.target else None
        test = GateSubject(rec.key, rec.nodeid, dict(rec.metrics), _jsonable(rec.params), self.profile,
                             rec.target.device.fingerprint() if rec.target is not None else None)
        v = decide(test, self.gate_rules(item), bfile, window=self.baseline_window)
        rec.comparisons, rec.baseline_file, rec.verdict = list(v.comparisons), v.baseline_file, v.verdict
        return v

    def finalize_verdict(self, rec: TestRecord) -> None:
        if rec.outcome == "skipped":
            rec.verdict = None
        elif rec.outcome in ("failed", "error") and rec.verdict != "regression":
            rec.verdict = "error"

    # ---- finish ----------------------------------------------------------------------------
    def mark_interrupted(self, why: str) -> None:
        """Ctrl-C, SIGTERM or pytest.exit: the run never looks complete, the running test is named."""
        self.interrupted = why
        rec = self.records.get(self.current_test or "")
        if rec is not None and rec.outcome in ("not run", "passed"):
            rec.outcome = "interrupted"
            rec.verdict = None
            rec.longrepr = f"interrupted while running: {why}"

    def decide_status(self, exitstatus: int) -> None:
        not_run = [r for r in self.records.values() if r.outcome in ("not run", "interrupted")]
        if self.interrupted is not None or exitstatus == pytest.ExitCode.INTERRUPTED:
            self.status = "interrupted"
            why = self.interrupted or "interrupted"
            self.status_detail = f"{why}; {len(not_run)} of {len(self.records)} measured test(s) not run"
        elif exitstatus == pytest.ExitCode.INTERNAL_ERROR:
            self.status, self.status_detail = "error", "pytest internal error"
        elif not_run:
            self.status = "incomplete"
            self.status_detail = (f"{len(not_run)} of {len(self.records)} measured test(s) not run "
                                  "(the session stopped early, e.g. -x / --maxfail)")
        else:
            self.status, self.status_detail = "complete", ""

    def finish(self, exitstatus: int) -> None:
        try:
            if self.config.option.collectonly or not self.records:
                return
            self.decide_status(exitstatus)
            data = self.results(exitstatus)
            self.write_results(data)
            if self.save_baseline and self.status == "interrupted":
                self.baseline_skipped = ("the run was interrupted: no baseline saved from it (rerun it, or promote "
                                         f"the tests you trust with: nvme-ai baseline promote {self.results_path})")
                self.save_errors.append(self.baseline_skipped)
            elif self.save_baseline:
                self.save_baselines(data)
            if self.benchmark_json:
                from pytest_nvme_ai.run.benchmark_export import write_benchmark_json

                try:
                    write_benchmark_json(self.benchmark_json, data)
                except OSError as exc:
                    self.late_errors.append(f"--nvme-ai-benchmark-json {self.benchmark_json} not written: {exc}; "
                                            f"the same figures are in {self.results_path}")
        finally:
            self.release_targets()

    def write_results(self, data: dict[str, Any]) -> None:
        """results.json + index.html in the run dir; when that fails late, in a temp dir, and say so."""
        from pytest_nvme_ai.core.fsutil import atomic_symlink, atomic_write_json
        from pytest_nvme_ai.core.writable import fallback_dir

        try:
            self.results_path = self.run_dir / "results.json"
            atomic_write_json(self.results_path, data)
        except OSError as exc:
            intended = self.report_dir / self.run_id
            self._run_dir = fallback_dir(self.run_id)
            self.results_path = self._run_dir / "results.json"
            atomic_write_json(self.results_path, data)
            self.late_errors.append(f"could not write the results to {intended} ({exc}); they are kept in "
                                    f"{self._run_dir} instead")
            self.render_report(data)
            return
        self.render_report(data)
        try:
            atomic_symlink(self.report_dir / "latest", self.run_id)
        except OSError as exc:
            warnings.warn(NvmeAiWarning(f"could not point {self.report_dir / 'latest'} at this run: {exc}"))

    def render_report(self, data: dict[str, Any]) -> None:
        try:
            from pytest_nvme_ai.report import render_run
        except ImportError as exc:  # the report package is part of the plugin; this is a broken install
            warnings.warn(NvmeAiWarning(f"HTML report not written: {exc}"))
            return
        out = self.run_dir / "index.html"
        try:
            render_run(data, out, run_dir=self.run_dir)
        except Exception as exc:  # noqa: BLE001 - a report bug must not lose results.json, already written
            warnings.warn(NvmeAiWarning(f"HTML report failed ({type(exc).__name__}: {exc}); results.json is intact, "
                                        f"re-render with: nvme-ai report {self.results_path}"))
            return
        self.report_path = out

    def save_baselines(self, data: dict[str, Any]) -> None:
        from pytest_nvme_ai.gate import baseline
        from pytest_nvme_ai.gate.policy import saveable

        by_label: dict[str, list[TestRecord]] = {}
        for rec in self.records.values():
            if rec.metrics and rec.target is not None and saveable(rec.to_dict(), self.baseline_window):
                by_label.setdefault(rec.target.label, []).append(rec)
        for t in self.targets:
            recs = by_label.get(t.label)
            if not recs:
                continue
            path = self.baseline_paths[t.label]
            sessions = [baseline.new_session_from_record(r.to_dict()) for r in recs]
            try:
                baseline.save_sessions(path, name=path.stem, fingerprint=t.device.fingerprint(), sessions=sessions,
                                       run=data["run"], environment=data["environment"], window=self.baseline_window)
            except baseline.BaselineError as exc:
                self.save_errors.append(str(exc))
                continue
            except OSError as exc:  # changed under the run (checked at configure): keep the run, say how to save it
                self.save_errors.append(f"{path}: {exc}; this run's results are in {self.results_path}: save them "
                                        f"later with nvme-ai baseline promote {self.results_path} --name {path.stem}")
                continue
            self.saved_baselines.append(path)
            self.saved_short_window.extend(r.nodeid for r in recs if r.outcome != "passed")

    def cleanup_targets(self) -> None:
        for t in self.targets:
            t.cleanup()

    def results(self, exitstatus: int) -> dict[str, Any]:
        from pytest_nvme_ai.run.environment import commit_info

        smart_after = self.read_smart() if self.targets else {}
        targets = []
        for t in self.targets:
            dev = t.device.to_dict() if t.device is not None else {}
            dev["smart_before"] = _jsonable(self.smart_before.get(t.label))
            dev["smart_after"] = _jsonable(smart_after.get(t.label))
            dev["fingerprint"] = t.device.fingerprint() if t.device is not None else None
            targets.append({"path": str(t.path), "label": t.label, "embedded": t.embedded, "device": dev,
                            "leftovers": list(self.leftovers.get(t.label, [])),
                            "baseline": str(self.baseline_paths.get(t.label)) if t.label in self.baseline_paths else None})
        return {
            "schema_version": SCHEMA_VERSION,
            "run": {
                "id": self.run_id,
                "started": self.started.isoformat(),
                "finished": datetime.now(timezone.utc).isoformat(),
                "profile": self.profile,
                "tolerance": self.tolerance,
                "baseline_window": self.baseline_window,
                "gate_warnings": list(self.gate_warnings),
                "commit": commit_info(),
                "argv": list(self.config.invocation_params.args),
                "exitstatus": int(exitstatus),
                "status": self.status,
                "status_detail": self.status_detail,
                "plugin_version": __import__("pytest_nvme_ai").__version__,
            },
            "environment": self.environment,
            "targets": targets,
            "tests": [r.to_dict() for r in self.records.values()],
        }


def profile_of(config: pytest.Config) -> Profile:
    """The session's Profile (suites read their grid sizes from it at collection)."""
    return PROFILES[get_session(config).profile]
