"""DeepSpeed ZeRO-Infinity training steps, on the DeepSpeed toolkit (measure/deepspeed/).

Nothing here imports torch, DeepSpeed or transformers at module level; only the child process
(`python -m pytest_nvme_ai.measure.zero_infinity`) does. Modules by the process they run in:

any process: spec.py, ds_config.py, metrics.py, record.py (TrainingRecord), bounds.py
pytest side: runner.py (the `zero_infinity` fixture)
child side:  remote.py (one training run), __main__.py
"""
from __future__ import annotations

from pytest_nvme_ai.measure.zero_infinity.spec import SpecError, SpecNotApplicable, TrainingSpec

__all__ = ["SpecError", "SpecNotApplicable", "TrainingSpec"]
