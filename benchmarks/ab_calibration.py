"""Calibration of the A/B decision (gate/ab.py) on synthetic pairs of known noise and known change.

Each simulated decision is one A/B comparison as the session makes it: pairs arrive one at a time,
the decision looks after every pair from the minimum on, and stops at the first verdict or when the
budget (a number of pairs here) is spent. A pair's log ratio log(B/A) is drawn as
    log(1 + change) + noise * e,  e ~ N(0, 1)       (or a t(3) variable scaled to SD 1 with --heavy)
so `noise` is the SD of the pairs' log ratios (the runner's pair noise; an A/A session measures it).

Columns:
  worse/better/same/unknown   share of the decisions with that verdict
  wrong                       verdicts that are false for this change: inside the band (no change, -5%),
                              worse or better; at or beyond the edge (-10%, -30%, -50%), same or better
  med/p90 pairs               pairs used per decision (all decisions, unknown ones at the budget)
The last rows show why a confidence *sequence* is needed: the same pairs judged by a fixed-n 95%
t-interval looked at after every pair (tolerance 0, no change), which misses the truth far more often
than 5%.

Run:  python benchmarks/ab_calibration.py [--decisions 4000] [--budgets 20,40] [--heavy] [--beyond estimate]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pytest_nvme_ai.gate.ab import AbRule, run_sequence  # noqa: E402


def draw(rng: np.random.Generator, change: float, noise: float, shape: tuple[int, int], heavy: bool) -> np.ndarray:
    e = rng.standard_t(3, shape) / math.sqrt(3.0) if heavy else rng.standard_normal(shape)
    return math.log1p(change) + noise * e


def wrong_verdicts(change_pct: float, tol: float) -> tuple[str, ...]:
    """Verdicts that are false for this true change: inside the band neither worse nor better is true."""
    if abs(change_pct) < tol:
        return ("worse", "better")
    return ("same", "better") if change_pct < 0 else ("same", "worse")


def naive_t_miss(xs: np.ndarray, min_pairs: int) -> float:
    """Share of sequences in which a fixed-n 95% t-interval, looked at after every pair, ever excludes 0."""
    from scipy.special import stdtrit
    n = np.arange(1, xs.shape[1] + 1)
    mean = np.cumsum(xs, axis=1) / n
    sd = np.sqrt(np.maximum(np.cumsum(xs ** 2, axis=1) - n * mean ** 2, 0) / np.maximum(n - 1, 1))
    t = stdtrit(np.maximum(n - 1, 1), 0.975)
    return float((np.abs(mean) > t * sd / np.sqrt(n))[:, min_pairs - 1:].any(axis=1).mean())


def row(rng: np.random.Generator, noise: float, change_pct: float, rule: AbRule, count: int, heavy: bool) -> str:
    assert rule.max_pairs is not None
    xs = draw(rng, change_pct / 100.0, noise, (count, rule.max_pairs), heavy)
    results = [run_sequence(x, rule) for x in xs]
    verdicts = Counter(r.verdict for r in results)
    pairs = sorted(r.pairs for r in results)
    share = {k: verdicts[k] / count * 100 for k in ("worse", "better", "same", "unknown")}
    wrong = sum(verdicts[k] for k in wrong_verdicts(change_pct, rule.tolerance)) / count * 100
    p90 = pairs[int(0.9 * (count - 1))]
    return (f"{noise * 100:>5.0f}% {change_pct:>+7.0f}% {rule.max_pairs:>6d} "
            f"{share['worse']:>6.1f}% {share['better']:>6.1f}% {share['same']:>6.1f}% {share['unknown']:>7.1f}% "
            f"{wrong:>6.1f}% {statistics.median(pairs):>5.0f} {p90:>5d}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decisions", type=int, default=4000, help="simulated decisions per row")
    ap.add_argument("--noise", default="5,15,30", help="pair noise, SD of log(B/A) in percent (comma list)")
    ap.add_argument("--changes", default="0,-5,-10,-30,-50", help="true change of B in percent (comma list)")
    ap.add_argument("--budgets", default="20,40", help="budget in pairs (comma list)")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--tolerance", type=float, default=10.0, help="percent")
    ap.add_argument("--min-pairs", type=int, default=5)
    ap.add_argument("--heavy", action="store_true", help="t(3) pair noise (heavy tails) instead of normal")
    ap.add_argument("--beyond", choices=("interval", "estimate"), default="interval",
                    help="AbRule.beyond: what must lie beyond the band for worse/better")
    ap.add_argument("--seed", type=int, default=20261203)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    noises = [float(v) / 100.0 for v in args.noise.split(",")]
    changes = [float(v) for v in args.changes.split(",")]
    budgets = [int(v) for v in args.budgets.split(",")]
    t0 = time.time()
    print(f"A/B decision calibration: alpha {args.alpha}, tolerance ±{args.tolerance:g}%, min {args.min_pairs} pairs, "
          f"{args.decisions} decisions per row, {'t(3)' if args.heavy else 'normal'} pair noise, higher is better, "
          f"beyond={args.beyond}")
    print(f"{'noise':>6} {'change':>8} {'budget':>6} {'worse':>7} {'better':>7} {'same':>7} {'unknown':>8} "
          f"{'wrong':>7} {'med':>5} {'p90':>5}")
    for budget in budgets:
        for noise in noises:
            for change in changes:
                rule = AbRule("higher", tolerance=args.tolerance, alpha=args.alpha, min_pairs=args.min_pairs,
                              max_pairs=budget, beyond=args.beyond)
                print(row(rng, noise, change, rule, args.decisions, args.heavy), flush=True)
    print("\nfixed-n 95% t-interval looked at after every pair (tolerance 0, no change): share that ever "
          "excludes no change")
    for budget in budgets:
        xs = draw(rng, 0.0, 0.15, (args.decisions, budget), args.heavy)
        rule = AbRule("higher", tolerance=0.0, alpha=args.alpha, min_pairs=args.min_pairs, max_pairs=budget)
        seq = sum(run_sequence(x, rule).verdict != "unknown" for x in xs) / len(xs) * 100
        print(f"  pairs {args.min_pairs}..{budget}: naive t {naive_t_miss(xs, args.min_pairs) * 100:.1f}%, "
              f"this confidence sequence {seq:.1f}%")
    print(f"\n({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
