"""The report's trend section from Trend records (no store): change points marked, this run highlighted,
inline SVG only."""
from __future__ import annotations

import random
import re

from pytest_nvme_ai.core.history_types import SeriesKey, SeriesPoint, Trend
from pytest_nvme_ai.history.changes import find_changes
from pytest_nvme_ai.report.trends import trend_section


def _trend(n: int = 30, step_at: int = 18, highlight: str = "r29") -> Trend:
    rng = random.Random(3)
    pts = []
    for i in range(n):
        v = (1.2e9 if i < step_at else 0.96e9) * (1 + rng.gauss(0, 0.01))
        pts.append(SeriesPoint(f"r{i}", f"2026-11-{1 + i // 24:02d}T{i % 24:02d}:00:00+00:00", v,
                               (v * 0.99, v, v * 1.01)))
    return Trend(SeriesKey("suites/test_seq_read.py::test_seq_read[bs1M-qd16-j1]", "bw", "vda", "vm"), "B/s",
                 "higher", tuple(pts), tuple(find_changes(pts)), highlight_run=highlight, fingerprint="virtio-vda-ext4")


def test_trend_section_marks_the_change_and_this_run() -> None:
    sec = trend_section([_trend()])
    assert sec.id == "trends" and len(sec.charts) == 1 and not sec.charts[0].error
    svg = sec.charts[0].svg
    assert svg.startswith("<svg") and "<script" not in svg and not re.search(r'(src|href)="(https?:)?//', svg)
    assert "this run" in svg and "-20%" in svg           # the ring's label and the change point's step
    [table] = sec.tables
    [row] = table.rows
    assert [c.text for c in row[2:4]] == ["r17", "r18"] and row[6].text.startswith("-20.")


def test_many_trends_are_split_into_charts_of_six() -> None:
    sec = trend_section([_trend(n=4, step_at=99, highlight="none")] * 8)
    assert len(sec.charts) == 2 and not sec.tables     # four points: no change point is claimed
    assert all("this run" not in c.svg for c in sec.charts)
