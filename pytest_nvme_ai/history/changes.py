"""Change points in a series, and what differed between the runs on both sides.

Detection: `ruptures`' PELT (exact optimal segmentation under a penalty, linear expected time; its C
implementation, KernelCPD with the linear kernel, which is the L2 cost) on the
series scaled by a robust noise estimate, then each candidate is kept only if it is both large and
significant, the way Apache Otava (E-Divisive + t-test) and asv (factor + Mann-Whitney) filter theirs:
- large: the medians of the segments on both sides differ by at least `min_change` (default 5%);
- significant: Welch's t-test between the two segments gives p < `alpha` (default 0.001).
Candidates that fail are dropped and the survivors re-tested against their new, longer neighbours
until nothing changes.

Why ruptures: it depends on numpy and scipy only, which the gate already needs. The E-Divisive
packages pin this stack out (apache-otava 0.8.0 pins numpy==2.2.0.* and pulls cloud and chat clients;
MongoDB's signal-processing-algorithms needs numpy < 2 and Python 3.11).
"""
from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_nvme_ai.core.history_types import ChangePoint, SeriesPoint

MIN_SIZE = 3          # points on each side of a change: fewer cannot be told from noise
MIN_CHANGE = 0.05     # 5%: the build VM's run-to-run drift is a few percent
ALPHA = 0.001         # Otava's default p-value
PENALTY = 3.0         # per change point, in units of log(n) on the noise-scaled series (BIC is 2)

# What a change-point report compares between the run before and the run after (label, context key).
COMPARED = (("commit", "commit"), ("deepspeed", "deepspeed"), ("torch", "torch"), ("kernel", "kernel"),
            ("firmware", "firmware"), ("PCIe link", "pcie_link"), ("fio", "fio"), ("transformers", "transformers"),
            ("python", "python"), ("fingerprint", "fingerprint"))


@dataclass(frozen=True)
class Settings:
    min_size: int = MIN_SIZE
    min_change: float = MIN_CHANGE
    alpha: float = ALPHA
    penalty: float = PENALTY


def noise_scale(values: Sequence[float]) -> float:
    """Robust standard deviation from successive differences (a step moves one difference, not the MAD)."""
    diffs = [b - a for a, b in itertools.pairwise(values)]
    if not diffs:
        return 0.0
    med = statistics.median(diffs)
    mad = statistics.median(abs(d - med) for d in diffs)
    return mad * 1.4826 / math.sqrt(2)


def candidates(values: Sequence[float], s: Settings) -> list[int]:
    """Indices where a new segment starts, from PELT."""
    n = len(values)
    if n < 2 * s.min_size:
        return []   # before the imports: ruptures pulls scipy.stats and scipy.spatial (a second or more)
    import numpy as np
    import ruptures as rpt

    x = np.asarray(values, dtype=float)
    scale = noise_scale(values) or (float(np.std(x)) or 1.0) * 1e-3 or 1.0
    signal = ((x - float(np.median(x))) / scale).reshape(-1, 1)
    # KernelCPD with the linear kernel is PELT on the L2 cost, in C: 10,000 points take ~0.3 s, where the
    # pure-Python rpt.Pelt(model="l2") takes ~5 s for 1,000 and about a minute for 3,000 (measured here).
    algo = rpt.KernelCPD(kernel="linear", min_size=s.min_size, jump=1).fit(signal)
    return [int(b) for b in algo.predict(pen=s.penalty * math.log(n)) if 0 < b < n]


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return 1.0
    if statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0:
        return 0.0 if statistics.fmean(a) != statistics.fmean(b) else 1.0
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return p if math.isfinite(p) else 1.0


def significant(values: Sequence[float], breaks: list[int], s: Settings) -> list[tuple[int, float, float, float]]:
    """Filter breaks to the large and significant ones; (index, median before, median after, p)."""
    breaks = sorted(set(breaks))
    while True:
        kept: list[tuple[int, float, float, float]] = []
        bounds = [0, *breaks, len(values)]
        for i, b in enumerate(breaks):
            left, right = values[bounds[i]:b], values[b:bounds[i + 2]]
            m0, m1 = statistics.median(left), statistics.median(right)
            rel = abs(m1 - m0) / abs(m0) if m0 else (math.inf if m1 else 0.0)
            p = welch_p(left, right)
            if rel >= s.min_change and p < s.alpha:
                kept.append((b, m0, m1, p))
        if [k[0] for k in kept] == breaks:
            return kept
        breaks = [k[0] for k in kept]


def find_changes(points: Sequence[SeriesPoint], settings: Settings | None = None) -> list[ChangePoint]:
    s = settings or Settings()
    values = [p.value for p in points]
    out = []
    for idx, m0, m1, p in significant(values, candidates(values, s), s):
        out.append(ChangePoint(index=idx, before=points[idx - 1], after=points[idx], median_before=m0,
                               median_after=m1, p_value=p))
    return out


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """'firmware 4B2QJXD7 -> 4B2QJXE7' for each compared field whose value changed."""
    out = []
    for label, key in COMPARED:
        a, b = before.get(key), after.get(key)
        if a != b:
            if key == "commit":
                a, b = (str(a)[:12] if a else a), (str(b)[:12] if b else b)
            out.append(f"{label} {a if a is not None else '—'} -> {b if b is not None else '—'}")
    return out
