"""Pairing: how close an NVMe-offloaded ZeRO-Inference run comes to what the drive allows.

With the weights offloaded, every decode step must stream them from the
target once, and produces `batch` tokens (one per sequence). So the drive
alone bounds decode throughput:

    decode_ceiling  = batch × fio_bw / bytes_per_step            [tokens/s]

    with  batch          sequences decoded together (tokens per step)
          fio_bw         fio's sequential read bandwidth on the same target [B/s]
          bytes_per_step bytes read from the target per decode step [B]

    io_efficiency   = achieved decode throughput / decode_ceiling  [ratio]

    read_bw_vs_fio  = effective read bandwidth during the run / fio_bw, where the
                      effective bandwidth is, by preference,
                      decode bytes / decode latency
                        (bytes_per_step × decode_steps / decode_latency: the
                         I/O-bound phase alone), else
                      target_read_bytes / total_latency (whole run).

Worked example (illustrative numbers, shaped like the published OPT-66B run:
batch 64 on a 5.6 GB/s SSD, 8.08 tokens/s; the bytes per step are assumed, not
published): batch 64, fio 5.6 GB/s and 30 GB read per step give a ceiling of
64 × 5.6e9 / 30e9 = 11.95 tokens/s; 8.08 tokens/s is then an efficiency of 0.676.

An efficiency near 1 means the run is I/O-bound and the drive is the limit; far
below 1, something else is (compute, PCIe, the aio settings, prefetching).
These are pure functions over numbers; `pair` and `record_io_efficiency` read
them from a ZeRO-Inference result.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from pytest_nvme_ai.measure.fio.runner import BEST_FIO_BW

if TYPE_CHECKING:
    from pytest_nvme_ai.core.recorder import Recorder


def decode_ceiling(batch_size: float, fio_bw: float, bytes_per_step: float) -> float:
    """I/O-bound ceiling of decode throughput in tokens/s (formula in the module docstring)."""
    if batch_size <= 0:
        raise ValueError(f"batch size {batch_size} must be positive")
    if fio_bw <= 0:
        raise ValueError(f"fio bandwidth {fio_bw} B/s must be positive")
    if bytes_per_step <= 0:
        raise ValueError(f"bytes read per decode step is {bytes_per_step}: nothing is read from the target "
                         "while decoding, so the drive sets no ceiling (weights not offloaded to it?)")
    return batch_size * fio_bw / bytes_per_step


def io_efficiency(achieved: float, ceiling: float) -> float:
    """Achieved decode throughput / I/O-bound ceiling."""
    if ceiling <= 0:
        raise ValueError(f"ceiling {ceiling} tokens/s must be positive")
    if achieved < 0:
        raise ValueError(f"achieved throughput {achieved} tokens/s cannot be negative")
    return achieved / ceiling


def effective_read_bw(read_bytes: float, seconds: float) -> float:
    if seconds <= 0:
        raise ValueError(f"duration {seconds} s must be positive")
    if read_bytes < 0:
        raise ValueError(f"bytes read {read_bytes} cannot be negative")
    return read_bytes / seconds


@dataclass(frozen=True)
class Pairing:
    """One ZeRO-Inference result set against fio on the same target. None fields come with a `reason`."""

    batch_size: float
    fio_bw: float                     # B/s
    bytes_per_step: float | None      # B
    achieved: tuple[float, ...]       # decode throughput per loop, tokens/s
    ceiling: float | None             # tokens/s
    efficiency: tuple[float, ...]     # per loop
    read_bw: tuple[float, ...]        # effective read bandwidth per loop, B/s
    read_bw_basis: str | None         # "decode bytes / decode latency" | "target_read_bytes / total_latency"
    read_bw_vs_fio: tuple[float, ...]
    reason: str | None = None         # why a figure is missing

    @property
    def efficiency_value(self) -> float | None:
        return statistics.median(self.efficiency) if self.efficiency else None


# ---- reading a ZeRO-Inference result -------------------------------------------------------------
# Two shapes carry the same figures: the runner's InferenceResult (spec.batch_size, properties
# decode_read_bytes_per_step and decode_steps, metrics as Metric objects) and its results.json test entry
# (params.batch_size, extra.decode_read_bytes_per_step / decode_steps, metrics as dicts). Both are read.

def _section(result: Any, name: str) -> Mapping[str, Any]:
    sec = result.get(name) if isinstance(result, Mapping) else getattr(result, name, None)
    return sec or {}


def _samples(value: Any) -> tuple[float, ...]:
    if value is None:
        return ()
    if hasattr(value, "samples"):
        return tuple(float(s) for s in value.samples)
    if isinstance(value, Mapping):
        return tuple(float(s) for s in (value.get("samples") or [value["value"]]))
    if isinstance(value, (list, tuple)):
        return tuple(float(s) for s in value)
    return (float(value),)


def _metric(result: Any, name: str) -> tuple[float, ...]:
    return _samples(_section(result, "metrics").get(name))


def _scalar(result: Any, section: str, name: str) -> float | None:
    v = _section(result, section).get(name)
    if v is not None:
        return float(v)
    for holder in (result, getattr(result, "spec", None)):  # the runner's object: attribute or spec field
        if holder is None or isinstance(holder, Mapping):
            continue
        v = getattr(holder, name, None)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def _per_loop(a: tuple[float, ...], b: tuple[float, ...]) -> list[tuple[float, float]]:
    """Pair samples loop by loop; a single value on one side pairs with each sample of the other."""
    if len(a) == len(b):
        return list(zip(a, b, strict=True))
    if len(a) == 1:
        return [(a[0], y) for y in b]
    if len(b) == 1:
        return [(x, b[0]) for x in a]
    return [(statistics.median(a), statistics.median(b))]


def _read_bw(result: Any, bytes_per_step: float | None) -> tuple[tuple[float, ...], str | None]:
    steps = _scalar(result, "extra", "decode_steps")
    decode_lat = _metric(result, "decode_latency")
    if bytes_per_step and steps and decode_lat and all(t > 0 for t in decode_lat):
        return tuple(bytes_per_step * steps / t for t in decode_lat), "decode bytes / decode latency"
    read_bytes, total = _metric(result, "target_read_bytes"), _metric(result, "total_latency")
    if read_bytes and total and all(t > 0 for t in total):
        return tuple(effective_read_bw(b, t) for b, t in _per_loop(read_bytes, total)), \
            "target_read_bytes / total_latency"
    return (), None


def pair(result: Any, fio_bw: float) -> Pairing:
    """Ceiling, efficiency and read-bandwidth ratio of one ZeRO-Inference result against `fio_bw` (B/s)."""
    if fio_bw <= 0:
        raise ValueError(f"fio bandwidth {fio_bw} B/s must be positive")
    batch = _scalar(result, "params", "batch_size")
    if batch is None or batch <= 0:
        raise ValueError(f"the result has no positive params['batch_size'] ({batch!r}): cannot pair it")
    per_step = _scalar(result, "extra", "decode_read_bytes_per_step")
    achieved = _metric(result, "decode_throughput")
    read_bw, basis = _read_bw(result, per_step)
    reasons: list[str] = []
    ceiling = None
    try:
        ceiling = decode_ceiling(batch, fio_bw, per_step if per_step is not None else 0.0)
    except ValueError as exc:
        reasons.append(str(exc) if per_step is not None else
                       "no decode_read_bytes_per_step in the result: no I/O ceiling")
    if ceiling is not None and not achieved:
        reasons.append("no decode_throughput in the result: no efficiency")
    if not read_bw:
        reasons.append("neither decode bytes + decode_latency nor target_read_bytes + total_latency: "
                       "no effective read bandwidth")
    return Pairing(
        batch_size=batch, fio_bw=fio_bw, bytes_per_step=per_step, achieved=achieved, ceiling=ceiling,
        efficiency=tuple(io_efficiency(a, ceiling) for a in achieved) if ceiling else (),
        read_bw=read_bw, read_bw_basis=basis, read_bw_vs_fio=tuple(b / fio_bw for b in read_bw),
        reason="; ".join(reasons) or None,
    )


def record_io_efficiency(recorder: "Recorder", result: Any, fio_bw: float | None = None) -> Pairing | None:
    """Record `decode_ceiling`, `io_efficiency` and `read_bw_vs_fio` into the calling test.

    `fio_bw` defaults to the fio suite's figure for the same target this session
    (the session cache's `BEST_FIO_BW` for the target); without one, nothing is recorded and a
    note says why. Returns the pairing (None when there was no fio figure).
    """
    if fio_bw is None:
        target = recorder.target
        fio_bw = recorder.session_cache.get(BEST_FIO_BW, target.label) if target is not None else None
    if not fio_bw:
        recorder.note("io_efficiency not recorded: no fio bandwidth for this target in this session "
                      "(run the fio suite first, e.g. pytest suites/test_seq_read.py suites/...)")
        return None
    p = pair(result, float(fio_bw))
    if p.ceiling is not None:
        recorder.record_samples("decode_ceiling", [p.ceiling])
    if p.efficiency:
        recorder.record_samples("io_efficiency", p.efficiency)
    if p.read_bw_vs_fio:
        recorder.record_samples("read_bw_vs_fio", p.read_bw_vs_fio)
    recorder.set_extra("io_pairing", {"fio_bw": p.fio_bw, "batch_size": p.batch_size,
                                      "bytes_per_step": p.bytes_per_step, "read_bw_basis": p.read_bw_basis,
                                      "reason": p.reason})
    if p.reason:
        recorder.note(f"io pairing: {p.reason}")
    return p
