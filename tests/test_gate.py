"""Unit tests of the verdict logic (pure: no pytest session)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.gate.verdict import compare, describe_fingerprint_change, overall
from pytest_nvme_ai.core.metrics import Metric


def bw(*s: float) -> Metric:
    return Metric.of("bw", s)


def lat(*s: float) -> Metric:
    return Metric.of("total_latency", s)


def test_no_baseline_is_new() -> None:
    c = compare(bw(1, 2, 3), None, tolerance_pct=10)
    assert c.verdict == "new" and c.baseline is None and "--nvme-ai-save-baseline" in c.message


def test_unchanged_passes() -> None:
    assert compare(bw(100, 101, 99), bw(100, 101, 99), tolerance_pct=10).verdict == "pass"


def test_bandwidth_drop_beyond_tolerance_and_significant_is_regression() -> None:
    c = compare(bw(50, 51, 49), bw(100, 101, 99), tolerance_pct=10)
    assert c.verdict == "regression"
    assert c.method == "mann-whitney-u" and c.p_value == pytest.approx(0.05)
    assert c.delta == pytest.approx(-0.5)
    for part in ("bw", "baseline 100 B/s", "now 50 B/s", "-50.0%", "±10%", "p=0.05"):
        assert part in c.message


def test_direction_lower_is_better() -> None:
    assert compare(lat(2, 2.1, 1.9), lat(1, 1.05, 0.95), tolerance_pct=10).verdict == "regression"
    assert compare(lat(0.5, 0.52, 0.48), lat(1, 1.05, 0.95), tolerance_pct=10).verdict == "improvement"


def test_beyond_tolerance_but_overlapping_samples_is_not_significant() -> None:
    # median drops 20% but one current run beats a baseline run: U test cannot call it
    c = compare(bw(80, 79, 101), bw(100, 99, 100.5), tolerance_pct=10)
    assert c.verdict == "pass" and "not significant" in c.message and c.p_value > 0.05


def test_within_tolerance_passes_even_if_significant() -> None:
    assert compare(bw(95, 95.5, 94.5), bw(100, 100.5, 99.5), tolerance_pct=10).verdict == "pass"


def test_single_sample_uses_tolerance_only_and_says_so() -> None:
    c = compare(bw(80), bw(100), tolerance_pct=10)
    assert c.verdict == "regression" and c.method == "tolerance-only" and c.p_value is None
    assert "tolerance alone decides" in c.message


def test_incomparable_and_unit_change() -> None:
    assert compare(bw(1), bw(1), tolerance_pct=10, incomparable="other drive").verdict == "incomparable"
    other_unit = Metric.of("bw", [1.0], unit="KiB/s", better="higher")
    assert compare(bw(1), other_unit, tolerance_pct=10).verdict == "incomparable"


def test_overall_prefers_regression_and_ignores_ungated() -> None:
    reg = compare(bw(50, 50, 50), bw(100, 100, 100), tolerance_pct=10)
    ungated_reg = compare(Metric.of("clat_p99", [200.0, 200, 200]), Metric.of("clat_p99", [100.0, 100, 100]),
                          tolerance_pct=10, gated=False)
    ok = compare(bw(100, 100, 100), bw(100, 100, 100), tolerance_pct=10)
    assert overall([ok, reg]) == "regression"
    assert overall([ok, ungated_reg]) == "pass"
    assert overall([compare(bw(1), None, tolerance_pct=10)]) == "new"
    assert overall([]) is None


def test_fingerprint_change_is_described() -> None:
    msg = describe_fingerprint_change({"model": "A", "firmware": "1"}, {"model": "A", "firmware": "2"})
    assert "firmware '1' -> '2'" in msg and "--nvme-ai-strict" in msg


def test_metric_refuses_unmeasured_values() -> None:
    with pytest.raises(ValueError, match="no samples"):
        Metric.of("bw", [])
    with pytest.raises(ValueError, match="non-finite"):
        Metric.of("bw", [float("nan")])
    with pytest.raises(ValueError, match="not in the catalog"):
        Metric.of("mystery", [1.0])


def test_two_vs_two_cannot_be_significant_so_tolerance_decides() -> None:
    # exact one-sided U with 2 vs 2 has min p = 1/6 > 0.05: a 50% drop must still be caught
    c = compare(bw(50, 51), bw(100, 101), tolerance_pct=10)
    assert c.verdict == "regression" and c.method == "tolerance-only"
    assert "too few samples for significance" in c.message


def test_test_without_gated_metrics_never_regresses() -> None:
    ungated = compare(Metric.of("clat_p99", [200.0, 200, 200]), Metric.of("clat_p99", [100.0, 100, 100]),
                      tolerance_pct=10, gated=False)
    assert ungated.verdict == "regression"
    assert overall([ungated]) == "pass"


def _verdict(*comps: Any) -> Any:
    from pytest_nvme_ai.gate.policy import GateVerdict

    return GateVerdict(tuple(comps), overall(list(comps)), "b.json")


def test_enforce_fails_a_regression_warns_an_improvement_and_strict_fails_incomparable() -> None:
    """What a verdict does to a test whose body passed (plugin.py only acts on it)."""
    worse = compare(bw(50, 51, 49), bw(100, 101, 99), tolerance_pct=10)
    better = compare(bw(200, 201, 199), bw(100, 101, 99), tolerance_pct=10)
    other = compare(bw(100, 101, 99), bw(100, 101, 99), tolerance_pct=10, incomparable="another drive")
    act = _verdict(worse, better).enforce(strict=False)
    assert act.failure is not None and "REGRESSION" in act.failure and "baseline file: b.json" in act.failure
    assert act.warnings == ()     # a failing test does not also warn about its improvements
    act = _verdict(better).enforce(strict=True)
    assert act.failure is None and len(act.warnings) == 1 and act.warnings[0].endswith("--nvme-ai-save-baseline")
    assert _verdict(other).enforce(strict=False).failure is None
    strict = _verdict(other, better).enforce(strict=True)
    assert strict.failure == other.message + " (--nvme-ai-strict)" and len(strict.warnings) == 1
    props = dict(_verdict(worse).properties())
    assert props["nvme_ai.bw.verdict"] == "regression" and props["nvme_ai.verdict"] == "regression"


def test_final_verdict_is_error_for_a_test_that_failed_without_a_regression() -> None:
    from pytest_nvme_ai.gate.policy import final_verdict

    assert final_verdict("skipped", "pass") is None
    assert final_verdict("failed", "pass") == "error" and final_verdict("error", None) == "error"
    assert final_verdict("failed", "regression") == "regression"
    assert final_verdict("passed", "improvement") == "improvement"


def test_choose_baseline_takes_a_sibling_only_without_an_own_file_or_a_name(tmp_path: Path) -> None:
    from pytest_nvme_ai.gate import baseline
    from pytest_nvme_ai.gate.policy import choose_baseline

    fp_old = {"kind": "nvme", "model": "X1", "fs_type": "ext4", "firmware": "1.0"}
    fp_new = {**fp_old, "firmware": "2.0"}
    old = tmp_path / "x1-fw1.json"
    baseline.save_sessions(old, name="x1-fw1", fingerprint=fp_old, run={"id": "r1"},
                           sessions=[baseline.NewSession("k", "t::k", {}, {"bw": bw(1, 2, 3)})])
    mine = tmp_path / "x1-fw2.json"
    chosen = choose_baseline(mine, tmp_path, fp_new, named=False)
    assert chosen.sibling == str(old) and chosen.file is not None and chosen.own is None
    assert choose_baseline(mine, tmp_path, fp_new, named=True).file is None   # a name means that file only
    own = choose_baseline(old, tmp_path, fp_old, named=False)
    assert own.sibling is None and own.own is not None
