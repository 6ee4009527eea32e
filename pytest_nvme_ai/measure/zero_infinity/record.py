"""What a training child reports about one run (child and pytest side alike): `TrainingRecord`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from pytest_nvme_ai.measure.deepspeed.record import ChildRecord
from pytest_nvme_ai.measure.zero_infinity.metrics import StepMeasurement


@dataclass(frozen=True)
class TrainingRecord(ChildRecord):
    steps: tuple[StepMeasurement, ...] = ()        # measured steps (one metric sample each)
    warmup: tuple[StepMeasurement, ...] = ()
    init_write_bytes: int | None = None
    optimizer: str | None = None                   # the engine's optimizer class
    basic_optimizer: str | None = None             # the optimizer it wraps (DeepSpeedCPUAdam when offloaded)
    # how the steps' device bytes were counted (devcount.DeviceCounter.describe()), or {"reason": why not}
    device: Mapping[str, Any] = field(default_factory=dict, hash=False)
    init_device_write_bytes: int | None = None     # device bytes written while the engine was built (swap files)

    NESTED = {"steps": StepMeasurement.from_dict, "warmup": StepMeasurement.from_dict}
