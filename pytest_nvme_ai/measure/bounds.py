"""The two-bound (roofline) model of an offloaded inference step: I/O bound vs compute bound.

Pure arithmetic over measured figures (no torch, no pytest), documented in docs/roofline.md:

    t_io       = bytes read from the target per step / fio read bandwidth of that target   [s]
    t_compute  = the same step with the weights resident (offload none, or cpu where none does not fit)
    t_step     = the measured step of the offloaded run                                      [s]

    roofline_throughput     = tokens per step / max(t_io, t_compute)                         [tokens/s]
    read_bw_vs_fio          = t_io / t_step            (I/O utilization)
    accelerator_utilization = t_compute / t_step       (MLPerf Storage's AU)
    overlap                 = (t_io + t_compute - t_step) / min(t_io, t_compute), clipped to [0, 1]
                              (1: the shorter of the two is fully hidden behind the longer)

Shown, never recorded as metrics (functions of the above):
    roofline_efficiency = achieved / roofline = max(read_bw_vs_fio, accelerator_utilization)
    bound               = "io" if t_io >= t_compute else "compute"

Prediction at another read bandwidth (drive-speed emulation, benchmarks/roofline_accuracy.py):
    t_io'   = t_io * bw / bw'
    t_step' = t_io' + t_compute - overlap * min(t_io', t_compute)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Bound = Literal["io", "compute"]


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{name} must be positive, not {value!r}")
    return float(value)


def io_time(bytes_per_step: float, read_bw: float) -> float:
    """t_io: seconds one step needs to read its bytes at `read_bw` (B/s)."""
    if bytes_per_step < 0:
        raise ValueError(f"bytes per step cannot be negative ({bytes_per_step!r})")
    return float(bytes_per_step) / _positive("read bandwidth (B/s)", read_bw)


def overlap_of(t_io: float, t_compute: float, t_step: float) -> float:
    """Share of the shorter bound hidden behind the longer, clipped to [0, 1]."""
    shorter = min(t_io, t_compute)
    if shorter <= 0:
        return 1.0  # nothing to hide: a step with no I/O (or no compute) hides all of it trivially
    return min(max((t_io + t_compute - t_step) / shorter, 0.0), 1.0)


@dataclass(frozen=True)
class Bounds:
    """One step of an offloaded run against its two bounds (all times in seconds)."""

    tokens_per_step: float      # batch for a decode step; batch × prompt for a prefill
    t_io: float
    t_compute: float
    t_step: float

    def __post_init__(self) -> None:
        _positive("tokens per step", self.tokens_per_step)
        _positive("t_compute", self.t_compute)
        _positive("t_step", self.t_step)
        if self.t_io < 0:
            raise ValueError(f"t_io cannot be negative ({self.t_io!r})")

    @property
    def roofline_throughput(self) -> float:
        return self.tokens_per_step / max(self.t_io, self.t_compute)

    @property
    def achieved_throughput(self) -> float:
        return self.tokens_per_step / self.t_step

    @property
    def read_bw_vs_fio(self) -> float:
        return self.t_io / self.t_step

    @property
    def accelerator_utilization(self) -> float:
        return self.t_compute / self.t_step

    @property
    def overlap(self) -> float:
        return overlap_of(self.t_io, self.t_compute, self.t_step)

    @property
    def roofline_efficiency(self) -> float:
        """achieved / roofline; the same as max(read_bw_vs_fio, accelerator_utilization)."""
        return max(self.read_bw_vs_fio, self.accelerator_utilization)

    @property
    def bound(self) -> Bound:
        return "io" if self.t_io >= self.t_compute else "compute"


def predict_step(t_io: float, t_compute: float, overlap: float) -> float:
    """Step time from the two bounds and an overlap share (0: serial, 1: the shorter fully hidden)."""
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"overlap must be within [0, 1], not {overlap!r}")
    return t_io + t_compute - overlap * min(t_io, t_compute)


def predict_throughput(tokens_per_step: float, bytes_per_step: float, read_bw: float, t_compute: float,
                       overlap: float) -> float:
    """Tokens/s the model predicts at read bandwidth `read_bw` (B/s)."""
    step = predict_step(io_time(bytes_per_step, read_bw), _positive("t_compute", t_compute), overlap)
    return _positive("tokens per step", tokens_per_step) / step


def bandwidth_gain(throughput_low: float, throughput_high: float) -> float:
    """bandwidth_sensitivity: throughput at twice the bandwidth / throughput at the bandwidth, minus 1
    (0: doubling the drive's speed buys nothing; 1: throughput doubles with it)."""
    return _positive("throughput at the higher bandwidth", throughput_high) / \
        _positive("throughput at the lower bandwidth", throughput_low) - 1.0


def ridge_bandwidth(bytes_per_step: float, t_compute: float) -> float:
    """The read bandwidth (B/s) at which t_io == t_compute: above it the step is compute bound."""
    return float(bytes_per_step) / _positive("t_compute", t_compute)


def relative_error(measured: float, predicted: float) -> float:
    return (predicted - measured) / _positive("measured", measured)
