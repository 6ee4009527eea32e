"""Metric records and their summary statistics (the names they may take are in `core.catalog`).

A metric is a named list of samples (one per repetition) with a unit and a
direction. The summary value is the median: robust to the one slow run that a
noisy machine always produces, and what the gate compares.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from pytest_nvme_ai.core.catalog import CATALOG, Better, MetricSpec

# CATALOG is re-exported: `from pytest_nvme_ai.core.metrics import Metric, CATALOG, format_value` is the public spelling.
__all__ = ["CATALOG", "Better", "Metric", "MetricSpec", "format_value"]


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    better: Better
    samples: tuple[float, ...]
    gated: bool = True

    def __post_init__(self) -> None:
        if self.better not in ("higher", "lower"):
            raise ValueError(f"metric {self.name!r}: better must be 'higher' or 'lower', not {self.better!r}")
        if not self.samples:
            raise ValueError(f"metric {self.name!r} has no samples: a metric must be measured, not declared")
        for s in self.samples:
            if not np.isfinite(s):
                raise ValueError(f"metric {self.name!r} has a non-finite sample {s!r}")

    @classmethod
    def of(cls, name: str, samples: Iterable[float], *, unit: str | None = None,
           better: Better | None = None, gated: bool | None = None) -> "Metric":
        """Build a metric; catalog names take their unit/direction from CATALOG."""
        spec = CATALOG.get(name)
        if spec is None and (unit is None or better is None):
            raise ValueError(
                f"metric {name!r} is not in the catalog ({', '.join(sorted(CATALOG))}); "
                "pass unit= and better= for a custom metric"
            )
        return cls(
            name=name,
            unit=unit if unit is not None else spec.unit,  # type: ignore[union-attr]
            better=better if better is not None else spec.better,  # type: ignore[union-attr]
            samples=tuple(float(s) for s in samples),
            gated=gated if gated is not None else (spec.gated if spec else True),
        )

    @property
    def value(self) -> float:
        return float(np.median(self.samples))

    @property
    def n(self) -> int:
        return len(self.samples)

    def spread(self) -> float:
        """Relative spread (max-min)/median; 0 for a single sample."""
        if len(self.samples) < 2 or self.value == 0:
            return 0.0
        return float((max(self.samples) - min(self.samples)) / abs(self.value))

    def merged(self, other: "Metric") -> "Metric":
        """Same metric measured again (repetition): samples accumulate."""
        if (other.name, other.unit, other.better) != (self.name, self.unit, self.better):
            raise ValueError(f"cannot merge metric {self.name!r} ({self.unit}) with {other.name!r} ({other.unit})")
        return Metric(self.name, self.unit, self.better, self.samples + other.samples, self.gated)

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit, "better": self.better,
                "samples": list(self.samples), "gated": self.gated}

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> "Metric":
        samples = d.get("samples") or [d["value"]]
        return cls(name, str(d["unit"]), d["better"], tuple(float(s) for s in samples), bool(d.get("gated", True)))


def format_value(value: float, unit: str) -> str:
    """Human figure for tables: 1.23 GB/s, 4.5 ms, 12.3 tokens/s."""
    if unit in ("B/s", "B"):
        for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= scale:
                return f"{value / scale:.3g} {prefix}{unit}"
        return f"{value:.3g} {unit}"
    if unit == "ns":
        if abs(value) >= 1e6:
            return f"{value / 1e6:.3g} ms"
        if abs(value) >= 1e3:
            return f"{value / 1e3:.3g} µs"
        return f"{value:.3g} ns"
    if unit == "s" and abs(value) < 1:
        return f"{value * 1e3:.3g} ms"
    if unit == "ratio":
        return f"{value:.3f}"
    return f"{value:.4g} {unit}"
