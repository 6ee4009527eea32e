"""Steady state of a fio point: fio's own `ss=` detector, judged by SNIA PTS's two criteria.

Why fio's `ss=` and not SNIA rounds: SNIA's PTS judges 5 whole rounds, so a point costs at least
5 round lengths even on a drive that settles in seconds, and each round is a separate fio process
(ramp, file open, queue fill again). fio's detector samples bandwidth every second inside one run
and stops the job as soon as a rolling window is steady, so the budget is an upper bound, not the
cost. The window is judged by SNIA's criteria, in SNIA's terms:

* range: max - min of the window's samples at most 20% of their mean. fio stops on `bw:10%`:
  every sample within 10% of the window's mean, which bounds max - min to 20% of it.
* slope: the least-squares line over the window may move at most 10% of the window's mean from
  start to end. fio can stop on one criterion only, so this one is checked here, on the
  per-second samples fio reports with the result.

Why fio stops on the range and not on the slope (`bw_slope:X%` with X = 10% / window would
express SNIA's slope exactly): measured on the build VM (standard profile, 10 s window), fio's
slope criterion was met after 19-26 s on windows whose range was 21-31% of the mean, so fio
stopped early on a window SNIA would reject, with most of the budget unused. A window within
±10% rarely has a steep fitted line, and a noisy drive keeps being measured until it settles or
the budget ends.

A point is steady when fio attained its criterion within the budget *and* both SNIA criteria
pass on the window. `after_s` is how long the job ran until then (ss_ramp included).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

SNIA_SLOPE_EXCURSION_PCT = 10.0
SNIA_RANGE_PCT = 20.0


@dataclass(frozen=True)
class SteadyPolicy:
    """How a point seeks steady state: run at most `budget_s`, judge the last `window_s` seconds."""

    budget_s: float
    window_s: float
    ramp_s: float

    def __post_init__(self) -> None:
        if self.window_s < 2:
            raise ValueError(f"steady-state window {self.window_s:g} s is too short: a slope needs at least 2 samples")
        if self.budget_s < self.ramp_s + self.window_s:
            raise ValueError(f"steady-state budget {self.budget_s:g} s is shorter than ss_ramp {self.ramp_s:g} s + "
                             f"window {self.window_s:g} s: raise --nvme-ai-ss-budget")

    @property
    def fio_ss(self) -> str:
        """fio's max-deviation criterion that bounds the window's range to SNIA's 20% of the mean."""
        return f"bw:{SNIA_RANGE_PCT / 2:g}%"

    def criterion(self) -> str:
        return (f"fio ss={self.fio_ss} over a {self.window_s:g} s window (SNIA range <= {SNIA_RANGE_PCT:g}% of "
                f"the mean), then SNIA slope excursion <= {SNIA_SLOPE_EXCURSION_PCT:g}% on the window, "
                f"budget {self.budget_s:g} s")


@dataclass(frozen=True)
class SteadyVerdict:
    reached: bool
    after_s: float | None        # job runtime when fio stopped on the criterion; None if not reached
    ran_s: float                 # how long the job ran in all
    budget_s: float
    criterion: str
    fio_attained: bool
    slope_excursion_pct: float | None   # fitted-line change over the window, % of its mean
    range_pct: float | None             # (max - min) / mean of the window, %
    window_bw: tuple[float, ...]        # fio's per-second bandwidth samples of the last window, B/s
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"reached": self.reached, "after_s": self.after_s, "ran_s": self.ran_s, "budget_s": self.budget_s,
                "criterion": self.criterion, "fio_attained": self.fio_attained,
                "slope_excursion_pct": self.slope_excursion_pct, "range_pct": self.range_pct,
                "window_bw": list(self.window_bw), "reason": self.reason}


def _finite(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def fitted_excursion_pct(samples: Sequence[float]) -> float | None:
    """How far the least-squares line moves from the window's first sample to its last (|slope| x (n - 1)),
    as % of the mean: SNIA's slope excursion."""
    n = len(samples)
    mean = sum(samples) / n if n else 0.0
    if n < 2 or mean <= 0:
        return None
    xm = (n - 1) / 2
    sxx = sum((i - xm) ** 2 for i in range(n))
    slope = sum((i - xm) * (y - mean) for i, y in enumerate(samples)) / sxx
    return abs(slope) * (n - 1) / mean * 100.0


def range_pct(samples: Sequence[float]) -> float | None:
    mean = sum(samples) / len(samples) if samples else 0.0
    if len(samples) < 2 or mean <= 0:
        return None
    return (max(samples) - min(samples)) / mean * 100.0


def judge(steadystate: Mapping[str, Any] | None, policy: SteadyPolicy, runtime_ms: float) -> SteadyVerdict:
    """Verdict from fio's `jobs[].steadystate` block (with its `data`) and the job's runtime."""
    ran = runtime_ms / 1000.0
    crit = policy.criterion()
    if not steadystate:
        return SteadyVerdict(False, None, ran, policy.budget_s, crit, False, None, None, (),
                             "fio reported no steady-state block (was ss= passed?)")
    data = steadystate.get("data") or {}
    window = tuple(f for f in (_finite(x) for x in (data.get("bw") or ())) if f is not None)
    attained = bool(steadystate.get("attained"))
    slope = fitted_excursion_pct(window)
    rng = range_pct(window)
    if not attained:
        reason = (f"not steady within the {policy.budget_s:g} s budget: the last {policy.window_s:g} s had range "
                  f"{_pct(rng)} (limit {SNIA_RANGE_PCT:g}%), slope excursion {_pct(slope)} "
                  f"(limit {SNIA_SLOPE_EXCURSION_PCT:g}%)")
        return SteadyVerdict(False, None, ran, policy.budget_s, crit, False, slope, rng, window, reason)
    for value, limit, what in ((rng, SNIA_RANGE_PCT, "range"), (slope, SNIA_SLOPE_EXCURSION_PCT, "slope excursion")):
        if value is not None and value > limit:
            reason = (f"fio's criterion was met after {ran:.0f} s, but the window's {what} is {value:.1f}% of its "
                      f"mean (SNIA limit {limit:g}%)")
            return SteadyVerdict(False, None, ran, policy.budget_s, crit, True, slope, rng, window, reason)
    reason = f"steady after {ran:.1f} s (slope excursion {_pct(slope)}, range {_pct(rng)})"
    return SteadyVerdict(True, ran, ran, policy.budget_s, crit, True, slope, rng, window, reason)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}%"


def combine(verdicts: Sequence[SteadyVerdict]) -> dict[str, Any]:
    """One point, several repetitions: steady only if every repetition was (the gate compares all of them)."""
    reached = bool(verdicts) and all(v.reached for v in verdicts)
    afters = [v.after_s for v in verdicts if v.after_s is not None]
    first_bad = next((v for v in verdicts if not v.reached), None)
    return {
        "reached": reached,
        "after_s": max(afters) if reached and afters else None,
        "criterion": verdicts[0].criterion if verdicts else None,
        "budget_s": verdicts[0].budget_s if verdicts else None,
        "repetitions": [v.to_dict() for v in verdicts],
        "reason": (f"{sum(v.reached for v in verdicts)} of {len(verdicts)} repetitions steady; first not steady: "
                   f"{first_bad.reason}") if first_bad else (verdicts[0].reason if len(verdicts) == 1 else
                                                              f"all {len(verdicts)} repetitions steady, the slowest "
                                                              f"after {max(afters):.1f} s"),
    }
