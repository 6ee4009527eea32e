"""What a catalog entry says about a metric name: its unit, direction, whether it is gated by default."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Better = Literal["higher", "lower"]


# Units whose values cannot be negative: amounts, rates, durations, energies, powers, and quotients of
# two of them. A sample below 0 in one of these was not measured: it was typed (a hand-edited baseline).
NON_NEGATIVE_UNITS = frozenset({"B", "B/s", "ns", "s", "tokens/s", "IO/s", "J/token", "W", "%", "ratio"})


@dataclass(frozen=True)
class MetricSpec:
    unit: str
    better: Better
    gated: bool  # gated unless a marker says otherwise; tails and byte counts are report-only
    description: str
    # (lowest, highest) a sample may take; None: from the unit (0 and up for NON_NEGATIVE_UNITS, any
    # value otherwise). A metric that may go below 0 (a gain of -20%) says so here.
    domain: tuple[float, float] | None = None


def unit_domain(unit: str) -> tuple[float, float]:
    """The values a metric of `unit` can take when its catalog entry says nothing else."""
    return (0.0, float("inf")) if unit in NON_NEGATIVE_UNITS else (float("-inf"), float("inf"))
