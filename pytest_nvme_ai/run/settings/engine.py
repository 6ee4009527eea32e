"""How ZeRO-Inference cases share engines (measure/zero_inference/pool.py)."""
from __future__ import annotations

from pytest_nvme_ai.run.settings.base import Setting, boolean

ORDER = 35

SETTINGS = (
    # On by default: a model is built once per engine, not once per case (docs/engine.md). 0 keeps the
    # one-child-per-case path for comparison (benchmarks/zi_suite_share.py share) and for bisecting.
    Setting("engine_reuse", "ZeRO-Inference: 1 (default) keeps one worker per engine (model, dtype, quantization, "
            "offload, aio, pinning) across the cases that share it; 0 runs every case in a fresh child, "
            "in file order.", boolean, True, metavar="1|0"),
    # On by default where it is safe (CPU accelerator, no cgroup wrapper): each worker is forked from a
    # server that imported torch, DeepSpeed and transformers once (measure/deepspeed/forkserver.py).
    Setting("fork_workers", "ZeRO-Inference: 1 (default) forks each CPU worker from a server that has "
            "imported torch, DeepSpeed and transformers once per session; 0 starts every worker with its "
            "own imports (7-8 s each on a small VM).", boolean, True, metavar="1|0"),
)
