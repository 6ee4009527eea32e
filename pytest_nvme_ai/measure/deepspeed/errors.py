"""Errors of a DeepSpeed workload spec (any process), in their own module so that `spec` and `models` can both raise them
without importing each other both ways."""
from __future__ import annotations


class SpecError(ValueError):
    """The spec itself is invalid."""


class SpecNotApplicable(SpecError):
    """The spec is valid but cannot run on this accelerator (a skip, not a failure)."""


FP16_CPU_REASON = ("fp16 is not supported by DeepSpeed on the CPU accelerator; use dtype 'bf16' "
                   "(or 'auto', which picks bf16 on CPU and fp16 on CUDA)")
