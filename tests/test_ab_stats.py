"""A/B arms as data (core/arms.py) and the sequential A/B decision (gate/ab.py), with its calibration.

The calibration tests simulate many interleaved sessions with a seeded RNG and count how often the
decision, looked at after every pair, says something false; they also show that the naive method
(a fixed-n t-interval looked at after every pair) fails the same check, so the check has teeth.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pytest_nvme_ai.core.arms import ArmError, ArmOverrides, parse_ab, parse_read_cap, series_key, split_ab_text
from pytest_nvme_ai.core.names import check_name
from pytest_nvme_ai.gate.ab import (
    AbRule,
    boundary,
    decide,
    decide_stats,
    log_ratios,
    pairs_needed,
    run_sequence,
)


# ---- arms -----------------------------------------------------------------------------------------
def test_no_values_means_no_ab_run():
    assert parse_ab([]) is None
    assert parse_ab(["", "  "]) is None


def test_same_is_an_a_a_run():
    arms = parse_ab(["same"])
    assert arms is not None and arms.same
    assert arms.key() == "same"
    assert arms.to_dict() == {"same": True, "target": None, "python": None, "fio": None, "aio": None, "env": {}}


def test_overrides_parse_into_fields_and_a_canonical_key():
    values = ["target=/mnt/golden", "env:OMP_NUM_THREADS=4", "python=/opt/ds0.16/bin/python",
              'aio={"queue_depth": 8, "block_size": 1048576}', "fio=/usr/local/bin/fio", "env:A_FLAG="]
    arms = parse_ab(values)
    assert arms is not None and not arms.same
    assert arms.target == "/mnt/golden" and arms.python == "/opt/ds0.16/bin/python" and arms.fio == "/usr/local/bin/fio"
    assert arms.aio == {"block_size": 1048576, "queue_depth": 8}
    assert arms.env_map == {"OMP_NUM_THREADS": "4", "A_FLAG": ""}   # an empty value is a value
    # The key (history series) does not depend on the order the values were given in.
    again = parse_ab(list(reversed(values)))
    assert again == arms and again is not None and again.key() == arms.key()
    assert "target=/mnt/golden" in arms.key() and "env:OMP_NUM_THREADS=4" in arms.key()
    d = arms.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert ArmOverrides.from_dict(d) == arms


def test_slug_is_a_plain_name_and_tells_arms_apart():
    a = parse_ab(["target=/mnt/golden drive/x"])
    b = parse_ab(["target=/mnt/golden-drive/x"])
    assert a is not None and b is not None
    assert check_name(a.slug()) == a.slug() and len(a.slug()) <= 128
    assert a.slug() != b.slug()                                  # same readable part, different key
    assert a.slug() == parse_ab(["target=/mnt/golden drive/x"]).slug()  # type: ignore[union-attr]
    long = parse_ab(["env:X=" + "v" * 500])
    assert long is not None and len(long.slug()) <= 128 and check_name(long.slug())
    up = parse_ab(["target=../golden/..", "python=./venv/bin/python"])
    assert up is not None and check_name(up.slug()) == up.slug()    # no '..' in a name


def test_series_key_includes_arm_b_read_cap():
    arms = parse_ab(["same"])
    assert arms is not None
    assert series_key(arms) == "A:same"
    assert series_key(arms, 0.7) == "A:same|B:read_cap=0.7"
    assert series_key(arms, 0.7) != series_key(arms, 0.5)


def test_split_ab_text_keeps_json_and_spaces_together():
    text = "target='/mnt/my drive' 'aio={\"block_size\": 1048576, \"queue_depth\": 8}' env:X=1"
    assert split_ab_text(text) == ["target=/mnt/my drive", 'aio={"block_size": 1048576, "queue_depth": 8}', "env:X=1"]
    with pytest.raises(ArmError, match="quote each value"):
        split_ab_text("target='/mnt/unclosed")


@pytest.mark.parametrize("values, message", [
    (["targte=/mnt/x"], r"unknown key 'targte' \(did you mean 'target'\?\).*same \| target=DIR"),
    (["speed=3"], r"unknown key 'speed'; use same"),
    (["same", "target=/mnt/x"], r"'same' .* cannot be combined with target=/mnt/x"),
    (["same", "same"], r"'same' given twice"),
    (["same=1"], r"'same' takes no value"),
    (["target="], r"target= is empty; give a value \(target=DIR\)"),
    (["python=  "], r"python= is empty"),
    (["target"], r"'target' needs a value: write target=DIR"),
    (["env"], r"write env:NAME=VALUE"),
    (["env=X=1"], r"write environment overrides as env:NAME=VALUE"),
    (["env:1X=2"], r"env name '1X' .* is not a variable name"),
    (["env:A-B=2"], r"env name 'A-B'"),
    (["env:X"], r"has no value; write env:NAME=VALUE"),
    (["env:X=1", "env:X=2"], r"env:X given twice"),
    (["target=/a", "target=/b"], r"target given twice"),
    (["aio=block_size=1M"], r"aio='block_size=1M' is not JSON"),
    (["aio=[1, 2]"], r"must be a non-empty JSON object"),
    (["aio={}"], r"must be a non-empty JSON object"),
    (['aio={"a": 1}', 'aio={"b": 2}'], r"aio given twice; merge"),
])
def test_bad_ab_values_say_what_to_do(values, message):
    with pytest.raises(ArmError, match=message):
        parse_ab(values)


def test_error_names_the_source():
    with pytest.raises(ArmError, match=r"^NVME_AI_AB: unknown key"):
        parse_ab(["bogus=1"], source="NVME_AI_AB")


def test_arm_overrides_built_in_code_follow_the_same_rules():
    with pytest.raises(ArmError, match="differs from arm B in nothing"):
        ArmOverrides()
    with pytest.raises(ArmError, match="cannot be combined"):
        ArmOverrides(same=True, fio="/usr/bin/fio")
    with pytest.raises(ArmError, match="'aio' must be a JSON object"):
        ArmOverrides.from_dict({"aio": "[1]", "target": "/x"})
    with pytest.raises(ArmError, match="env name '1X'"):
        ArmOverrides.from_dict({"env": {"1X": "a"}})
    with pytest.raises(ArmError, match="non-empty JSON object"):
        ArmOverrides(aio_json="[]")
    assert parse_ab(["target= /mnt/x "]) == ArmOverrides(target="/mnt/x")


@pytest.mark.parametrize("value, expected", [("0.7", 0.7), ("70%", 0.7), (1, 1.0), ("1", 1.0), (0.05, 0.05)])
def test_read_cap_accepts_fractions(value, expected):
    assert parse_read_cap(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["0", "-0.1", "1.5", "70", "nan", "inf", "fast", "", True])
def test_read_cap_refuses_what_is_not_a_fraction(value):
    with pytest.raises(ArmError, match=r"--nvme-ai-read-cap=.*(fraction|number)"):
        parse_read_cap(value)


# ---- the decision: single cases -------------------------------------------------------------------
def pairs(rng: np.random.Generator, change: float, noise: float, n: int) -> list[float]:
    """n pairs' log ratios log(B/A): B is `change` (a fraction, -0.3 = 30% lower) away, log-normal noise."""
    return list(rng.normal(math.log1p(change), noise, n))


def test_clear_worse_stops_at_the_minimum_pairs():
    rng = np.random.default_rng(1)
    d = run_sequence(pairs(rng, -0.30, 0.02, 40), AbRule("higher"))
    assert d.verdict == "worse" and d.pairs == 5
    assert d.ratio == pytest.approx(0.70, abs=0.03)
    lo, hi = d.interval
    assert lo < d.ratio < hi < 0.9                        # the whole interval is below the band
    assert "beyond ±10%" in d.stop_reason and d.pairs_needed is None


def test_clear_better():
    rng = np.random.default_rng(2)
    d = run_sequence(pairs(rng, +0.40, 0.03, 40), AbRule("higher"))
    assert d.verdict == "better" and d.interval[0] > 1.0


def test_lower_is_better_flips_the_direction():
    rng = np.random.default_rng(3)
    slower = pairs(rng, +0.40, 0.03, 40)                 # latency 40% higher in B
    faster = pairs(rng, -0.40, 0.03, 40)
    assert run_sequence(slower, AbRule("lower")).verdict == "worse"
    assert run_sequence(faster, AbRule("lower")).verdict == "better"
    assert run_sequence(slower, AbRule("higher")).verdict == "better"


def test_clear_same():
    rng = np.random.default_rng(4)
    d = run_sequence(pairs(rng, 0.0, 0.01, 40), AbRule("higher"))
    assert d.verdict == "same" and d.pairs == 5
    assert 0.9 < d.interval[0] <= d.ratio <= d.interval[1] < 1.1   # type: ignore[operator]


def test_identical_values_are_the_same():
    d = decide(log_ratios([5.0] * 6, [5.0] * 6), AbRule("lower"))
    assert d.verdict == "same" and d.ratio == 1.0 and d.interval == (1.0, 1.0) and d.noise_pct == 0.0


def test_noisy_pairs_end_unknown_with_an_estimate_of_the_pairs_needed():
    rng = np.random.default_rng(5)
    rule = AbRule("higher", max_pairs=8)
    d = run_sequence(pairs(rng, -0.05, 0.40, 40), rule)
    assert d.verdict == "unknown" and d.pairs == 8
    lo, hi = d.interval
    assert math.isfinite(hi) and lo < 0.9 and hi > 1.0    # reached, but neither inside the band nor clear of 1
    assert d.pairs_needed is not None and d.pairs_needed > 8
    assert "budget spent after 8 pairs" in d.stop_reason and f"about {d.pairs_needed} pairs" in d.stop_reason
    assert d.noise_pct is not None and 20 < d.noise_pct < 70


def test_pairs_needed_is_where_the_same_estimate_would_decide():
    rule = AbRule("higher")
    mean, sd = math.log(0.97), 0.12                       # inside the band: `same` needs the nearer edge
    need = pairs_needed(8, mean, sd, rule)
    assert need is not None and need > 8
    assert decide_stats(need, mean, sd, rule).verdict == "same"
    assert decide_stats(need - 1, mean, sd, rule).verdict == "continue"
    mean = math.log(0.8)                                  # beyond the band: worse needs to clear no change
    need = pairs_needed(5, mean, 0.5, rule)
    assert need is not None
    assert decide_stats(need, mean, 0.5, rule).verdict == "worse"
    assert decide_stats(need - 1, mean, 0.5, rule).verdict == "continue"
    assert pairs_needed(5, math.log(0.9), 0.1, rule) is None   # on the edge: no count would probably decide
    assert pairs_needed(1, 0.0, math.nan, rule) is None


def test_estimate_rule_needs_only_the_estimate_beyond_the_band():
    mean, sd, n = math.log(0.87), 0.10, 10                # interval ~[0.77, 0.98]: clear of 1, not of 0.9
    strict = decide_stats(n, mean, sd, AbRule("higher"))
    asv = decide_stats(n, mean, sd, AbRule("higher", beyond="estimate"))
    assert strict.verdict == "continue" and strict.interval[1] > 0.9
    assert asv.verdict == "worse" and asv.interval[1] < 1.0 and "excludes no change" in asv.stop_reason


def test_min_pairs_is_respected():
    rule = AbRule("higher", min_pairs=7)
    x = [math.log(0.5)] * 3 + [math.log(0.51)] * 10       # hopelessly clear from the start
    for n in range(1, 7):
        d = decide(x[:n], rule)
        assert d.verdict == "continue" and "of at least 7 pairs" in d.stop_reason
    assert decide(x[:7], rule).verdict == "worse"
    assert run_sequence(x, rule).pairs == 7


def test_budget_spent_before_the_minimum_is_unknown():
    d = decide([0.01, -0.02], AbRule("higher"), out_of_budget=True)
    assert d.verdict == "unknown" and "before the minimum of 5" in d.stop_reason
    d0 = decide([], AbRule("higher"), out_of_budget=True)
    assert d0.verdict == "unknown" and d0.ratio is None and d0.interval == (0.0, math.inf)


def test_to_dict_is_strict_json():
    d = decide([0.1, 0.3, -0.2], AbRule("higher"))        # 3 pairs: the interval is still unbounded
    out = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert out["interval"] == [0.0, None] and out["verdict"] == "continue" and out["pairs"] == 3


def test_log_ratios_refuse_what_has_no_ratio():
    assert log_ratios([2.0], [1.0]) == [pytest.approx(math.log(0.5))]
    with pytest.raises(ValueError, match="3 values of arm A but 2 of arm B"):
        log_ratios([1.0, 1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="pair 2: .*two positive finite values"):
        log_ratios([1.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="not finite"):
        decide([0.1, math.nan], AbRule("higher"))
    with pytest.raises(ValueError, match="log ratio 2 is inf"):
        run_sequence([0.1, math.inf], AbRule("higher"))


@pytest.mark.parametrize("kwargs, message", [
    ({"better": "up"}, "better must be"), ({"tolerance": 100.0}, "tolerance"), ({"tolerance": -1.0}, "tolerance"),
    ({"alpha": 0.0}, "alpha"), ({"min_pairs": 1}, "at least 2"), ({"min_pairs": 5, "max_pairs": 4}, "below min_pairs"),
    ({"beyond": "mean"}, "beyond must be"),
])
def test_rule_refuses_bad_settings(kwargs, message):
    args = {"better": "higher", **kwargs}
    with pytest.raises(ValueError, match=message):
        AbRule(**args)


def test_boundary_is_where_the_bayes_factor_reaches_one_over_alpha():
    g, alpha = 2.0, 0.05
    assert math.isinf(boundary(3, alpha, g)) and math.isfinite(boundary(4, alpha, g))
    for n in (4, 5, 10, 30, 200):
        c = boundary(n, alpha, g)
        nu, r = n - 1, 1 + n * g
        bf = r ** -0.5 * ((1 + c * c / nu) / (1 + c * c / (nu * r))) ** (n / 2)   # Gonen et al. 2005
        assert bf == pytest.approx(1 / alpha, rel=1e-9)
    assert boundary(5) > boundary(10) > boundary(30)


# ---- calibration: many simulated sessions ---------------------------------------------------------
def _sequences(seed: int, change: float, noise: float, count: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(math.log1p(change), noise, (count, n))


def test_false_alarms_over_all_looks_stay_under_alpha():
    # Tolerance 0 is the hardest case: any interval that excludes no change says worse/better.
    rule = AbRule("higher", tolerance=0.0, max_pairs=30)
    xs = _sequences(10, 0.0, 0.2, 1500, 30)
    false = sum(run_sequence(x, rule).verdict in ("worse", "better") for x in xs) / len(xs)
    assert false <= rule.alpha + 0.01                    # Monte Carlo SE at 5% and 1500 runs is 0.6%

    # The same check catches the naive method: a 95% t-interval looked at after each pair from the 5th.
    from scipy.special import stdtrit   # the t quantile, without scipy.stats' seconds of import
    n = np.arange(1, 31)
    mean = np.cumsum(xs, axis=1) / n
    sd = np.sqrt(np.maximum(np.cumsum(xs ** 2, axis=1) - n * mean ** 2, 0) / np.maximum(n - 1, 1))
    t = stdtrit(np.maximum(n - 1, 1), 0.975)
    naive = (np.abs(mean) > t * sd / np.sqrt(n))[:, 4:].any(axis=1).mean()
    assert naive > 2 * rule.alpha


def test_a_change_at_the_tolerance_edge_is_rarely_called_same_or_worse():
    rule = AbRule("higher", tolerance=10.0, max_pairs=40)
    xs = _sequences(11, -0.10, 0.05, 800, 40)             # exactly 10% lower: not the same
    verdicts = [run_sequence(x, rule).verdict for x in xs]
    assert verdicts.count("same") / len(xs) <= rule.alpha / 2 + 0.015
    assert verdicts.count("worse") / len(xs) <= rule.alpha / 2 + 0.015   # not *more* than the tolerance either


def test_a_change_inside_the_tolerance_is_not_called_worse():
    # -7% with a 10% tolerance, 15% pair noise, 40 looks: the early estimates swing past -10% often.
    xs = _sequences(13, -0.07, 0.15, 800, 40)
    rule = AbRule("higher", tolerance=10.0, max_pairs=40)
    worse = sum(run_sequence(x, rule).verdict == "worse" for x in xs) / len(xs)
    assert worse <= rule.alpha / 2 + 0.015
    # asv's rule (estimate beyond the band, interval clear of no change) has no such guarantee here.
    loose = AbRule("higher", tolerance=10.0, max_pairs=40, beyond="estimate")
    assert sum(run_sequence(x, loose).verdict == "worse" for x in xs) / len(xs) > 0.1


def test_a_30pct_slowdown_at_10pct_noise_is_caught():
    rule = AbRule("higher", tolerance=10.0, max_pairs=20)
    xs = _sequences(12, -0.30, 0.10, 500, 20)
    results = [run_sequence(x, rule) for x in xs]
    caught = sum(r.verdict == "worse" for r in results) / len(results)
    assert caught >= 0.99
    assert float(np.median([r.pairs for r in results])) <= 6
