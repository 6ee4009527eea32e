"""DeepSpeed ZeRO-Infinity training steps: spec, DeepSpeed config, the child process and its runner.

Nothing here imports torch, DeepSpeed or transformers at module level; only the child process
(`python -m pytest_nvme_ai.measure.zero_infinity`) does.
"""
from __future__ import annotations

from pytest_nvme_ai.measure.zero_infinity.spec import SpecError, SpecNotApplicable, TrainingSpec

__all__ = ["SpecError", "SpecNotApplicable", "TrainingSpec"]
