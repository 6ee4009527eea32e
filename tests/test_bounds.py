"""measure/bounds.py: the two-bound model, worked by hand (the numbers of docs/roofline.md)."""
from __future__ import annotations

import pytest

from pytest_nvme_ai.measure.bounds import (Bounds, bandwidth_gain, io_time, overlap_of, predict_step,
                                           predict_throughput, relative_error, ridge_bandwidth)

MB = 1e6


def test_worked_example_of_the_docs() -> None:
    # opt-125m-like decode step: 250 MB per step from a 1.25 GB/s drive -> t_io 0.2 s;
    # resident weights take 0.15 s per step; the offloaded step measured 0.25 s; batch 2.
    t_io = io_time(250 * MB, 1.25e9)
    assert t_io == pytest.approx(0.2)
    b = Bounds(tokens_per_step=2, t_io=t_io, t_compute=0.15, t_step=0.25)
    assert b.roofline_throughput == pytest.approx(2 / 0.2) == pytest.approx(10.0)
    assert b.achieved_throughput == pytest.approx(8.0)
    assert b.read_bw_vs_fio == pytest.approx(0.8)
    assert b.accelerator_utilization == pytest.approx(0.6)
    # (0.2 + 0.15 - 0.25) / min(0.2, 0.15) = 0.1 / 0.15
    assert b.overlap == pytest.approx(2 / 3)
    assert b.roofline_efficiency == pytest.approx(0.8) == pytest.approx(b.achieved_throughput / b.roofline_throughput)
    assert b.bound == "io"
    # the model reproduces the measured step from its own overlap ...
    assert predict_step(b.t_io, b.t_compute, b.overlap) == pytest.approx(0.25)
    # ... and predicts half the bandwidth: t_io 0.4, step 0.4 + 0.15 - 2/3 * 0.15 = 0.45 s
    assert predict_throughput(2, 250 * MB, 0.625e9, 0.15, b.overlap) == pytest.approx(2 / 0.45)
    assert ridge_bandwidth(250 * MB, 0.15) == pytest.approx(250 * MB / 0.15)


def test_overlap_is_clipped_and_serial_steps_show_zero() -> None:
    assert overlap_of(0.2, 0.15, 0.35) == 0.0          # t_step = t_io + t_compute: nothing hidden
    assert overlap_of(0.2, 0.15, 0.40) == 0.0          # slower than serial (contention): clipped
    assert overlap_of(0.2, 0.15, 0.20) == pytest.approx(1.0)         # compute fully hidden behind I/O
    assert overlap_of(0.2, 0.15, 0.10) == 1.0          # faster than the longer bound: clipped
    assert overlap_of(0.0, 0.15, 0.15) == 1.0          # no I/O at all: nothing to hide


def test_compute_bound_step() -> None:
    b = Bounds(tokens_per_step=1, t_io=0.05, t_compute=0.2, t_step=0.22)
    assert b.bound == "compute" and b.roofline_throughput == pytest.approx(5.0)
    assert b.roofline_efficiency == pytest.approx(b.accelerator_utilization)


def test_bandwidth_gain_and_error() -> None:
    assert bandwidth_gain(4.0, 6.0) == pytest.approx(0.5)
    assert bandwidth_gain(4.0, 4.0) == 0.0
    assert relative_error(10.0, 10.5) == pytest.approx(0.05)


@pytest.mark.parametrize("kwargs", [dict(tokens_per_step=0, t_io=1, t_compute=1, t_step=1),
                                    dict(tokens_per_step=1, t_io=-1, t_compute=1, t_step=1),
                                    dict(tokens_per_step=1, t_io=1, t_compute=0, t_step=1),
                                    dict(tokens_per_step=1, t_io=1, t_compute=1, t_step=0)])
def test_bounds_reject_impossible_inputs(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Bounds(**kwargs)


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="read bandwidth"):
        io_time(1.0, 0.0)
    with pytest.raises(ValueError, match="overlap"):
        predict_step(0.1, 0.1, 1.5)
