"""The A/B scheduler (run/ab.py) with a fake measurement and a fake clock: order, stopping, budget, messages."""
from __future__ import annotations

import math
import random
from typing import Any

import pytest

from pytest_nvme_ai.core.ab_protocol import AbRecorder, plan_of
from pytest_nvme_ai.core.arms import parse_ab
from pytest_nvme_ai.gate.policy import AbGate, GateRules
from pytest_nvme_ai.run.ab import RunAb, TestAb, overall, pair_order


class Rec:
    """The two fields of run.records.TestRecord the scheduler uses."""

    def __init__(self) -> None:
        self.ab: dict[str, Any] | None = None
        self.gated_metrics = None


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def plan(budget: float = 60.0, order: str = "random", overrides: str = "same", cap: float | None = None,
         rules: GateRules | None = None) -> tuple[TestAb, Rec, Clock]:
    run = RunAb(parse_ab([overrides]), cap, budget, order)  # type: ignore[arg-type]
    rec, clock = Rec(), Clock()
    return TestAb(run, rec, rules or GateRules(10.0), "run-1 test_x", clock=clock), rec, clock


def fake(clock: Clock, ratio: float, noise: float, seed: int = 1, seconds: float = 1.0) -> Any:
    """bw of arm B = ratio x arm A's, each with log-normal noise; every run takes `seconds` on the clock."""
    rng = random.Random(seed)
    calls: list[str] = []

    def measure_once(arm: str) -> dict[str, float]:
        calls.append(arm)
        clock.t += seconds
        level = 1e9 * (ratio if arm == "B" else 1.0)
        return {"bw": level * math.exp(rng.gauss(0, noise)), "clat_p99": 1e6}

    measure_once.calls = calls  # type: ignore[attr-defined]
    return measure_once


def test_random_order_is_seeded_recorded_and_reproducible() -> None:
    p, rec, clock = plan(budget=20)
    out = p.measure_pairs(fake(clock, 1.0, 0.3), arms={"A": {"x": 1}, "B": {"x": 2}}, label="bs1M")
    orders = [pr.order for pr in out.pairs]
    assert {("A", "B"), ("B", "A")} == set(orders)       # both orders occur over the pairs
    again = random.Random(p.seed)
    assert orders == [pair_order(i, "random", again) for i in range(len(orders))]   # from the recorded seed
    assert rec.ab is not None and rec.ab["seed"] == p.seed and rec.ab["order"] == "random"
    assert [pr["order"] for pr in rec.ab["pairs"]] == ["".join(o) for o in orders]
    assert rec.ab["arms"] == {"A": {"x": 1}, "B": {"x": 2}}


def test_abba_alternates_and_each_pair_runs_one_repetition_per_arm() -> None:
    p, _, clock = plan(budget=14, order="abba")
    m = fake(clock, 1.0, 0.3)
    out = p.measure_pairs(m, arms={})
    assert [pr.order for pr in out.pairs][:4] == [("A", "B"), ("B", "A"), ("A", "B"), ("B", "A")]
    assert m.calls[:8] == ["A", "B", "B", "A", "A", "B", "B", "A"]
    assert len(m.calls) == 2 * len(out.pairs)


def test_a_clear_slowdown_stops_at_the_minimum_pairs_as_worse() -> None:
    p, rec, clock = plan(budget=600)
    out = p.measure_pairs(fake(clock, 0.5, 0.03), arms={})
    assert out.verdict == "worse" and len(out.pairs) == 5
    d = rec.ab["metrics"]["bw"]  # type: ignore[index]
    assert d["verdict"] == "worse" and d["interval"][1] < 0.9 and rec.ab["stop_reason"] == "every gated metric decided"
    assert "clat_p99" not in rec.ab["metrics"]   # not gated by the catalog: reported per pair, not decided
    assert rec.ab["pairs_used"] == 5 and rec.ab["wall_s"] == pytest.approx(10.0)


def test_no_change_at_low_noise_reads_same() -> None:
    p, _, clock = plan(budget=600)
    assert p.measure_pairs(fake(clock, 1.0, 0.01), arms={}).verdict == "same"


def test_budget_spent_reads_unknown_with_pairs_needed() -> None:
    # 20% pair noise, 30 s budget at 2 s per pair: the interval cannot fit inside ±10% in time
    p, rec, clock = plan(budget=30)
    out = p.measure_pairs(fake(clock, 1.0, 0.2), arms={})
    assert out.verdict == "unknown" and rec.ab["stop_reason"] == "budget spent"  # type: ignore[index]
    d = rec.ab["metrics"]["bw"]  # type: ignore[index]
    assert d["pairs_needed"] is None or d["pairs_needed"] > d["pairs"]
    assert "budget spent" in d["stop_reason"]
    # it stops before a pair would overrun the budget (each pair takes 2 s on the clock)
    assert clock.t - 1000.0 <= 30 and len(out.pairs) >= 13


def test_metrics_marker_decides_what_is_gated() -> None:
    p, rec, clock = plan(budget=600, rules=GateRules(10.0, ("bw", "clat_p99")))
    p.measure_pairs(fake(clock, 0.5, 0.03), arms={})
    assert set(rec.ab["metrics"]) == {"bw", "clat_p99"}   # type: ignore[index]
    assert rec.ab["metrics"]["clat_p99"]["verdict"] == "same"   # type: ignore[index]


def test_worse_fails_with_metric_ratio_interval_tolerance_and_pairs_named() -> None:
    p, rec, clock = plan(budget=600, overrides="env:FOO=1")
    p.measure_pairs(fake(clock, 0.5, 0.03), arms={}, label="bs1M")
    gate = AbGate.of(rec.ab)  # type: ignore[arg-type]
    assert gate.verdict == "regression"
    failure = gate.enforce(strict=False).failure
    assert failure is not None
    for part in ("A/B bw [bs1M] WORSE", "B/A 0.", "interval [", "tolerance ±10%", "5 pairs", "A: env:FOO=1"):
        assert part in failure, part
    props = dict(gate.properties())
    assert props["nvme_ai.ab.bw.verdict"] == "worse" and props["nvme_ai.verdict"] == "regression"
    assert 0.4 < props["nvme_ai.ab.bw.ratio"] < 0.6 and props["nvme_ai.ab.bw.interval"].startswith("[0.")


def test_unknown_passes_yellow_and_fails_under_strict() -> None:
    p, rec, clock = plan(budget=12)
    p.measure_pairs(fake(clock, 1.0, 0.3), arms={})
    gate = AbGate.of(rec.ab)  # type: ignore[arg-type]
    assert gate.verdict == "unknown"
    assert gate.enforce(strict=False).failure is None
    strict = gate.enforce(strict=True).failure
    assert strict is not None and "--nvme-ai-strict" in strict and "UNKNOWN" in strict


def test_overall_ranks_worse_over_better_over_unknown_over_same() -> None:
    assert overall(["same", "unknown"]) == "unknown"
    assert overall(["better", "unknown"]) == "better"
    assert overall(["same", "worse", "better"]) == "worse"
    assert overall([]) == "unknown"


def test_recorder_protocol_finds_the_plan() -> None:
    p, _, _ = plan()

    class WithAb:
        ab = p

    assert isinstance(WithAb(), AbRecorder) and plan_of(WithAb()) is p
    assert plan_of(object()) is None


def test_series_key_names_the_arms_and_the_cap() -> None:
    assert RunAb(parse_ab(["same"]), 0.5, 60).series == "A:same|B:read_cap=0.5"
    assert RunAb(parse_ab(["fio=/opt/fio"]), None, 60).series == "A:fio=/opt/fio"
    assert RunAb(None, 0.5, 60).series is None and RunAb(None, 0.5, 60).active


def test_history_keeps_an_ab_test_as_its_own_series() -> None:
    from pytest_nvme_ai.history.flatten import ab_series_key

    assert ab_series_key({"ab": {"series": "A:same|B:read_cap=0.5"}}, "t.py::t[bs1M]") == \
        "t.py::t[bs1M] {ab A:same|B:read_cap=0.5}"
    assert ab_series_key({"ab": None}, "t.py::t") == "t.py::t" and ab_series_key({}, "k") == "k"


def test_report_section_draws_the_forest_plot_and_the_arms() -> None:
    from pathlib import Path

    from pytest_nvme_ai.report.sections.ab import ab_section
    from pytest_nvme_ai.report.view import view_of

    p, rec, clock = plan(budget=600, cap=0.5)
    p.measure_pairs(fake(clock, 0.5, 0.03), arms={"A": {"target": "/a"}, "B": {"target": "/b", "read_cap": 0.5}})
    test = {"nodeid": "t.py::t[@x]", "suite": "seq_read", "outcome": "failed", "verdict": "regression", "ab": rec.ab}
    sec = ab_section([view_of(0, test, Path("."), None)])
    assert sec is not None and len(sec.charts) == 2 and not any(c.error for c in sec.charts)
    assert 'aria-label="A/B forest plot"' in sec.charts[0].svg and "worse (5)" in sec.charts[0].svg
    assert sec.tables[0].rows[0][-1].text == "worse" and sec.tables[0].rows[0][-1].css == "v-regression"
    arms = dict(sec.cards[0].rows)
    assert arms["target"] == "A: /a | B: /b" and arms["read cap"] == "A: — | B: 0.5"
    assert ab_section([view_of(0, {"nodeid": "u"}, Path("."), None)]) is None
