"""What an inference child reports about one case (child and pytest side alike): `InferenceRecord`.

The worker (or the one-shot child) builds it and sends `to_dict()`; the runner reads it back with
`from_dict()`. The pool adds how the worker was started (`worker_forked`, `fork_server_s`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from pytest_nvme_ai.measure.deepspeed.record import ChildRecord
from pytest_nvme_ai.measure.zero_inference.metrics import LoopMeasurement


@dataclass(frozen=True)
class InferenceRecord(ChildRecord):
    loops: tuple[LoopMeasurement, ...] = ()        # measured loops (one metric sample each)
    warmup: tuple[LoopMeasurement, ...] = ()
    swap_sync_seconds: float | None = None         # fsync of the swap files after the build
    # per parameter {name, numel, swapped}: which ones DeepSpeed put in the swap files (after init)
    param_residency: tuple[Mapping[str, Any], ...] = ()
    energy: Mapping[str, Any] = field(default_factory=dict, hash=False)  # the meter, and why a counter is missing
    # how the loops' device bytes were counted (devcount.DeviceCounter.describe()), or {"reason": why not};
    # empty when nothing was offloaded to NVMe
    device: Mapping[str, Any] = field(default_factory=dict, hash=False)
    build_device_write_bytes: int | None = None    # device bytes written while the engine was built (swap files)
    engine_reused: bool = False                    # this case found its engine built (persistent worker)
    engine_cases: int | None = None
    import_s: float | None = None                  # the worker's heavy imports paid by this case
    case_s: float | None = None
    worker_forked: bool | None = None              # set by the pool: forked from the fork server
    fork_server_s: float | None = None             # set by the pool: the fork server's imports waited for

    NESTED = {"loops": LoopMeasurement.from_dict, "warmup": LoopMeasurement.from_dict}
