"""The session-window rule: is this run outside the drift the runner shows between sessions?

Why sessions and not samples. A baseline session's repetitions run back to back, so they share the
machine's state of that moment (burst credits, page-cache pressure, a neighbour). On the build VM an
unchanged rerun minutes later moved fio bandwidth by 15-32% while the repetitions within each
session agreed to a few percent; 3 samples against 3 then separate completely, and a sample test
(Mann-Whitney, a t-test on pooled samples) calls noise significant. The unit of independent
variation is the session, so the rule treats each session's median as one observation.

The method: a one-sided prediction interval for the next session median (a Shewhart-style
control limit with the small-window correction).
  * y_i = log(median of session i), i = 1..k, over the last k sessions of the entry's window. Logs,
    because drift is multiplicative (a drive 20% slower is 20% slower at any block size) and the
    verdict is about relative change.
  * centre c = mean(y); spread s = SD(y), floored at the within-session standard error of a median
    (1.2533 * pooled within-session SD / sqrt(n)) so that k sessions which happen to agree cannot
    make the limit tighter than the repetitions themselves are.
  * limit w = t(k-1, 1-ALPHA) * s * sqrt(1 + 1/k): the new session is one more draw from the same
    distribution, with the centre and the spread both estimated from only k points. Student's t
    makes the false-alarm rate ALPHA exact for normal session effects at any k, where conbench's
    fixed z threshold (5, against up to 100 ancestor runs) assumes a long history that a baseline
    window of 5-10 sessions does not have.
  * regression: worse than c by more than w *and* by more than the tolerance (asv's rule: a change
    must be both significant and large enough to matter). Improvement is the mirror.

Why not the alternatives. A robust spread (MAD, Qn) has 37-80% efficiency and no tabulated
small-sample quantiles at k = 5..10, so its false-alarm rate would be a guess; an outlying session
in the window inflates SD, which makes the gate less sensitive (and the minimum detectable change
shows it), never more trigger-happy. asv's step detection (penalised L1 fits) and E-Divisive need
tens of points per series; they belong to the history store, not to a pre-merge gate. A mixed model
on pooled samples estimates the same session variance with more machinery and the same k - 1
degrees of freedom.

MIN_SESSIONS = 5: with k - 1 = 4 degrees of freedom the spread estimate is within a factor 2 of the
truth in ~91% of windows (chi-square), and t(4, 0.99) = 3.75 still gives a usable limit; at k = 3
(two degrees of freedom) one window in five understates the spread by half or more, so the gate
would claim a sensitivity it does not have. With fewer sessions the within-session rule decides and
the message says the window is too short to know the drift. Then the drift is unknown, and so is the
MDC: only a change beyond SHORT_LIMIT_LOG (the limit under an assumed drift, below) counts as a
regression, and anything else reads `unknown`, not `pass` (gate/verdict.py).

Minimum detectable change (MDC): the smallest true shift of the metric that this window flags with
probability POWER (90%): the larger of the limit and the tolerance, plus t(k-1, POWER) session
standard deviations (with the centre's own uncertainty), on the log scale. A gate that reports an
MDC of 25% catches a 30% drop at least nine times in ten, if the runner keeps drifting as the window
shows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

ALPHA = 0.01          # one-sided false-alarm rate per gated check, under the model
POWER = 0.90          # the MDC is the shift caught with this probability
MIN_SESSIONS = 5
MEDIAN_SE_FACTOR = 1.2533   # sqrt(pi/2): standard error of a median vs of a mean, normal samples
# Until MIN_SESSIONS sessions measure the drift, it is assumed: ASSUMED_DRIFT is a log-SD between sessions
# at the top of what this project measured on shared runners (fio 3-15%, ZeRO-Inference decode 28%;
# docs/gate.md). A short window compares with its latest session alone, so the one-sided prediction limit
# for one more session against one reference session is z(1 - ALPHA) * ASSUMED_DRIFT * sqrt(1 + 1/1):
# 0.658 on the log scale, i.e. 48% slower or 93% faster. Unchanged runners moved by up to -47% between
# early saves (issue 23); a 50% drop (log 0.693) still lies beyond it.
ASSUMED_DRIFT = 0.20
SHORT_LIMIT_LOG = NormalDist().inv_cdf(1.0 - ALPHA) * ASSUMED_DRIFT * math.sqrt(2.0)


def short_limit_pct(better: str) -> float:
    """The short-window limit as a percentage in the worse direction (48.2% lower, or 93.1% higher)."""
    return ((1.0 - math.exp(-SHORT_LIMIT_LOG)) if better == "higher" else math.expm1(SHORT_LIMIT_LOG)) * 100.0


@dataclass(frozen=True)
class SessionPoint:
    """One past session of one metric: its samples and when it ran."""

    samples: tuple[float, ...]
    time: str | None = None
    run_id: str | None = None

    @property
    def median(self) -> float:
        s = sorted(self.samples)
        n = len(s)
        return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


@dataclass(frozen=True)
class WindowStats:
    """What the window says about one metric on this runner (log scale internally)."""

    k: int                   # sessions used
    centre: float            # geometric mean of the session medians (the value "now" is compared with)
    drift_pct: float         # SD of log session medians, as a percentage: the drift seen between sessions
    within_pct: float        # within-session standard error of a median, as a percentage
    limit_log: float         # half-width of the one-sided prediction limit on the log scale
    t_quantile: float
    t_power: float           # t(k-1, POWER): the margin that turns the limit into a 90%-power change
    first: str | None
    last: str | None

    @property
    def spread_log(self) -> float:
        return max(self.drift_pct, self.within_pct) / 100.0

    def mdc_pct(self, better: str, tolerance_pct: float) -> float:
        """Smallest shift (percent, in the worse direction) flagged with probability POWER.

        A run shifted by d lands at c - d +- the session spread (and the centre itself is uncertain by
        s/sqrt(k)); it is flagged when it passes both the prediction limit and the tolerance, so
        d = max(limit, tolerance) + t(k-1, POWER) * s * sqrt(1 + 1/k) on the log scale."""
        tol = tolerance_pct / 100.0
        tol_log = -math.log(1.0 - tol) if better == "higher" and tol < 1 else math.log(1.0 + tol)
        if better == "higher" and tol >= 1:
            return 100.0   # a drop of the whole value: nothing smaller can pass a tolerance of 100% or more
        reach = max(self.limit_log, tol_log) + self.t_power * self.spread_log * math.sqrt(1.0 + 1.0 / self.k)
        change = (1.0 - math.exp(-reach)) if better == "higher" else (math.exp(reach) - 1.0)
        # Never below the tolerance: with no spread, reach is tol_log exactly, and the exp/log round trip
        # alone would put the MDC a few ulps under the tolerance (9.999999999999998 for 10%).
        return max(change * 100.0, tolerance_pct)

    def blind_to(self, better: str, tolerance_pct: float) -> bool:
        """True when the drift alone hides a change of tolerance size: the prediction limit is wider than
        the tolerance, so a change that large can never be flagged here (the header warns)."""
        return self.limit_pct(better) > tolerance_pct

    def limit_pct(self, better: str) -> float:
        """How far (percent, worse direction) a session median may move before it is outside the window."""
        return ((1.0 - math.exp(-self.limit_log)) if better == "higher" else (math.exp(self.limit_log) - 1.0)) * 100


def t_quantile(df: int, q: float) -> float:
    from scipy.stats import t as student_t

    return float(student_t.ppf(q, df))


def _sd(xs: Sequence[float]) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0


def stats(sessions: Sequence[SessionPoint], n_now: int, alpha: float = ALPHA) -> WindowStats | None:
    """Window statistics, or None when the window is too short or a value is not positive."""
    k = len(sessions)
    if k < MIN_SESSIONS or any(s <= 0 for p in sessions for s in p.samples):
        return None
    logs = [math.log(p.median) for p in sessions]
    centre = sum(logs) / k
    drift = _sd(logs)
    # Pooled within-session SD of log samples, then the standard error of a median of n_now of them.
    ss, dof = 0.0, 0
    for p in sessions:
        if len(p.samples) > 1:
            ls = [math.log(x) for x in p.samples]
            m = sum(ls) / len(ls)
            ss += sum((x - m) ** 2 for x in ls)
            dof += len(ls) - 1
    within = MEDIAN_SE_FACTOR * math.sqrt(ss / dof) / math.sqrt(max(1, n_now)) if dof else 0.0
    t = t_quantile(k - 1, 1.0 - alpha)
    limit = t * max(drift, within) * math.sqrt(1.0 + 1.0 / k)
    times = sorted(p.time for p in sessions if p.time)
    return WindowStats(k=k, centre=math.exp(centre), drift_pct=drift * 100.0, within_pct=within * 100.0,
                       limit_log=limit, t_quantile=t, t_power=t_quantile(k - 1, POWER), first=times[0] if times else None,
                       last=times[-1] if times else None)


def outside(now: float, w: WindowStats) -> float:
    """Signed distance of now from the centre in units of the limit (|x| > 1: outside)."""
    if w.limit_log == 0:
        return math.inf if now != w.centre else 0.0
    return (math.log(now) - math.log(w.centre)) / w.limit_log
