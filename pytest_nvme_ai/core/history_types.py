"""Run-history records shared by `history/` (which stores and analyses them) and `report/` (which charts them).

Plain frozen dataclasses, no database and no numpy: both sides can name them without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SeriesKey:
    """What one series follows. Deliberately not the full device fingerprint: a firmware update or a
    PCIe link that trained differently stays inside the series and shows up as a change point."""

    test_key: str      # node id without the target component (the baseline key)
    metric: str
    drive_model: str
    runner: str

    def describe(self) -> str:
        return f"{self.test_key} {self.metric} · drive {self.drive_model} · runner {self.runner}"


@dataclass(frozen=True)
class SeriesPoint:
    """One run's value of one metric of one test."""

    run_id: str
    started: str                     # ISO 8601, UTC
    value: float
    samples: tuple[float, ...] = ()
    status: str = "complete"          # complete | interrupted
    commit: str | None = None
    fingerprint: str = ""             # the device fingerprint text of that run's target


@dataclass(frozen=True)
class ChangePoint:
    """A step in a series: `index` is the first point after the change (its run is `after.run_id`)."""

    index: int
    before: SeriesPoint              # the last run before the change
    after: SeriesPoint               # the first run after it
    median_before: float
    median_after: float
    p_value: float                   # Welch's t-test, segment before vs segment after

    @property
    def relative_change(self) -> float:
        return (self.median_after - self.median_before) / abs(self.median_before) if self.median_before else 0.0


@dataclass(frozen=True)
class Trend:
    """A series as the report draws it: points oldest first, change points found in them, and the run
    to highlight (the run the report is about)."""

    key: SeriesKey
    unit: str
    better: str                      # higher | lower
    points: tuple[SeriesPoint, ...]
    changes: tuple[ChangePoint, ...] = ()
    highlight_run: str | None = None
    fingerprint: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
