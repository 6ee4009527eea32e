"""The KV cache on the drive: LMCache's disk tier measured as storage (spec, child, runner).

Nothing here imports torch or LMCache at module level; only the child process
(`python -m pytest_nvme_ai.measure.kv_cache`, in the KV environment) does.
"""
from __future__ import annotations

from pytest_nvme_ai.measure.kv_cache.spec import KvSpec, SpecError

__all__ = ["KvSpec", "SpecError"]
