"""DeepSpeed ZeRO-Inference runs: spec, DeepSpeed config, models, the child process and its runner.

Nothing here imports torch, DeepSpeed or transformers at module level; only the
child process (`python -m pytest_nvme_ai.measure.zero_inference`) does.
"""
from __future__ import annotations

from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec, SpecError, SpecNotApplicable

__all__ = ["InferenceSpec", "SpecError", "SpecNotApplicable"]
