"""Per-step measurements of a training run and the catalog metrics derived from them.

Every measured step is one sample (the gate sees the spread):

    step_time          = forward + backward + optimizer step                     [s]
    train_throughput   = batch × seq_len / step_time                             [tokens/s]
    target_read_bytes  = /proc/self/io read_bytes over the step                  [B]
    target_write_bytes = /proc/self/io write_bytes over the step                 [B]
    target_read_bw     = target_read_bytes / step_time                           [B/s]
    target_write_bw    = target_write_bytes / step_time                          [B/s]
    loss               = the step's training loss (ungated: it says the run trained, not how fast)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Mapping

from pytest_nvme_ai.core.metrics import Metric

_MIN_SECONDS = 1e-10


@dataclass(frozen=True)
class StepMeasurement:
    """One training step, measured in the child."""

    step_time: float       # s
    loss: float
    read_bytes: int        # /proc/self/io delta over the step
    write_bytes: int
    peak_rss: int          # B, process high-water mark after the step
    # Block-layer bytes on the target's disk over the step, from the child's own accounting cgroup
    # (measure/deepspeed/devcount.py); None where no cgroup isolates the child (the record says why).
    device_read_bytes: int | None = None
    device_write_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StepMeasurement":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def step_metrics(steps: Iterable[StepMeasurement], *, tokens_per_step: int) -> dict[str, Metric]:
    """Catalog metrics with one sample per measured step; empty when there are none."""
    steps = list(steps)
    if not steps:
        return {}
    samples: dict[str, list[float]] = {
        "step_time": [s.step_time for s in steps],
        "train_throughput": [tokens_per_step / max(s.step_time, _MIN_SECONDS) for s in steps],
        "target_read_bytes": [float(s.read_bytes) for s in steps],
        "target_write_bytes": [float(s.write_bytes) for s in steps],
        "target_read_bw": [s.read_bytes / max(s.step_time, _MIN_SECONDS) for s in steps],
        "target_write_bw": [s.write_bytes / max(s.step_time, _MIN_SECONDS) for s in steps],
        "peak_rss": [float(s.peak_rss) for s in steps],
        "loss": [s.loss for s in steps],
    }
    if all(s.device_read_bytes is not None and s.device_write_bytes is not None for s in steps):
        samples["device_read_bytes"] = [float(s.device_read_bytes or 0) for s in steps]
        samples["device_write_bytes"] = [float(s.device_write_bytes or 0) for s in steps]
        if all(s.read_bytes > 0 for s in steps):
            samples["device_read_ratio"] = [(s.device_read_bytes or 0) / s.read_bytes for s in steps]
        # per step over the whole measured run: what the endurance projection divides by
        samples["write_bytes_per_step"] = [sum(s.device_write_bytes or 0 for s in steps) / len(steps)]
    return {name: Metric.of(name, values) for name, values in samples.items()}
