"""pytest entry point: options, ini keys, markers and hooks. Thin: the work is in run/ (session.py per test,
finish.py at the end of the run) and gate/ (what a verdict does to a test)."""
from __future__ import annotations

import signal
import threading
import warnings
from typing import Any, Generator

import pytest

from pytest_nvme_ai.run import settings
from pytest_nvme_ai.run.session import SESSION_KEY, NvmeAiSession, NvmeAiWarning, get_session
from pytest_nvme_ai.run.finish import end_run
from pytest_nvme_ai.run.order import engine_order
from pytest_nvme_ai.run.summary import header_lines, warning_lines, write_summary

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
    # The session is created here (settings resolved, history store checked) but targets need basetemp,
    # set by pytest's tmpdir plugin at its configure; pytest_sessionstart below runs after every configure.
    session = NvmeAiSession(config)
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(_Hooks(session), "nvme_ai_session")


class _Hooks:
    def __init__(self, session: NvmeAiSession) -> None:
        self.s = session

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.s.start()
        self._previous_sigterm = _sigterm_as_interrupt()
        self._warnings_when_no_header(session.config)

    def _warnings_when_no_header(self, config: pytest.Config) -> None:
        """Under -q (or --no-header) pytest prints no header: a true leftover and what the gate cannot see
        are still named, before the first test."""
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if tr is None or (tr.verbosity >= 0 and not config.option.no_header):
            return
        for line in warning_lines(self.s):
            tr.write_line(line, yellow=True)

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
        self.s.begin_test(item.nodeid)
        result = yield
        self.s.end_test()   # not reached when Ctrl-C leaves the test: it stays named as the one running
        return result

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        self.s.mark_interrupted(_interrupt_reason(excinfo.value))

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.s.release()   # idempotent; covers a session that failed before sessionfinish

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        return header_lines(self.s)

    @pytest.hookimpl(tryfirst=True)  # target first in ids: test_seq_read[@nvme0-bs1M-qd16-j1]
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "offload_target" in metafunc.fixturenames:
            targets = list(self.s.targets)
            metafunc.parametrize("offload_target", targets, ids=[t.id for t in targets], indirect=True,
                                 scope="session")

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        if self.s.settings.engine_reuse:
            items[:] = engine_order(items)  # cases sharing a ZeRO-Inference engine run next to each other

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        result = yield
        # The test body passed: gate/ decides on its metrics now, so a regression fails exactly this test.
        v = self.s.gate(item)
        if v is None:
            return result
        item.user_properties.extend(v.properties())
        action = v.enforce(strict=self.s.settings.strict)   # gate.policy: what fails the test, what only warns
        for message in action.warnings:
            warnings.warn(NvmeAiWarning(message))
        if action.failure:
            pytest.fail(action.failure, pytrace=False)
        return result

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.s.log_report(report)

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
        for problem in self.s.close_children():   # before the end of the run: a worker may hold a target dir
            warnings.warn(NvmeAiWarning(problem))
        end_run(self.s, exitstatus)   # run/finish.py: results.json, history, the page, baselines, exports
        if self.s.outputs.failed() and session.exitstatus == pytest.ExitCode.OK:
            # the tests passed, but the baseline, the history or the results are not where they were asked
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write_summary(terminalreporter, self.s)


def _sigterm_as_interrupt() -> Any:
    """A cancelled CI job gets SIGTERM: treat it as Ctrl-C so results are written and the targets'
    private directories (which can hold a 64 GiB data file) are removed. Main thread only."""
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


def _cuda_missing() -> str | None:
    try:
        import torch
    except ImportError:
        return "needs a CUDA GPU: torch is not installed"
    if not torch.cuda.is_available():
        return "needs a CUDA GPU: torch.cuda.is_available() is False on this machine"
    return None


__all__ = ["get_session", "pytest_addoption", "pytest_configure"]
