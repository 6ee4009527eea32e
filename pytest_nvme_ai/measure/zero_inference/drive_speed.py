"""Drive-speed sweep: one NVMe-offloaded spec at read caps that are fractions of the drive's fio speed.

The suite (`suites/test_drive_speed.py`) and `benchmarks/roofline_accuracy.py` share this: per cap,
a fresh child runs inside a cgroup whose read bandwidth on the target's disk is capped
(`measure.throttle`), after fio in the same cgroup checked the cap. The prediction is out of sample:
t_compute from the resident-weights run, bytes per step and overlap from the uncapped (fraction 1)
point only; then each cap's throughput is predicted from its own fio figure.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

from pytest_nvme_ai.measure.bounds import bandwidth_gain, io_time, overlap_of, predict_throughput, relative_error

DOUBLING_RANGE = (2 ** 0.5, 2 ** 1.5)   # bandwidth ratios accepted as "a doubling" (normalised to 2×)
DRIFT_FLOOR = 0.5       # a 1× point whose fio figure is more than 50% below the drive's of seconds ago is refused
CAP_TOLERANCE = 0.10     # fio inside the cgroup must read within ±10% of the cap, or the point is refused


def cap_refusal(cap_bw: float, fio_bw: float, tolerance: float = CAP_TOLERANCE, fraction: float = 0.0) -> str | None:
    """Why a cap point is refused (fio in the cgroup not within ±tolerance of the cap), with both figures.

    The 1× point (fraction >= 1) caps at the drive's own speed measured just before, so only its upper
    side checks the throttle: fio reading less there means the drive drifted (this machine moves by 20%
    within minutes), not that the cap failed, and the point stands at the bandwidth fio read in the
    cgroup, which is what its t_io is computed from."""
    if cap_bw <= 0:
        return f"cap {cap_bw} B/s is not positive"
    off = fio_bw / cap_bw - 1
    if off > tolerance or (off < -tolerance and fraction < 1):
        return (f"fio in the capped cgroup read {fio_bw / 1e6:.1f} MB/s against a cap of {cap_bw / 1e6:.1f} MB/s "
                f"({off:+.0%}, outside ±{tolerance:.0%}): point refused")
    if off < -DRIFT_FLOOR:
        return (f"fio in the 1× cgroup read {fio_bw / 1e6:.1f} MB/s, {-off:.0%} below the {cap_bw / 1e6:.1f} MB/s "
                f"the drive gave seconds earlier: the drive is not what it was, point refused")
    return None


def drift_note(cap_bw: float, fio_bw: float, fraction: float, tolerance: float = CAP_TOLERANCE) -> str | None:
    """A note for an accepted 1× point whose fio figure fell below the drive's speed of seconds earlier."""
    off = fio_bw / cap_bw - 1 if cap_bw > 0 else 0.0
    if fraction >= 1 and off < -tolerance:
        return (f"cap 1: the drive drifted: fio read {fio_bw / 1e6:.1f} MB/s in the cgroup, {off:+.0%} from the "
                f"{cap_bw / 1e6:.1f} MB/s just before; the point stands at {fio_bw / 1e6:.1f} MB/s")
    return None


@dataclass(frozen=True)
class CapPoint:
    """One capped run (measured figures only; the prediction comes from `predict`)."""

    fraction: float                       # of the drive's uncapped fio bandwidth
    cap_bw: float                         # B/s written to the throttle
    fio_bw: float                         # B/s fio read inside the same cgroup just before the run
    refused: str | None = None            # why the point was not run or not used
    decode_throughput: tuple[float, ...] = ()   # tokens/s per measured loop
    bytes_per_step: float | None = None   # B read from the target per decode step (median over loops)
    t_step: float | None = None           # s per decode step (median over loops)
    predicted: float | None = None        # tokens/s, the two-bound model's out-of-sample prediction
    error: float | None = None            # (predicted - measured) / measured
    # "hidden" model: whatever else the uncapped step spends hides behind I/O once I/O is longer,
    # t_step' = max(t_io', uncapped t_step); shown next to the two-bound model, fitted on the same point
    predicted_hidden: float | None = None
    error_hidden: float | None = None

    @property
    def measured(self) -> float | None:
        return float(statistics.median(self.decode_throughput)) if self.decode_throughput else None

    @property
    def label(self) -> str:
        return f"cap{round(self.fraction * 100)}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "measured": self.measured}


def point_from_loops(fraction: float, cap_bw: float, fio_bw: float, loops: Sequence[Any], batch: int,
                     gen_len: int) -> CapPoint:
    """A cap point from the child's LoopMeasurements (decode throughput = batch·(gen−1)/decode latency)."""
    thr = tuple(batch * (gen_len - 1) / lp.decode_latency for lp in loops if lp.decode_latency > 0)
    per_step = [lp.decode_read_bytes_per_step for lp in loops if lp.decode_read_bytes_per_step is not None]
    steps = [lp.decode_latency / lp.decode_steps for lp in loops if lp.decode_steps]
    return CapPoint(fraction, cap_bw, fio_bw, decode_throughput=thr,
                    bytes_per_step=float(statistics.median(per_step)) if per_step else None,
                    t_step=float(statistics.median(steps)) if steps else None)


@dataclass(frozen=True)
class Sweep:
    points: tuple[CapPoint, ...]
    t_compute: float                  # s per decode step, resident weights
    tokens_per_step: int              # batch
    overlap: float | None             # from the uncapped point only
    bytes_per_step: float | None      # from the uncapped point only
    reason: str | None = None         # why there is no prediction

    @property
    def accepted(self) -> list[CapPoint]:
        return [p for p in self.points if p.refused is None and p.measured is not None]

    def sensitivity_measured(self) -> float | None:
        """Throughput gain from doubling the bandwidth, between the highest accepted cap and its half.

        Each cap is a fraction of fio's figure just before it, and the drive drifts between points, so
        the two points' bandwidths (fio's in each cgroup) need not be exactly 2× apart: the gain is
        normalised to one doubling, (thr_hi / thr_lo) ** (1 / log2(bw_hi / bw_lo)) - 1. Pairs whose
        bandwidths are not within a factor √2 of 2× apart are not a doubling and give no figure."""
        acc = sorted(self.accepted, key=lambda p: -p.fraction)
        for hi in acc:
            lo = next((p for p in acc if abs(p.fraction * 2 - hi.fraction) < 1e-9), None)
            if lo is None or not lo.measured or not hi.measured or lo.fio_bw <= 0 or hi.fio_bw <= 0:
                continue
            ratio = hi.fio_bw / lo.fio_bw
            if not DOUBLING_RANGE[0] <= ratio <= DOUBLING_RANGE[1]:
                continue
            return float((1.0 + bandwidth_gain(lo.measured, hi.measured)) ** (1.0 / math.log2(ratio)) - 1.0)
        return None

    def sensitivity_predicted_above(self) -> float | None:
        """Predicted gain from doubling the drive's own (uncapped) bandwidth, from the bounds."""
        top = next((p for p in self.points if p.fraction == 1.0 and p.refused is None), None)
        if top is None or self.overlap is None or not self.bytes_per_step:
            return None
        here = predict_throughput(self.tokens_per_step, self.bytes_per_step, top.fio_bw, self.t_compute, self.overlap)
        twice = predict_throughput(self.tokens_per_step, self.bytes_per_step, 2 * top.fio_bw, self.t_compute,
                                   self.overlap)
        return bandwidth_gain(here, twice)

    def errors(self) -> list[float]:
        return [abs(p.error) for p in self.points if p.error is not None and p.fraction != 1.0]

    def errors_hidden(self) -> list[float]:
        return [abs(p.error_hidden) for p in self.points if p.error_hidden is not None and p.fraction != 1.0]

    def curve(self) -> list[list[float]]:
        """[read bandwidth B/s, predicted tokens/s] around the drive's speed, for the report's chart."""
        top = next((p for p in self.points if p.fraction == 1.0 and p.refused is None), None)
        if top is None or self.overlap is None or not self.bytes_per_step:
            return []
        return [[f * top.fio_bw, predict_throughput(self.tokens_per_step, self.bytes_per_step, f * top.fio_bw,
                                                    self.t_compute, self.overlap)]
                for f in (0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)]

    def summary(self) -> dict[str, Any]:
        return {"points": [p.to_dict() for p in self.points], "t_compute": self.t_compute, "curve": self.curve(),
                "tokens_per_step": self.tokens_per_step, "overlap": self.overlap,
                "bytes_per_step": self.bytes_per_step, "reason": self.reason,
                "bandwidth_sensitivity": self.sensitivity_measured(),
                "bandwidth_sensitivity_predicted_above": self.sensitivity_predicted_above()}


def predict(points: Sequence[CapPoint], t_compute: float, tokens_per_step: int) -> Sweep:
    """Fit the overlap on the uncapped point (fraction 1) alone; predict every point from its fio figure."""
    top = next((p for p in points if p.fraction == 1.0 and p.refused is None and p.t_step and p.bytes_per_step),
               None)
    if top is None or not top.bytes_per_step or not top.t_step:
        return Sweep(tuple(points), t_compute, tokens_per_step, None, None,
                     "no uncapped (fraction 1) point was measured: no overlap to predict from")
    per_step = top.bytes_per_step
    overlap = overlap_of(io_time(per_step, top.fio_bw), t_compute, top.t_step)
    out = []
    for p in points:
        if p.refused is not None or p.measured is None:
            out.append(p)
            continue
        pred = predict_throughput(tokens_per_step, per_step, p.fio_bw, t_compute, overlap)
        hidden = tokens_per_step / max(io_time(per_step, p.fio_bw), top.t_step)
        out.append(replace(p, predicted=pred, error=relative_error(p.measured, pred), predicted_hidden=hidden,
                           error_hidden=relative_error(p.measured, hidden)))
    return Sweep(tuple(out), t_compute, tokens_per_step, overlap, per_step)
