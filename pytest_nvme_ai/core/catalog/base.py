"""What a catalog entry says about a metric name: its unit, direction, whether it is gated by default."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class MetricSpec:
    unit: str
    better: Better
    gated: bool  # gated unless a marker says otherwise; tails and byte counts are report-only
    description: str
