"""Cold model load: a model's weights written as safetensors to the target, evicted from the page cache,
then loaded by each loader (safetensors, transformers from_pretrained, fastsafetensors, DeepSpeed aio) in
a child process per load, verified tensor for tensor, next to fio reading the same file.

Nothing here imports torch, DeepSpeed or transformers at module level; only the child process
(`python -m pytest_nvme_ai.measure.model_load`) does.
"""
from __future__ import annotations

from pytest_nvme_ai.measure.model_load.spec import LOADERS, AioLoadSettings, LoadResult, LoadSpec, WriteSpec

__all__ = ["LOADERS", "AioLoadSettings", "LoadResult", "LoadSpec", "WriteSpec"]
