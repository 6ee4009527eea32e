"""The I/O bound of a ZeRO-Infinity training step, from fio's read and write bandwidth on the same target.

A step with parameters and optimizer states offloaded must read what it swaps in and write what it
swaps out; the drive alone bounds it from below:

    step_io_bound    = read_bytes / fio_read_bw + write_bytes / fio_write_bw        [s]
    step_io_fraction = step_io_bound / step_time                                    [ratio]

    with  read_bytes, write_bytes   the step's bytes read from / written to the target
                                    (/proc/self/io over the step)                        [B]
          fio_read_bw, fio_write_bw fio's sequential direct-I/O read / write bandwidth
                                    on the same target in this session                   [B/s]
          step_time                 the measured step                                    [s]

Reads and writes are added, not overlapped: one drive serves both, and DeepSpeed's optimizer
swapper alternates them per sub-group (pipeline_read/pipeline_write overlap them with *compute*,
not with each other). A fraction near 1 means the step is I/O-bound and a faster drive makes it
faster; far below 1, compute (the CPU Adam op, forward/backward) is the limit.

Worked example (the build VM, REFERENCE.md): 1.08 GB read and 1.08 GB written per step, fio
read 1.2 GB/s and write 1.0 GB/s give 0.90 + 1.08 = 1.98 s; against a 1.56 s step that is more than
1: then the drive did better than fio's figure (page cache, burst credits) and the bound says so.

Pure arithmetic, on the roofline's `io_time` (measure/bounds.py: bytes / bandwidth), applied to each direction.
"""
from __future__ import annotations

from dataclasses import dataclass

from pytest_nvme_ai.measure.bounds import io_time


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{name} must be positive, not {value!r}")
    return float(value)


def step_io_bound(read_bytes: float, write_bytes: float, read_bw: float, write_bw: float) -> float:
    """Seconds one step needs for its reads and writes at fio's bandwidths (formula above)."""
    if read_bytes < 0 or write_bytes < 0:
        raise ValueError(f"bytes per step cannot be negative (read {read_bytes!r}, written {write_bytes!r})")
    # A direction with no bytes costs nothing, whatever fio says (a CPU-offloaded run writes nothing).
    t_read = io_time(read_bytes, read_bw) if read_bytes else 0.0
    if write_bytes and not write_bw > 0:
        raise ValueError(f"fio write bandwidth (B/s) must be positive, not {write_bw!r}")
    return t_read + (io_time(write_bytes, write_bw) if write_bytes else 0.0)


@dataclass(frozen=True)
class StepBound:
    """One measured step against the drive's bound."""

    read_bytes: float
    write_bytes: float
    read_bw: float
    write_bw: float
    step_time: float

    @property
    def io_time(self) -> float:
        return step_io_bound(self.read_bytes, self.write_bytes, self.read_bw, self.write_bw)

    @property
    def fraction(self) -> float:
        """step_io_bound / step_time: near 1 the drive is the limit."""
        return self.io_time / _positive("step time (s)", self.step_time)
