"""Verdicts: is a metric's change against its baseline a regression, an improvement, or noise?

Two rules. When the entry's window holds at least window.MIN_SESSIONS sessions, the session-window
rule decides (see gate/window.py for the method and why): this run's median against the spread of
the window's session medians. With fewer sessions, the within-session rule below decides, and the
message says the window is too short to know the drift between sessions.

Within-session rule (asv's, adapted): a change counts only when it is larger than the
tolerance *and*, where both sides have at least two samples, statistically
significant by a one-sided Mann-Whitney U test (scipy) at ALPHA. Mann-Whitney
makes no normality assumption (bandwidth on a drive with burst credits is not
normal) and compares whole sample sets, so one outlier run cannot fail a gate.

With the profiles' default 3 repetitions, the exact one-sided U test's smallest
possible p is 1/C(6,3) = 0.05, so "significant" means *every* run now is worse
than *every* baseline run. Where the sample sizes cannot reach ALPHA at all (one
sample on a side, or 2 vs 2 whose smallest p is 1/6), the test has no power and
tolerance alone decides; the comparison says so (method "tolerance-only").

`unknown` (issue 23): a check that cannot see a change of the tolerance's size says so instead of
`pass`. Session-window rule: the check is blind (its prediction limit exceeds the tolerance, so the
drift alone hides such a change; `WindowStats.blind_to`) and found no regression or improvement.
Within-session rule on a window too short to know the drift (fewer than window.MIN_SESSIONS sessions):
the MDC is unknown, so every check that is not a change beyond window.SHORT_LIMIT_LOG (the limit under
an assumed drift) reads unknown; an unchanged runner building its window stays green-or-yellow, and a
50% drop still fails. Direct callers that pass no window (`sessions=None`) keep the plain rule.
Why the limit and not the MDC itself: the MDC is max(limit, tolerance) plus a power margin, so it
exceeds the tolerance for every window with any spread; comparing it with the tolerance would make
`pass` unreachable. The limit is what decides whether a change of the tolerance's size can be flagged.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
import math
from math import comb
from typing import Any, Callable, Iterable, Mapping, Sequence

from pytest_nvme_ai.core.metrics import Metric, format_value
from pytest_nvme_ai.core.results import Verdict
from pytest_nvme_ai.gate import window
from pytest_nvme_ai.gate.window import SessionPoint

ALPHA = 0.05                  # the within-session (Mann-Whitney) rule
WINDOW_ALPHA = window.ALPHA   # the session-window rule


@dataclass(frozen=True)
class Comparison:
    metric: str
    unit: str
    better: str
    baseline: float | None     # what "now" is compared with: the window's centre, or the latest session's median
    now: float
    delta: float | None        # relative change (now - baseline) / baseline, a fraction
    tolerance: float           # percent, e.g. 10.0 for ±10% (the unit of --nvme-ai-tolerance)
    verdict: Verdict
    p_value: float | None
    method: str                # session-window | mann-whitney-u | tolerance-only | none
    gated: bool
    message: str
    n_baseline: int
    n_now: int
    window_sessions: int = 0                   # sessions of the entry's window that measured this metric
    window_first: str | None = None
    window_last: str | None = None
    drift_pct: float | None = None             # SD of the session medians (percent): drift between sessions
    limit_pct: float | None = None             # how far a session may move and stay inside the window
    min_detectable_change: float | None = None # percent; None while the window is too short to know the drift
    blind: bool = False                        # the drift hides a change of tolerance size (limit > tolerance)

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


def _day(ts: str | None) -> str:
    return (ts or "?")[:16].replace("T", " ")


def _head(verdict: Verdict, beyond: bool) -> str:
    if verdict == "pass" and beyond:
        return "beyond tolerance but not significant"
    if verdict == "unknown":
        return "UNKNOWN (the gate cannot see a change of the tolerance's size here)"
    return {"regression": "REGRESSION", "improvement": "improvement", "pass": "within noise"}[verdict]


def compare(now: Metric, base: Metric | None, *, tolerance_pct: float, gated: bool = True,
            incomparable: str | None = None, alpha: float = ALPHA,
            sessions: Sequence[SessionPoint] | None = None) -> Comparison:
    """Verdict for one metric. `sessions` is the entry's window for this metric (oldest first); with at
    least window.MIN_SESSIONS of them the session-window rule decides, else the within-session rule
    against `base` (the latest session), and the message says the drift is unknown."""
    tol = float(tolerance_pct)
    pts = list(sessions or [])
    k = None if sessions is None else len(pts)

    def mk(verdict: Verdict, message: str, *, baseline: float | None = None, delta: float | None = None,
           p: float | None = None, method: str = "none", n_base: int = 0, **extra: Any) -> Comparison:
        return Comparison(now.name, now.unit, now.better, baseline, now.value, delta, tol, verdict, p, method,
                          gated, message, n_base, now.n, window_sessions=len(pts), **extra)

    if base is None:
        return mk("new", f"{now.name}: no baseline yet (now {format_value(now.value, now.unit)}); "
                         "record one with --nvme-ai-save-baseline")
    if incomparable:
        return mk("incomparable", f"{now.name}: not compared: {incomparable}", baseline=base.value, n_base=base.n)
    if base.unit != now.unit or base.better != now.better:
        return mk("incomparable", f"{now.name}: baseline is in {base.unit} ({base.better} is better) but this run "
                                  f"measured {now.unit} ({now.better} is better); re-save the baseline",
                  baseline=base.value, n_base=base.n)
    w = window.stats(pts, now.n, alpha=WINDOW_ALPHA) if now.value > 0 else None
    if w is not None:
        return _window_verdict(now, w, tol, mk)
    if base.value == 0:
        verdict: Verdict = "pass" if now.value == 0 else "incomparable"
        return mk(verdict, f"{now.name}: baseline is 0, relative change undefined", baseline=0.0, n_base=base.n)
    return _within_session_verdict(now, base, tol, alpha, k, mk)


def _within_session_verdict(now: Metric, base: Metric, tol: float, alpha: float, k: int | None,
                            mk: Callable[..., Comparison]) -> Comparison:
    delta = now.value / base.value - 1.0
    worse = _is_worse(delta, now.better)
    beyond = abs(delta) * 100.0 > tol
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
    verdict: Verdict = ("regression" if worse else "improvement") if beyond and significant else "pass"
    if k is None:
        short = ""
    elif k >= window.MIN_SESSIONS:
        short = ("; the session-window rule needs positive values (a zero or negative sample): compared with the "
                 "latest session's samples only")
    else:
        limit = window.short_limit_pct(now.better) if worse else window.short_limit_pct(
            "lower" if now.better == "higher" else "higher")
        clear = delta > -1.0 and abs(math.log1p(delta)) > window.SHORT_LIMIT_LOG
        if not (verdict != "pass" and clear):
            verdict = "unknown"
        short = (f"; window too short to know the drift between sessions ({k} of {window.MIN_SESSIONS} sessions): "
                 f"compared with the latest session's samples only, and only a change beyond {limit:.0f}% (the "
                 f"limit under an assumed drift of ±{window.ASSUMED_DRIFT * 100:.0f}% between sessions) counts; "
                 f"save more sessions with --nvme-ai-save-baseline")
    message = (
        f"{now.name} {_head(verdict, beyond)}: baseline {format_value(base.value, base.unit)}, "
        f"now {format_value(now.value, now.unit)}, delta {delta * 100:+.1f}% ({'worse' if worse else 'better'}; "
        f"{now.better} is better), tolerance ±{tol:g}%; {evidence}{short}"
    )
    return mk(verdict, message, baseline=base.value, delta=delta, p=p, method=method, n_base=base.n)


def _window_verdict(now: Metric, w: window.WindowStats, tol: float, mk: Callable[..., Comparison]) -> Comparison:
    delta = now.value / w.centre - 1.0
    worse = _is_worse(delta, now.better)
    beyond = abs(delta) * 100.0 > tol
    distance = window.outside(now.value, w)
    significant = abs(distance) > 1.0
    verdict: Verdict = ("regression" if worse else "improvement") if beyond and significant else "pass"
    limit = w.limit_pct(now.better)
    mdc = w.mdc_pct(now.better, tol)
    if verdict == "pass" and w.blind_to(now.better, tol):
        verdict = "unknown"   # the drift alone hides a change of the tolerance's size: no claim of "within"
    evidence = (f"session-window rule: {'outside' if significant else 'inside'} the window's one-sided "
                f"{(1 - WINDOW_ALPHA) * 100:g}% prediction limit of {limit:.1f}% "
                f"(t={w.t_quantile:.2f}, df {w.k - 1}; now at {distance:+.2f} limits); "
                f"minimum detectable change {mdc:.1f}%")
    message = (
        f"{now.name} {_head(verdict, beyond)}: window {w.k} sessions ({_day(w.first)} .. {_day(w.last)}), "
        f"drift between sessions ±{w.drift_pct:.1f}% (within a session ±{w.within_pct:.1f}%), "
        f"window centre {format_value(w.centre, now.unit)}, now {format_value(now.value, now.unit)}, "
        f"delta {delta * 100:+.1f}% ({'worse' if worse else 'better'}; {now.better} is better), "
        f"tolerance ±{tol:g}%; {evidence}"
    )
    return mk(verdict, message, baseline=w.centre, delta=delta, method="session-window", n_base=w.k,
              window_first=w.first, window_last=w.last, drift_pct=w.drift_pct, limit_pct=limit,
              min_detectable_change=mdc, blind=w.blind_to(now.better, tol))


def overall(comparisons: list[Comparison]) -> Verdict | None:
    """One verdict per test from its gated metrics. A test with no gated metric cannot regress:
    it is 'new', 'incomparable' or 'pass' from what its report-only metrics show. A gated check that
    reads 'unknown' makes the test 'unknown' unless another regressed or improved: a test passes only
    when every check could see what it claims."""
    if not comparisons:
        return None
    gated = [c for c in comparisons if c.gated]
    if not gated:
        kinds = {c.verdict for c in comparisons}
        return "new" if kinds == {"new"} else "incomparable" if kinds == {"incomparable"} else "pass"
    verdicts = {c.verdict for c in gated}
    for v in ("regression", "improvement", "unknown"):
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
