"""measure/deepspeed/endurance_use.py: a run's device writes against the drive's rating, recorded."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.measure.deepspeed.endurance_use import record_endurance
from pytest_nvme_ai.measure.deepspeed.options import RunnerOptions


class Rec:
    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}
        self.extra: dict[str, Any] = {}
        self.notes: list[str] = []

    def record(self, m: Metric) -> Metric:
        self.metrics[m.name] = m
        return m

    def set_extra(self, key: str, value: Any) -> None:
        self.extra[key] = value

    def note(self, text: str) -> None:
        self.notes.append(text)


def test_nothing_without_a_rating(tmp_path: Path) -> None:
    rec = Rec()
    assert record_endurance(rec, RunnerOptions(), tmp_path, 10, 1.0, 10) is None  # type: ignore[arg-type]
    assert rec.metrics == {} and rec.extra == {}


def test_tbw_gives_life_and_share(tmp_path: Path) -> None:
    rec = Rec()
    # 100 MB/s for a day is 8.64 TB: 600 TBW lasts 600 / 8.64 = 69.4 days; 2e9 B of 600e12 B used
    use = record_endurance(rec, RunnerOptions(rated_tbw=600), tmp_path, 10**9, 10.0, 2 * 10**9,  # type: ignore[arg-type]
                           prefix="nvme")
    assert use is not None and use.life_days == pytest.approx(600e12 / (1e8 * 86400))
    assert rec.metrics["nvme_endurance_life_days"].value == pytest.approx(69.44, rel=1e-3)
    assert rec.metrics["nvme_endurance_run_share"].value == pytest.approx(2e9 / 600e12)
    assert rec.extra["nvme_endurance"]["rated"] == "rated 600 TBW" and "69.4 days" in rec.notes[0]


def test_nothing_written_is_no_life_metric(tmp_path: Path) -> None:
    rec = Rec()
    record_endurance(rec, RunnerOptions(rated_tbw=600), tmp_path, 0, 10.0, 0)  # type: ignore[arg-type]
    assert "endurance_life_days" not in rec.metrics and rec.metrics["endurance_run_share"].value == 0
    assert "never" in rec.notes[0]


def test_dwpd_needs_the_capacity_of_the_disk(tmp_path: Path) -> None:
    rec = Rec()
    use = record_endurance(rec, RunnerOptions(rated_dwpd=1, warranty_years=5), tmp_path, 10**9, 10.0,  # type: ignore[arg-type]
                           10**9)
    if use is None:
        assert rec.notes and "capacity" in rec.notes[0]   # a tmpfs or unreadable disk: said, not guessed
    else:
        assert "DWPD" in use.rated.source
