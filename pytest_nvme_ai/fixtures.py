"""The plugin's fixtures. Each one is thin: the work is in the module that owns the concern."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pytest

from pytest_nvme_ai.core.targets import Target
from pytest_nvme_ai.run.records import SessionRecorder
from pytest_nvme_ai.run.session import get_session

if TYPE_CHECKING:  # the runners import their own heavy-ish modules: only when a test asks for them
    from pytest_nvme_ai.measure.aio.runner import AioRunner
    from pytest_nvme_ai.measure.deepspeed.options import RunnerOptions
    from pytest_nvme_ai.measure.device import DeviceIdentity
    from pytest_nvme_ai.measure.fio.runner import FioRunner
    from pytest_nvme_ai.measure.zero_inference.runner import ZeroInferenceRunner
    from pytest_nvme_ai.measure.zero_infinity.runner import ZeroInfinityRunner


def terminal_progress(config: pytest.Config) -> Callable[[str], None]:
    """A progress callback that reaches the terminal even while pytest captures fd 2.

    Building DeepSpeed's AsyncIO op takes minutes the first time; a line that only lands
    in captured output would leave the user looking at a silent, apparently hung run.
    """
    def say(message: str) -> None:
        capman = config.pluginmanager.getplugin("capturemanager")
        tr = config.pluginmanager.getplugin("terminalreporter")
        line = message if message.startswith("nvme-ai") else f"nvme-ai: {message}"
        if capman is None or tr is None:
            import sys

            print(line, file=sys.__stderr__, flush=True)
            return
        with capman.global_and_fixture_disabled():
            tr.write_line(line)

    return say


@pytest.fixture(scope="session")
def offload_target(request: pytest.FixtureRequest) -> Target:
    """A target directory on the device under test (parametrized over --nvme-ai-target)."""
    param = getattr(request, "param", None)
    if param is None:
        targets = get_session(request.config).targets
        if not targets:
            pytest.skip("no nvme-ai target configured")
        return targets[0]
    return param


@pytest.fixture
def nvme_ai(request: pytest.FixtureRequest) -> SessionRecorder:
    """Record metrics, params and artifacts for this test; they are gated against the baseline."""
    return get_session(request.config).recorder(request.node)


@pytest.fixture
def ssd_device(offload_target: Target) -> DeviceIdentity:
    """The drive identity behind the target."""
    device: DeviceIdentity = offload_target.device
    return device


@pytest.fixture
def fio(offload_target: Target, nvme_ai: SessionRecorder) -> FioRunner:
    """Run fio jobs in the target; each run's metrics are recorded into this test."""
    from pytest_nvme_ai.measure.fio.runner import FioRunner, fio_missing_reason

    reason = fio_missing_reason()
    if reason:
        pytest.skip(reason)
    return FioRunner(offload_target, nvme_ai)


@pytest.fixture
def ds_aio(offload_target: Target, nvme_ai: SessionRecorder) -> AioRunner:
    """DeepSpeed's aio read path (ds_io equivalent) on the target."""
    from pytest_nvme_ai.measure.aio.runner import AioRunner, aio_missing_reason

    reason = aio_missing_reason(terminal_progress(nvme_ai.config))
    if reason:
        pytest.skip(reason)
    return AioRunner(offload_target, nvme_ai)


@pytest.fixture
def zero_inference(offload_target: Target, nvme_ai: SessionRecorder, request: pytest.FixtureRequest) -> ZeroInferenceRunner:
    """Run ZeRO-Inference specs in a child process; results are typed and recorded."""
    from pytest_nvme_ai.measure.zero_inference.runner import ZeroInferenceRunner, inference_missing_reason

    reason = inference_missing_reason()
    if reason:
        pytest.skip(reason)
    config = nvme_ai.config
    loop_progress = terminal_progress(config) if config.get_verbosity() >= 1 else None  # -q stays quiet
    return ZeroInferenceRunner(offload_target, nvme_ai, progress=terminal_progress(config),
                               loop_progress=loop_progress, position=_position(request),
                               options=runner_options(nvme_ai))


def runner_options(nvme_ai: SessionRecorder) -> RunnerOptions:
    """A DeepSpeed workload runner's options, from the settings (CLI > env > ini > default) and this test's
    timeout (a marker may change it): passed to the runner, never read off the recorder."""
    from pytest_nvme_ai.measure.deepspeed.options import RunnerOptions
    from pytest_nvme_ai.run.settings import resolve

    return RunnerOptions(aio=nvme_ai.aio_setting, timeout=float(nvme_ai.timeout),
                         engine_reuse=bool(resolve(nvme_ai.config, "engine_reuse")),
                         fork_workers=bool(resolve(nvme_ai.config, "fork_workers")),
                         rated_tbw=resolve(nvme_ai.config, "rated_tbw"), rated_dwpd=resolve(nvme_ai.config, "rated_dwpd"),
                         warranty_years=resolve(nvme_ai.config, "warranty_years"))


def _position(request: pytest.FixtureRequest) -> str | None:
    """'k/N': this test among the session's tests that use zero_inference (for progress lines)."""
    items = [i for i in request.session.items if "zero_inference" in getattr(i, "fixturenames", ())]
    return f"{items.index(request.node) + 1}/{len(items)}" if request.node in items else None


@pytest.fixture
def zero_infinity(offload_target: Target, nvme_ai: SessionRecorder) -> ZeroInfinityRunner:
    """Run ZeRO-Infinity training specs (parameters and optimizer offloaded) in a child process."""
    from pytest_nvme_ai.measure.zero_infinity.runner import ZeroInfinityRunner, training_missing_reason

    reason = training_missing_reason()
    if reason:
        pytest.skip(reason)
    return ZeroInfinityRunner(offload_target, nvme_ai, progress=terminal_progress(nvme_ai.config),
                              options=runner_options(nvme_ai))
