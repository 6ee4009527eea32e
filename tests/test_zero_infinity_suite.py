"""The training suite's grids and its checks of a run, without running DeepSpeed."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Iterator

import pytest

from pytest_nvme_ai.core.profiles import PROFILES
from pytest_nvme_ai.measure.zero_infinity.metrics import StepMeasurement
from pytest_nvme_ai.measure.zero_infinity.spec import TrainingSpec

SUITE = Path(__file__).resolve().parents[1] / "suites" / "test_zero_infinity.py"


@pytest.fixture(scope="module")
def suite() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("zinf_suite_under_test", SUITE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_quick_is_small_and_cpu_only(suite: ModuleType) -> None:
    grid = suite.grid_of(PROFILES["quick"])
    cases = grid["single"] + grid["pair"]
    assert all(not c.gpu and c.model == "opt-tiny" for c in cases)
    assert {(c.pipeline_read, c.pipeline_write) for c in grid["single"]} == {(False, False), (True, True)}
    spec = grid["single"][0].spec_for("nvme", PROFILES["quick"])
    assert spec.steps == PROFILES["quick"].zinf_steps and spec.offload_param == spec.offload_optimizer == "nvme"


@pytest.mark.parametrize("profile, models", [("standard", {"opt-1.3b", "opt-6.7b"}),
                                             ("full", {"opt-1.3b", "opt-6.7b", "opt-13b"})])
def test_gpu_profiles_carry_the_opt_shapes(suite: ModuleType, profile: str, models: set[str]) -> None:
    grid = suite.grid_of(PROFILES[profile])
    assert {c.model for c in grid["single"]} == models == {c.model for c in grid["pair"]}
    assert all(c.gpu for c in grid["single"] + grid["pair"])
    pipes = {(c.pipeline_read, c.pipeline_write) for c in grid["single"]}
    assert pipes == {(False, False), (True, False), (False, True), (True, True)}
    for c in grid["single"]:
        c.spec_for("nvme", PROFILES[profile]).validate("cuda")


def test_case_ids_are_unique(suite: ModuleType) -> None:
    for name in ("quick", "standard", "full"):
        grid = suite.grid_of(PROFILES[name])
        ids, pair_ids = [c.id for c in grid["single"]], [c.pair_id for c in grid["pair"]]
        assert len(set(ids)) == len(ids) and len(set(pair_ids)) == len(pair_ids), name


def test_cpu_side_of_a_pair_has_no_pipeline(suite: ModuleType) -> None:
    case = suite.Case("opt-tiny", pipeline_read=True, pipeline_write=True)
    cpu = case.spec_for("cpu")
    assert not (cpu.pipeline_read or cpu.pipeline_write)
    cpu.validate("cpu")


def run(losses: list[float], write: int = 1, outcome: str = "ok") -> Any:
    steps = tuple(StepMeasurement(1.0, x, 10, write, 1) for x in losses[1:])
    warmup = (StepMeasurement(1.0, losses[0], 10, write, 1),)
    return SimpleNamespace(ok=outcome == "ok", outcome=outcome, error="boom", log_tail="LOG TAIL", log_path="x.log",
                           spec=TrainingSpec(model="opt-tiny", steps=len(steps), warmup=1), steps=steps,
                           warmup=warmup, losses=losses, swap_files=[{"path": "a.swp"}])


def test_a_falling_loss_passes(suite: ModuleType) -> None:
    suite.check_trained(run([11.0, 10.0, 9.3, 8.8]))


@pytest.mark.parametrize("losses, message", [([11.0, 11.2, 11.5, 11.9], "did not fall"),
                                             ([11.0, float("nan"), 9.0, 8.0], "non-finite")])
def test_a_loss_that_does_not_fall_fails(suite: ModuleType, losses: list[float], message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        suite.check_trained(run(losses))


def test_an_offloaded_step_that_wrote_nothing_fails(suite: ModuleType) -> None:
    with pytest.raises(AssertionError, match="wrote nothing"):
        suite.check_trained(run([11.0, 10.0, 9.0, 8.0], write=0))


def test_a_run_that_did_not_finish_fails_with_the_log(suite: ModuleType) -> None:
    with pytest.raises(pytest.fail.Exception, match="(?s)outcome timeout.*LOG TAIL"):
        suite.check_outcome(run([1.0, 0.5], outcome="timeout"))
