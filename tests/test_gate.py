"""Unit tests of the verdict logic (pure: no pytest session)."""
from __future__ import annotations

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
