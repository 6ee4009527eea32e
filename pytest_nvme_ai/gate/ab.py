"""The A/B decision: after each new pair of runs, is arm B the same as arm A, worse, better, or not yet known?

The data. A and B run interleaved in one session, one run of each per pair, so whatever the runner
does at that moment (a neighbour, page-cache pressure, burst credits) hits both arms of a pair alike.
The unit of evidence is the pair's log ratio x_i = log(B_i / A_i): logs because drift is
multiplicative, and a ratio because the drift cancels in it. The question is about the mean m of
x_i, the log of the geometric-mean ratio B/A.

The decision looks after every pair (that is what lets a clear slowdown stop after a few pairs and a
subtle one run on), so a fixed-n test (a paired t-test, Mann-Whitney) is the wrong tool: a 95%
t-interval looked at after each pair from the 5th to the 40th misses the truth at some look in 26%
of sequences, not 5% (the sequence below: 2.4%; benchmarks/ab_calibration.py prints both). We need
an interval that holds at every look at once: a confidence sequence.

The method: a mixture sequential probability ratio test for a normal mean with unknown variance,
inverted into a confidence sequence.
  * For a candidate value m, the Bayes factor of "the standardised effect d = (mean - m)/sigma is
    drawn from N(0, g)" against "d = 0", with the scale-invariant prior 1/sigma on sigma, has a
    closed form in the one-sample t statistic t_n(m) (Gonen, Johnson, Lu & Westfall 2005; the
    normal-prior form of the JZS t-test):
        BF_n(m) = (1 + n g)^(-1/2) * [(1 + t^2/nu) / (1 + t^2/(nu (1 + n g)))]^(n/2),   nu = n - 1.
  * 1/sigma is the right Haar prior of the scale group, so BF_n(m) is the likelihood ratio of the
    scale-invariant part of the data, a nonnegative martingale with mean 1 under "the true mean is m"
    whatever sigma is (Hendriksen, de Heide & Grunwald 2021; Perez-Ortiz et al. 2024, "E-statistics,
    group invariance and anytime-valid testing"). By Ville's inequality it ever reaches 1/alpha with
    probability at most alpha, however many looks and whenever we stop.
  * So {m : BF_n(m) < 1/alpha} holds the true mean at every n at once with probability >= 1 - alpha.
    BF_n grows with t^2, hence the set is mean +- c_n * sd / sqrt(n), c_n solving BF = 1/alpha in
    closed form (`boundary`). It is infinite while n pairs cannot reach 1/alpha at all (n <= 3 for
    the g chosen here).
  * g = 2 (MIXTURE_G): the standardised effects that matter here are |d| ~ 0.5..5 (a 10-50% change
    against 5-30% pair noise). At alpha = 0.05, g = 2 gives c_5 = 5.8, c_10 = 3.9, c_20 = 3.5,
    c_50 = 3.4 (a fixed-n t: 2.8, 2.3, 2.1, 2.0). g = 1 is 3% tighter from 20 pairs on but infinite
    below 5 pairs and 45% wider at 5; g = 4 is tighter at 4-5 pairs and 3% wider from 15 on. The
    price of looking after every pair is the ratio of these: roughly 1.7x the width, 3x the pairs
    of a single fixed-n test with the same error rate.

The verdicts, with tolerance band [1 - tol, 1 + tol] on B/A (the window gate's band, gate/verdict.py):
  * worse / better: the whole interval lies beyond the band, on the worse (better) side for the
    metric's direction: B is worse by more than the tolerance, with the sequence's confidence.
  * same: the whole interval lies inside the band (equivalence, as TOST; TOST uses a fixed-n
    interval, the sequence makes the look after every pair free).
  * otherwise continue; when the budget is spent, unknown, with the interval reached and an estimate
    of how many pairs would probably decide (the n at which the interval's half-width would fit the
    margin, if the estimate and the noise stay as they are now: about an even chance).

What is guaranteed (for normal log ratios; at every look at once, for any stopping rule): whatever
the true change, each wrong verdict needs the interval to miss the truth on one side, so
  * P(worse) <= alpha/2 when the true change is within the tolerance or better (P(better) the mirror);
  * P(same) <= alpha/2 when the true change is beyond the tolerance;
  * with no change, P(worse or better, ever) <= alpha (in fact far less: both need a miss by a whole
    tolerance; benchmarks/ab_calibration.py).

Why the interval and not the estimate beyond the band. asv's rule (and the window gate's) asks for a
significant change whose estimate lies beyond the tolerance: `beyond="estimate"` here, which needs
the interval to exclude no change and the estimate to lie beyond the band. At one look that is
sensible; looked at after every pair, the estimate's early swings cross the band edge, so a real
change inside the tolerance gets called worse: at 15% pair noise and 40 pairs, a true -5% change
was called worse in 12% of decisions (the default: 0.1%), and a change of exactly the tolerance in
71% (default: 1.2%). The price of the default is pairs: a 30% slowdown at 30% pair noise is caught
in 68% of decisions within 20 pairs and 97% within 40 (estimate rule: 97% and 100%); at 15% noise
or less, or a 50% slowdown, both catch 100% within 20 pairs. The rule is a field of `AbRule`, so a
caller that prefers power over the tolerance's meaning can say so (figures: benchmarks/ab_calibration.py).

The guarantee assumes normal log ratios. Heavy-tailed pair noise (a pair hit by a neighbour) was
simulated as t(3) noise of the same SD (the benchmark's --heavy): the wrong-verdict rate stayed at
or under 1% in every row. Each gated metric is decided on its own at alpha, like the window gate's
checks; a test with several gated metrics has several chances of a false verdict.

Why not the alternatives.
  * Pinpoint (catapult dashboard/pinpoint/models/compare): Mann-Whitney/KS p-values against a fixed
    low threshold (different) and per-sample-size high thresholds (same) computed for a fixed effect
    size. Looking again after each new batch of runs is not accounted for, so repeated looks raise
    the false-alarm rate above the threshold, and there is no tolerance: "different" means any
    detectable change, however small.
  * Group-sequential boundaries (Pocock, O'Brien-Fleming, Lan-DeMets alpha spending) are tighter
    but need the maximum number of looks up front; the budget here is seconds, and how many pairs fit
    is learnt while running. They also assume a known variance, which the first few pairs do not give.
  * Distribution-free confidence sequences (betting, empirical Bernstein) need bounded data and are
    much wider at 5-30 observations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Sequence

Better = Literal["higher", "lower"]
Beyond = Literal["interval", "estimate"]
Verdict = Literal["same", "worse", "better", "unknown", "continue"]

ALPHA = 0.05           # any false worse/better under no change, over all looks together
TOLERANCE = 10.0       # percent, the window gate's default (--nvme-ai-tolerance)
MIN_PAIRS = 5          # no verdict before: the interval is infinite until 4 pairs, and 5 pairs let one
                       # odd pair show in the spread instead of deciding alone
MIXTURE_G = 2.0        # prior variance of the standardised effect in the mixture (see the docstring)
MAX_NEEDED = 100_000   # pairs-needed estimates beyond this are reported as None ("far more")
METHOD = "mixture-t confidence sequence on log(B/A)"


@dataclass(frozen=True)
class AbRule:
    """How one metric is decided."""

    better: Better
    tolerance: float = TOLERANCE        # percent: the band [1 - tol, 1 + tol] of B/A that counts as the same
    alpha: float = ALPHA
    min_pairs: int = MIN_PAIRS
    max_pairs: int | None = None        # a budget in pairs; a time budget is the caller's out_of_budget
    mixture_g: float = MIXTURE_G        # leave it unless you recalibrate (benchmarks/ab_calibration.py)
    beyond: Beyond = "interval"         # what must lie beyond the band for worse/better (module docstring)

    def __post_init__(self) -> None:
        if self.better not in ("higher", "lower"):
            raise ValueError(f"A/B rule: better must be 'higher' or 'lower', not {self.better!r}")
        if not (math.isfinite(self.tolerance) and 0.0 <= self.tolerance < 100.0):
            raise ValueError(f"A/B rule: tolerance {self.tolerance!r} must be a percentage in [0, 100)")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"A/B rule: alpha {self.alpha!r} must lie in (0, 1), e.g. 0.05")
        if self.min_pairs < 2:
            raise ValueError(f"A/B rule: min_pairs {self.min_pairs} must be at least 2 (the noise needs two pairs)")
        if self.max_pairs is not None and self.max_pairs < self.min_pairs:
            raise ValueError(f"A/B rule: max_pairs {self.max_pairs} is below min_pairs {self.min_pairs}")
        if self.beyond not in ("interval", "estimate"):
            raise ValueError(f"A/B rule: beyond must be 'interval' or 'estimate', not {self.beyond!r}")
        if not (math.isfinite(self.mixture_g) and self.mixture_g > 0):
            raise ValueError(f"A/B rule: mixture_g {self.mixture_g!r} must be a positive number")

    @property
    def edges(self) -> tuple[float, float]:
        """The tolerance band on the log scale: (log(1 - tol), log(1 + tol))."""
        t = self.tolerance / 100.0
        return math.log1p(-t), math.log1p(t)


@dataclass(frozen=True)
class PairDecision:
    """The decision for one metric after `pairs` pairs. Ratios are B/A (the geometric mean)."""

    verdict: Verdict
    ratio: float | None                 # exp(mean log ratio); None before the first pair
    interval: tuple[float, float]       # B/A; (0, inf) while the pairs cannot bound it yet
    pairs: int
    stop_reason: str
    pairs_needed: int | None            # total pairs that would probably decide (continue/unknown only)
    noise_pct: float | None             # SD of the pairs' log ratios x 100: the runner's pair noise
    tolerance: float
    alpha: float
    better: Better
    beyond: Beyond = "interval"

    @property
    def final(self) -> bool:
        return self.verdict != "continue"

    @property
    def change_pct(self) -> float | None:
        return None if self.ratio is None else (self.ratio - 1.0) * 100.0

    def to_dict(self) -> dict[str, Any]:
        """The results.json shape: JSON has no infinity, so an unbounded end is null."""
        return {"verdict": self.verdict, "ratio": self.ratio, "change_pct": self.change_pct,
                "interval": [_finite_or_none(v) for v in self.interval], "pairs": self.pairs,
                "stop_reason": self.stop_reason, "pairs_needed": self.pairs_needed, "noise_pct": self.noise_pct,
                "tolerance": self.tolerance, "alpha": self.alpha, "better": self.better, "beyond": self.beyond,
                "method": METHOD}


def _finite_or_none(v: float) -> float | None:
    return v if math.isfinite(v) else None


# ---- the confidence sequence ----------------------------------------------------------------------
@lru_cache(maxsize=8192)
def boundary(n: int, alpha: float = ALPHA, g: float = MIXTURE_G) -> float:
    """c_n: after n pairs the interval on the mean log ratio is mean +- c_n * sd / sqrt(n) (inf: unbounded).

    Solves BF_n = 1/alpha for t^2 (see the module docstring): with r = 1 + n g and K = (sqrt(r)/alpha)^(2/n),
    (1 + u)/(1 + u/r) = K gives u = t^2/nu = (K - 1)/(1 - K/r). The left side tends to r as t grows, so
    there is no finite root while r^((n-1)/2) <= 1/alpha.
    """
    if n < 2:
        return math.inf
    nu = n - 1
    r = 1.0 + n * g
    if 0.5 * nu * math.log(r) <= math.log(1.0 / alpha):
        return math.inf
    log_k = (0.5 * math.log(r) + math.log(1.0 / alpha)) * 2.0 / n
    u = math.expm1(log_k) / (1.0 - math.exp(log_k) / r)
    return math.sqrt(nu * u)


def half_width(n: int, sd: float, rule: AbRule) -> float:
    """Half-width of the interval on the log scale after n pairs with this SD of log ratios."""
    c = boundary(n, rule.alpha, rule.mixture_g)
    if math.isinf(c):
        return math.inf
    return c * sd / math.sqrt(n)


def log_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """log(B_i / A_i) for each pair; positive finite values only (a zero or negative metric has no ratio)."""
    if len(a) != len(b):
        raise ValueError(f"A/B pairs: {len(a)} values of arm A but {len(b)} of arm B; each pair has one of each")
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        if not (math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0):
            raise ValueError(f"A/B pair {i + 1}: A={x!r}, B={y!r}: a ratio needs two positive finite values; "
                             "a metric that can be zero or negative cannot be compared as a ratio")
        out.append(math.log(y / x))
    return out


# ---- the decision ---------------------------------------------------------------------------------
def decide(x: Sequence[float], rule: AbRule, *, out_of_budget: bool = False) -> PairDecision:
    """The decision after the pairs whose log ratios log(B/A) are `x` (see `log_ratios`).

    `out_of_budget`: the caller's time budget cannot fit another pair, so an undecided look is final
    (`unknown`). `rule.max_pairs` is a budget in pairs that applies as well.
    """
    n = len(x)
    if not all(math.isfinite(v) for v in x):
        raise ValueError("A/B decision: a log ratio is not finite; build them with log_ratios(a, b)")
    mean = math.fsum(x) / n if n else 0.0
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in x) / (n - 1)) if n >= 2 else math.nan
    return decide_stats(n, mean, sd, rule, out_of_budget=out_of_budget)


def decide_stats(n: int, mean: float, sd: float, rule: AbRule, *, out_of_budget: bool = False) -> PairDecision:
    """`decide` from the pairs' count, mean and sample SD of log ratios (for callers that keep running sums)."""
    if rule.max_pairs is not None and n >= rule.max_pairs:
        out_of_budget = True
    tol = rule.tolerance
    conf = f"{1 - rule.alpha:.0%} confidence sequence"
    h = half_width(n, sd, rule) if n >= 2 else math.inf

    def mk(verdict: Verdict, reason: str, needed: int | None = None) -> PairDecision:
        ratio = math.exp(mean) if n else None
        interval = (math.exp(mean - h), math.exp(mean + h)) if n and math.isfinite(h) else (0.0, math.inf)
        noise = sd * 100.0 if n >= 2 and math.isfinite(sd) else None
        return PairDecision(verdict, ratio, interval, n, reason, needed, noise, tol, rule.alpha, rule.better,
                            rule.beyond)

    if n < rule.min_pairs:
        if out_of_budget:
            return mk("unknown", f"budget spent after {n} pair(s), before the minimum of {rule.min_pairs}",
                      pairs_needed(n, mean, sd, rule))
        return mk("continue", f"{n} of at least {rule.min_pairs} pairs")

    band = f"±{tol:g}%"
    ivl = f"B/A {math.exp(mean):.3f} [{math.exp(mean - h):.3f}, {_fmt_ratio(mean + h)}]"
    side = _side(n, mean, h, rule)
    clear = f"the {conf} lies beyond {band}" if rule.beyond == "interval" else \
        f"the estimate lies beyond {band} and the {conf} excludes no change"
    if side == "below":
        return mk("worse" if rule.better == "higher" else "better",
                  f"{ivl}: B lower by {-math.expm1(mean) * 100:.1f}%; {clear}")
    if side == "above":
        return mk("better" if rule.better == "higher" else "worse",
                  f"{ivl}: B higher by {math.expm1(mean) * 100:.1f}%; {clear}")
    if side == "inside":
        return mk("same", f"{ivl}: the {conf} lies within {band}")
    needed = pairs_needed(n, mean, sd, rule)
    if out_of_budget:
        more = f"about {needed} pairs would probably decide" if needed is not None else \
            f"no pair count up to {MAX_NEEDED} would probably decide (the estimate sits at a tolerance edge)"
        return mk("unknown", f"budget spent after {n} pairs: {ivl} is neither within {band} nor clear of "
                             f"no change beyond it; {more}", needed)
    return mk("continue", f"{ivl}: not yet decisive at {n} pairs", needed)


def _side(n: int, mean: float, h: float, rule: AbRule) -> Literal["below", "above", "inside"] | None:
    """Where the interval mean +- h puts B against the band, or None while it is not decisive.

    below/above (worse or better, by direction): the whole interval lies beyond the band, or with
    beyond="estimate" the estimate does and the interval excludes no change; inside (same): the whole
    interval lies within the band.
    """
    if n < rule.min_pairs:
        return None
    lo_edge, hi_edge = rule.edges
    if rule.beyond == "interval":
        if mean + h < lo_edge:
            return "below"
        if mean - h > hi_edge:
            return "above"
    else:
        if mean + h < 0.0 and mean < lo_edge:
            return "below"
        if mean - h > 0.0 and mean > hi_edge:
            return "above"
    if lo_edge < mean - h and mean + h < hi_edge:
        return "inside"
    return None


def _fmt_ratio(v: float) -> str:
    return f"{math.exp(v):.3f}" if math.isfinite(v) else "inf"


def pairs_needed(n: int, mean: float, sd: float, rule: AbRule) -> int | None:
    """Total pairs at which the interval would probably decide, if the mean and SD stayed as they are.

    The verdict the estimate points at needs a margin: inside the band, the distance to the nearer edge
    (for `same`); beyond it, the distance to that edge (for worse/better; with beyond="estimate", the
    distance to no change). The answer is the smallest
    n' at which the half-width fits that margin: an even chance, since the mean itself will move. None
    when the estimate sits on a band edge, the noise is unknown (under two pairs), or n' > MAX_NEEDED.
    """
    if n < 2 or not math.isfinite(sd):
        return None
    lo_edge, hi_edge = rule.edges
    if lo_edge < mean < hi_edge:
        margin = min(mean - lo_edge, hi_edge - mean)
    elif rule.beyond == "interval":
        margin = lo_edge - mean if mean <= lo_edge else mean - hi_edge
    else:
        margin = abs(mean)
    if margin <= 0.0:
        return None
    start = max(n, rule.min_pairs)

    def fits(m: int) -> bool:
        return half_width(m, sd, rule) < margin

    if fits(start):
        return start
    # c_m / sqrt(m) falls monotonically once finite: double to bracket, then bisect.
    hi = start
    while not fits(hi):
        if hi >= MAX_NEEDED:
            return None
        hi = min(hi * 2, MAX_NEEDED)
    lo = hi // 2 if hi // 2 >= start else start
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return hi


def run_sequence(x: Sequence[float], rule: AbRule) -> PairDecision:
    """Look after each pair of `x` in turn, as the session would, and return the first final decision.

    The end of `x` (or rule.max_pairs) is the budget. Running sums keep this linear in the pairs, and
    looks that continue build no record, for simulations (benchmarks/ab_calibration.py, the tests).
    """
    last = len(x) if rule.max_pairs is None else min(len(x), rule.max_pairs)
    mean = 0.0
    m2 = 0.0
    sd = math.nan
    for i in range(last):
        n = i + 1
        v = float(x[i])           # numpy scalars would make this loop several times slower
        if not math.isfinite(v):
            raise ValueError(f"A/B decision: log ratio {i + 1} is {v}; build them with log_ratios(a, b)")
        d = v - mean              # Welford: stable running mean and sum of squares
        mean += d / n
        m2 += d * (v - mean)
        if n >= 2:
            sd = math.sqrt(max(m2, 0.0) / (n - 1))
            if _side(n, mean, half_width(n, sd, rule), rule) is not None:
                break
    else:
        n = last
    return decide_stats(n, mean if n else 0.0, sd, rule, out_of_budget=True)
