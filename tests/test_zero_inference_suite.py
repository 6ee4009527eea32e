"""The ZeRO-Inference suite's grids and its outcome policy, without running DeepSpeed."""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Iterator

import pytest

from pytest_nvme_ai.core.profiles import PROFILES, QUICK_MODEL

SUITE = Path(__file__).resolve().parents[1] / "suites" / "test_zero_inference.py"


@pytest.fixture(scope="module")
def suite() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("zi_suite_under_test", SUITE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


class Notes:
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)


def result(outcome: str) -> Any:
    return SimpleNamespace(ok=outcome == "ok", outcome=outcome, error=f"{outcome} happened", log_tail="LOG TAIL",
                           log_path="run.log", spec=SimpleNamespace(id="opt-66b-bs140-cpu-q4-kv"))


def test_oom_is_a_result_where_the_case_may_not_fit(suite: ModuleType) -> None:
    notes = Notes()
    suite._check_outcome(result("oom"), notes, may_oom=True)  # passes: the outcome is the result
    assert "out of memory" in notes.notes[0]


@pytest.mark.parametrize("outcome, may_oom", [("oom", False), ("timeout", True), ("error", True)])
def test_other_failures_fail_with_the_log_tail(suite: ModuleType, outcome: str, may_oom: bool) -> None:
    with pytest.raises(pytest.fail.Exception) as exc:
        suite._check_outcome(result(outcome), Notes(), may_oom=may_oom)
    assert f"outcome {outcome}" in str(exc.value) and "LOG TAIL" in str(exc.value)


def test_may_oom_policy(suite: ModuleType) -> None:
    Case = suite.Case
    assert Case("opt-66b", 32).may_oom("cpu") and not Case("opt-66b", 32).may_oom("nvme")
    assert Case("opt-13b", 128).may_oom("nvme") and not Case("opt-13b", 80).may_oom("cpu")
    assert not Case("opt-tiny", 1).may_oom("cpu")


def test_quick_grid_runs_without_gpu_and_keeps_the_kv_skip(suite: ModuleType) -> None:
    grid = {"single": PROFILES["quick"].zi_single, "pair": PROFILES["quick"].zi_pair}  # the grid is the profile's
    assert all(not c.gpu for c in grid["single"] + grid["pair"])
    # the NVMe cases stream their decoder layers: opt-tiny's matrices are below DeepSpeed's 1 MiB threshold
    assert all(c.model == QUICK_MODEL == "opt-125m" for c in grid["single"] + grid["pair"]
               if c.offload == "nvme" and not c.kv_offload)
    assert grid["single"][0].offload == "none"  # first: the NVMe cases reuse it as their compute bound
    assert any(c.kv_offload for c in grid["single"])
    assert {c.offload for c in grid["single"]} >= {"nvme", "none"}
    assert any(c.quant_bits == 4 for c in grid["single"])
    assert sorted(c.batch_size for c in grid["pair"]) == [1, 2]


def test_full_grid_is_the_seed_matrix_on_gpu(suite: ModuleType) -> None:
    cases = [suite.Case(**asdict(c)) for c in PROFILES["full"].zi_single]
    assert all(c.gpu and c.quant_bits == 4 and c.kv_offload for c in cases)
    assert {c.model for c in cases} == {"opt-13b", "opt-30b", "opt-66b"}
    assert {80, 128, 140} <= {c.batch_size for c in cases}
    assert all((c.prompt_len, c.gen_len) == (512, 32) for c in cases)
    spec = cases[0].spec_for("nvme", PROFILES["full"])
    assert spec.loops == PROFILES["full"].zi_loops == 5 and spec.pin_memory


def test_case_ids_are_unique_per_profile(suite: ModuleType) -> None:
    for name, profile in PROFILES.items():
        single = [suite.Case(**asdict(c)).id for c in profile.zi_single]
        pair = [suite.Case(**asdict(c)).pair_id for c in profile.zi_pair]
        assert len(set(single)) == len(single) and len(set(pair)) == len(pair), name
