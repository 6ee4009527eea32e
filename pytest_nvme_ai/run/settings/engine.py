"""How ZeRO-Inference cases share engines (measure/zero_inference/pool.py)."""
from __future__ import annotations

from pytest_nvme_ai.run.settings.base import Setting, boolean

ORDER = 35

SETTINGS = (
    # Default 0 until the whole test suite has run with 1 on main (the worker path has its own e2e tests).
    Setting("engine_reuse", "ZeRO-Inference: 1 keeps one worker per engine (model, dtype, quantization, "
            "offload, aio, pinning) across the cases that share it; 0 (default for now) runs every case in a "
            "fresh child.", boolean, False, metavar="1|0"),
)
