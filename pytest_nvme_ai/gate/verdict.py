"""Verdicts: is a metric's change against its baseline a regression, an improvement, or noise?

Rule (asv's, adapted): a change counts only when it is larger than the
tolerance *and*, where both sides have at least two samples, statistically
significant by a one-sided Mann-Whitney U test (scipy) at ALPHA. Mann-Whitney
makes no normality assumption (bandwidth on a drive with burst credits is not
normal) and compares whole sample sets, so one outlier run cannot fail a gate.

With the profiles' default 3 repetitions, the exact one-sided U test's smallest
possible p is 1/C(6,3) = 0.05, so "significant" means *every* run now is worse
than *every* baseline run. Where the sample sizes cannot reach ALPHA at all (one
sample on a side, or 2 vs 2 whose smallest p is 1/6), the test has no power and
tolerance alone decides; the comparison says so (method "tolerance-only").
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from math import comb
from typing import Any, Iterable, Mapping

from pytest_nvme_ai.core.metrics import Metric, format_value

ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    metric: str
    unit: str
    better: str
    baseline: float | None
    now: float
    delta: float | None        # relative change (now - baseline) / baseline
    tolerance: float           # fraction, e.g. 0.10
    verdict: str
    p_value: float | None
    method: str                # mann-whitney-u | tolerance-only | none
    gated: bool
    message: str
    n_baseline: int
    n_now: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_worse(delta: float, better: str) -> bool:
    return delta < 0 if better == "higher" else delta > 0


def significance(now: Iterable[float], base: Iterable[float], better: str, worse: bool) -> float:
    """One-sided Mann-Whitney U p-value that `now` moved in the observed direction."""
    from scipy.stats import mannwhitneyu

    now_l, base_l = list(now), list(base)
    lower_now = (better == "higher") == worse   # worse for higher-is-better means now is lower
    alternative = "less" if lower_now else "greater"
    method = "exact" if len(now_l) + len(base_l) <= 16 else "auto"
    return float(mannwhitneyu(now_l, base_l, alternative=alternative, method=method).pvalue)


def min_p_value(n_now: int, n_base: int) -> float:
    """Smallest p the exact one-sided Mann-Whitney U test can give for these sample sizes."""
    return 1.0 / comb(n_now + n_base, n_now)


def compare(now: Metric, base: Metric | None, *, tolerance_pct: float, gated: bool = True,
            incomparable: str | None = None, alpha: float = ALPHA) -> Comparison:
    tol = tolerance_pct / 100.0

    def mk(verdict: str, message: str, *, baseline: float | None = None, delta: float | None = None,
           p: float | None = None, method: str = "none", n_base: int = 0) -> Comparison:
        return Comparison(now.name, now.unit, now.better, baseline, now.value, delta, tol, verdict, p, method,
                          gated, message, n_base, now.n)

    if base is None:
        return mk("new", f"{now.name}: no baseline yet (now {format_value(now.value, now.unit)}); "
                         "record one with --nvme-ai-save-baseline")
    if incomparable:
        return mk("incomparable", f"{now.name}: not compared: {incomparable}", baseline=base.value, n_base=base.n)
    if base.unit != now.unit or base.better != now.better:
        return mk("incomparable", f"{now.name}: baseline is in {base.unit} ({base.better} is better) but this run "
                                  f"measured {now.unit} ({now.better} is better); re-save the baseline",
                  baseline=base.value, n_base=base.n)
    if base.value == 0:
        verdict = "pass" if now.value == 0 else "incomparable"
        return mk(verdict, f"{now.name}: baseline is 0, relative change undefined", baseline=0.0, n_base=base.n)

    delta = now.value / base.value - 1.0
    worse = _is_worse(delta, now.better)
    beyond = abs(delta) > tol
    if now.n >= 2 and base.n >= 2 and min_p_value(now.n, base.n) <= alpha:
        method = "mann-whitney-u"
        p_now = significance(now.samples, base.samples, now.better, worse)
        p: float | None = p_now
        significant = p_now <= alpha
        evidence = f"Mann-Whitney U one-sided p={p:.3g} (alpha {alpha:g}, n={now.n} now vs {base.n} baseline)"
    else:
        method, p, significant = "tolerance-only", None, True
        why = "single sample" if min(now.n, base.n) < 2 else f"too few samples for significance at alpha {alpha:g}"
        evidence = (f"{why} (n={now.n} now vs {base.n} baseline): tolerance alone decides, no significance test; "
                    f"use --nvme-ai-repeat 3 or more for a statistical gate")

    if beyond and significant:
        verdict = "regression" if worse else "improvement"
    else:
        verdict = "pass"
    direction = "worse" if worse else "better"
    head = {"regression": "REGRESSION", "improvement": "improvement", "pass": "within noise"}[verdict]
    if verdict == "pass" and beyond:
        head = "beyond tolerance but not significant"
    message = (
        f"{now.name} {head}: baseline {format_value(base.value, base.unit)}, now {format_value(now.value, now.unit)}, "
        f"delta {delta * 100:+.1f}% ({direction}; {now.better} is better), tolerance ±{tol * 100:g}%; {evidence}"
    )
    return mk(verdict, message, baseline=base.value, delta=delta, p=p, method=method, n_base=base.n)


def overall(comparisons: list[Comparison]) -> str | None:
    """One verdict per test from its gated metrics. A test with no gated metric cannot regress:
    it is 'new', 'incomparable' or 'pass' from what its report-only metrics show."""
    if not comparisons:
        return None
    gated = [c for c in comparisons if c.gated]
    if not gated:
        kinds = {c.verdict for c in comparisons}
        return "new" if kinds == {"new"} else "incomparable" if kinds == {"incomparable"} else "pass"
    verdicts = {c.verdict for c in gated}
    for v in ("regression", "improvement"):
        if v in verdicts:
            return v
    if verdicts == {"new"}:
        return "new"
    if "incomparable" in verdicts and not verdicts & {"pass"}:
        return "incomparable"
    return "pass"


def describe_fingerprint_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    diffs = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ("the baseline was recorded on a different device (" + "; ".join(diffs) +
            "): save a baseline for this device, or pass --nvme-ai-strict to make this an error")
