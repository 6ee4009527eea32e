"""How ZeRO-Inference cases share engines (measure/zero_inference/pool.py)."""
from __future__ import annotations

from pytest_nvme_ai.run.settings.base import Setting, boolean

ORDER = 35

SETTINGS = (
    Setting("engine_reuse", "ZeRO-Inference: 1 (default) keeps one worker per engine (model, dtype, quantization, "
            "offload, aio, pinning) across the cases that share it; 0 runs every case in a fresh child.",
            boolean, True, metavar="1|0"),
)
