"""pytest entry point: options, ini keys, markers and hooks. Thin: the work is in session.py."""
from __future__ import annotations

import signal
import sys
import warnings
from typing import Any, Generator

import pytest

from pytest_nvme_ai.run import settings
from pytest_nvme_ai.run.session import SESSION_KEY, NvmeAiSession, NvmeAiWarning, get_session
from pytest_nvme_ai.run.history_hook import register as register_history
from pytest_nvme_ai.run.order import engine_order
from pytest_nvme_ai.run.summary import write_summary

# Fixtures live in their own module; importing it here registers them with the plugin.
from pytest_nvme_ai.fixtures import ds_aio, fio, nvme_ai, offload_target, ssd_device, zero_inference  # noqa: F401
from pytest_nvme_ai.fixtures import zero_infinity  # noqa: F401


def pytest_addoption(parser: pytest.Parser) -> None:
    settings.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "nvme_ai(tolerance=PCT, metrics=[names], repeat=N, metric_tolerance={name: PCT}): per-test gate settings; "
        "they override the command line, env and ini (precedence: marker > CLI > env > ini > profile).",
    )
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped with the reason when none is visible")
    config.addinivalue_line("markers", "nvme: needs a target on a real NVMe device; skipped otherwise")
    config.addinivalue_line("markers", "nvme_ai_engines(key, ...): the ZeRO-Inference engines a case uses; "
                            "cases sharing one run together (run/order.py)")
    if config.option.help or config.option.version:
        return
    if getattr(config.option, "numprocesses", None) or hasattr(config, "workerinput"):
        # Tests measuring the same drive at once would each see a fraction of its bandwidth.
        raise pytest.UsageError(
            "pytest-nvme-ai measures one test at a time: parallel tests on one drive would corrupt each other's "
            "figures. Run without -n (pytest-xdist), or with -p no:nvme_ai for unrelated tests."
        )
    # The session is created here but targets need basetemp, set by pytest's tmpdir plugin at its
    # configure; pytest_sessionstart below is guaranteed to run after every plugin's configure.
    session = NvmeAiSession(config)
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(_Hooks(session), "nvme_ai_session")
    register_history(config)  # run/history_hook.py: opens the store now, appends the run after results.json


class _Hooks:
    def __init__(self, session: NvmeAiSession) -> None:
        self.s = session

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        from pytest_nvme_ai.run.environment import collect

        try:
            if not session.config.option.collectonly:
                self.s.check_outputs()      # before any target is touched or anything measured
            self.s.setup_targets()
            self.s.load_baselines()
            self.s.check_baseline_files()
        except BaseException:
            # pytest skips sessionfinish when sessionstart fails: remove our private dirs and locks now.
            self.s.release_targets()
            raise
        self.s.smart_before = self.s.read_smart()
        self.s.environment = collect()
        self._previous_sigterm = _sigterm_as_interrupt()
        self._gate_warnings()
        self._warnings_when_no_header(session.config)

    def _gate_warnings(self) -> None:
        """What the gate cannot see here (gate.policy.window_warnings), per target, into s.gate_warnings
        (results.json, the report). Worked out at session start, not in the header hook: under -q pytest
        calls no header hook, and CI runs often use -q."""
        from pytest_nvme_ai.gate.policy import window_warnings

        s = self.s
        for t in s.targets:
            bf = s.baselines.get(t.label)
            if bf is not None and t.label not in s.sibling_baselines:
                s.gate_warnings.extend(f"{t.id}: {w}" for w in window_warnings(bf, s.tolerance, s.baseline_window))

    def _warnings_when_no_header(self, config: pytest.Config) -> None:
        """Under -q (or --no-header) pytest prints no header: a true leftover and what the gate cannot see
        are still named, before the first test."""
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if tr is None or (tr.verbosity >= 0 and not config.option.no_header):
            return
        for t in self.s.targets:
            for w in _target_warnings(t, self.s.leftovers.get(t.label, [])):
                tr.write_line(f"nvme-ai WARNING {t.id}: {w}", yellow=True)
        for w in self.s.gate_warnings:
            tr.write_line(f"nvme-ai WARNING {w}", yellow=True)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # Every measured test is in results.json from the start, as "not run" until it runs: an
        # interrupted run lists what it never reached instead of silently omitting it.
        if session.config.option.collectonly:
            return
        for item in session.items:
            fixturenames = getattr(item, "fixturenames", ())
            if "nvme_ai" in fixturenames or "offload_target" in fixturenames:
                self.s.record_for(item)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, Any, Any]:
        self.s.current_test = item.nodeid
        result = yield
        self.s.current_test = None   # not reached when Ctrl-C leaves the test: it stays named as the one running
        return result

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        self.s.mark_interrupted(_interrupt_reason(excinfo.value))

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.s.release_targets()   # idempotent; covers a session that failed before sessionfinish

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        from pytest_nvme_ai.run.environment import fio_version

        s = self.s
        lines = [f"nvme-ai: profile {s.profile}, tolerance {s.tolerance:g}%, run {s.run_id}, "
                 f"fio {fio_version() or 'not found (apt-get install fio)'}"]
        for t in s.targets:
            summary = t.device.summary() if t.device is not None else "device unknown"
            lines.append(f"nvme-ai target {t.id}: {t.path}{' (embedded default)' if t.embedded else ''} -> {summary}")
            bf = s.baselines.get(t.label)
            if t.label in s.sibling_baselines:
                lines.append(f"nvme-ai baseline for {t.id}: none for this exact device; comparing with "
                             f"{s.sibling_baselines[t.label]} (same model, other firmware or PCIe link): "
                             f"results are 'incomparable' ('error' with --nvme-ai-strict)")
            else:
                lines.append(f"nvme-ai baseline for {t.id}: {s.baseline_paths[t.label]}"
                             f" ({len(bf.entries)} entries)" if bf else
                             f"nvme-ai baseline for {t.id}: none yet at {s.baseline_paths[t.label]}")
            lines.extend(f"nvme-ai WARNING {t.id}: {w}" for w in _target_warnings(t, s.leftovers.get(t.label, [])))
            lines.extend(f"nvme-ai WARNING {w}" for w in s.gate_warnings if w.startswith(f"{t.id}: "))
        return lines

    @pytest.hookimpl(tryfirst=True)  # target first in ids: test_seq_read[@nvme0-bs1M-qd16-j1]
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "offload_target" in metafunc.fixturenames:
            targets = self.s.targets
            metafunc.parametrize("offload_target", targets, ids=[t.id for t in targets], indirect=True,
                                 scope="session")

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        if settings.resolve(self.s.config, "engine_reuse"):
            items[:] = engine_order(items)  # cases sharing a ZeRO-Inference engine run next to each other

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        result = yield
        # The test body passed: gate/ decides on its metrics now, so a regression fails exactly this test.
        v = self.s.gate(item)
        if v is None:
            return result
        for c in v.comparisons:
            item.user_properties.append((f"nvme_ai.{c.metric}", c.now))
            item.user_properties.append((f"nvme_ai.{c.metric}.verdict", c.verdict))
            if c.min_detectable_change is not None:
                item.user_properties.append((f"nvme_ai.{c.metric}.min_detectable_change_pct",
                                             round(c.min_detectable_change, 2)))
        if v.verdict:
            item.user_properties.append(("nvme_ai.verdict", v.verdict))
        failure = v.failure()
        if failure:
            pytest.fail(failure, pytrace=False)
        for c in v.improvements:
            warnings.warn(NvmeAiWarning(c.message + " — refresh the baseline with --nvme-ai-save-baseline"))
        if self.s.strict and v.incomparable:
            pytest.fail(v.incomparable[0].message + " (--nvme-ai-strict)", pytrace=False)
        return result

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rec = self.s.records.get(report.nodeid)
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
            self.s.finalize_verdict(rec)

    @pytest.hookimpl(tryfirst=True)  # before skipif/skip marks, so skipped measured tests are in results.json
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        fixturenames = getattr(item, "fixturenames", ())
        if "nvme_ai" in fixturenames or "offload_target" in fixturenames:
            self.s.record_for(item)
        for mark in ("gpu", "nvme"):
            if item.get_closest_marker(mark) is None:
                continue
            if mark == "gpu":
                reason = _cuda_missing()
            else:
                t = self.s.target_of(item)
                reason = None if t is None or t.device is None or t.device.is_nvme else (
                    f"needs a real NVMe device: target {t.path} is on {t.device.summary()}")
            if reason:
                pytest.skip(reason)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        signal.signal(signal.SIGTERM, getattr(self, "_previous_sigterm", signal.SIG_DFL) or signal.SIG_DFL)
        _close_inference_workers()
        for failure in self.s.children.close_all():
            warnings.warn(NvmeAiWarning(f"closing {failure.name} at the end of the session failed: {failure.error}"))
        self.s.finish(exitstatus)
        if (self.s.save_errors or self.s.late_errors) and session.exitstatus == pytest.ExitCode.OK:
            # the tests passed, but the baseline was not saved or the results are not where they were asked
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write_summary(terminalreporter, self.s)


def _close_inference_workers() -> None:
    """End the ZeRO-Inference workers and remove their swap files when the session ends (not only at
    interpreter exit: an in-process pytest run, like pytester's, goes on living)."""
    pool = sys.modules.get("pytest_nvme_ai.measure.zero_inference.pool")
    if pool is not None:
        pool.close_shared_pool()


def _sigterm_as_interrupt() -> Any:
    """A cancelled CI job gets SIGTERM: treat it as Ctrl-C so results are written and the targets'
    private directories (which can hold a 64 GiB data file) are removed. Main thread only."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum} (SIGTERM)")

    return signal.signal(signal.SIGTERM, handler)


def _interrupt_reason(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        text = str(exc)
        return "SIGTERM" if "SIGTERM" in text else "Ctrl-C (SIGINT)"
    return f"pytest.exit: {exc}"


def _target_warnings(t: Any, leftovers: list[str]) -> list[str]:
    out = []
    pcie = (t.device.to_dict().get("pcie") or {}) if t.device is not None else {}
    if pcie.get("downtrained"):
        out.append(f"PCIe link trained below its maximum: Gen{pcie.get('current_gen')} x{pcie.get('current_width')} "
                   f"of Gen{pcie.get('max_gen')} x{pcie.get('max_width')}; bandwidth is capped by the link")
    if leftovers:
        # Their session lock is not held by anyone: the runs that made them are dead (crash, kill -9).
        out.append(f"leftover private directories of runs that died without cleaning up: {', '.join(leftovers)} "
                   f"in {t.path} (no live session holds them: safe to remove, e.g. rm -r {t.path / leftovers[0]})")
    return out


def _cuda_missing() -> str | None:
    try:
        import torch
    except ImportError:
        return "needs a CUDA GPU: torch is not installed"
    if not torch.cuda.is_available():
        return "needs a CUDA GPU: torch.cuda.is_available() is False on this machine"
    return None


__all__ = ["get_session", "pytest_addoption", "pytest_configure"]
