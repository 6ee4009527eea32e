"""DeepSpeed ZeRO-Inference runs, on the DeepSpeed toolkit (measure/deepspeed/).

Nothing here imports torch, DeepSpeed or transformers at module level; only the child processes
(`python -m pytest_nvme_ai.measure.zero_inference`, one case; `...zero_inference.remote_worker`,
a persistent worker) do. Modules by the process they run in:

any process: spec.py, ds_config.py, metrics.py, record.py (InferenceRecord), pairing.py, drive_speed.py
pytest side: runner.py (the `zero_inference` fixture), dispatch.py (a case sent to its engine's worker),
             pool.py (the engine pool), progress.py
child side:  remote.py (how a child measures), remote_worker.py (the worker loop, the one-shot main),
             __main__.py
"""
from __future__ import annotations

from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec, SpecError, SpecNotApplicable

__all__ = ["InferenceSpec", "SpecError", "SpecNotApplicable"]
