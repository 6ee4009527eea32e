"""What one ZeRO-Inference run is: model, shape, offload, quantization, aio.

An `InferenceSpec` is plain data (no torch): the suite builds it, the runner
validates it, writes it as JSON for the child process, and keeps it as an
artifact next to the result. `validate()` separates two kinds of refusal:

* `SpecError` – the spec is wrong (bad batch size, unknown model, fp16 on the
  CPU accelerator): the caller made a mistake, the test fails.
* `SpecNotApplicable` – the spec is fine but this machine cannot run it (KV-cache
  offload without CUDA): the suite skips with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, Mapping

from pytest_nvme_ai.measure.deepspeed.spec_base import SpecJson, check_choice, check_positive, safe_label
from pytest_nvme_ai.measure.deepspeed.errors import FP16_CPU_REASON, SpecError, SpecNotApplicable
from pytest_nvme_ai.measure.deepspeed.models import resolve_model

Dtype = Literal["auto", "fp16", "bf16"]
Offload = Literal["none", "cpu", "nvme"]

DTYPES = ("auto", "fp16", "bf16")
OFFLOADS = ("none", "cpu", "nvme")
QUANT_BITS = (None, 4, 8)
# Test-only hooks the child obeys before any heavy import (so tests of timeouts and kills are fast).
TEST_HOOKS = ("sleep", "memory_error", "sigkill", "crash")

KV_OFFLOAD_CPU_REASON = ("KV-cache offload needs CUDA (transformers' offloaded cache asserts CUDA); "
                         "not applicable on the CPU accelerator")


@dataclass(frozen=True)
class InferenceSpec(SpecJson):
    model: str = "opt-tiny"                  # a shipped config name (models.shipped_models()) or a local directory
    dtype: Dtype = "auto"
    batch_size: int = 1
    prompt_len: int = 512
    gen_len: int = 32
    offload: Offload = "nvme"
    quant_bits: int | None = None            # None = 16-bit weights; 4 (seed) or 8
    quant_group_size: int = 64
    kv_offload: bool = False
    pin_memory: bool = False
    # The DeepSpeed `aio` block (already in the installed version's key names), None = DeepSpeed's defaults.
    # Not hashed: a dict field; specs are compared, never used as dict keys.
    aio: Mapping[str, Any] | None = field(default=None, hash=False)
    buffer_count: int = 5
    buffer_size: int | None = None           # elements (not bytes); None = computed from the largest parameter
    loops: int = 3
    warmup: int = 1
    seed: int = 1234
    test_hook: str | None = None             # test-only: "sleep:SECONDS", "memory_error", "sigkill", "crash"

    # ---- derived -----------------------------------------------------------------------------
    def resolved_dtype(self, accelerator: str) -> str:
        """bf16 on the CPU accelerator (DeepSpeed has no fp16 there), fp16 on CUDA as run_model.py uses."""
        if self.dtype != "auto":
            return self.dtype
        return "fp16" if accelerator == "cuda" else "bf16"

    @property
    def id(self) -> str:
        """Short, path- and id-safe name: opt-tiny-bs1-p32-g8-nvme-q4-kv."""
        parts = [safe_label(self.model_label), f"bs{self.batch_size}", f"p{self.prompt_len}", f"g{self.gen_len}",
                 self.offload, f"q{self.quant_bits}" if self.quant_bits else "q16"]
        if self.kv_offload:
            parts.append("kv")
        if self.dtype != "auto":
            parts.append(self.dtype)
        return "-".join(parts)

    @property
    def model_label(self) -> str:
        """The model as reported: the shipped name, or a local path's last component."""
        return self.model.rstrip("/").rsplit("/", 1)[-1] or self.model

    def params(self, accelerator: str) -> dict[str, Any]:
        """What the result's `params` show about this run (the report's columns)."""
        return {"model": self.model_label, "batch_size": self.batch_size, "offload": self.offload,
                "quant_bits": self.quant_bits or 16, "kv_offload": self.kv_offload,
                "prompt_len": self.prompt_len, "gen_len": self.gen_len,
                "dtype": self.resolved_dtype(accelerator), "accelerator": accelerator,
                # configuration that moves the figures: a baseline made with other settings is not comparable
                "aio": dict(self.aio) if self.aio else "deepspeed-default", "pin_memory": self.pin_memory,
                "loops": self.loops, "warmup": self.warmup}

    def with_(self, **changes: Any) -> "InferenceSpec":
        return replace(self, **changes)

    # ---- validation --------------------------------------------------------------------------
    def validate(self, accelerator: str = "cpu") -> None:
        """Raise SpecError naming the bad field and what is accepted; SpecNotApplicable for a skip."""
        check_positive("batch_size", self.batch_size)
        check_positive("prompt_len", self.prompt_len)
        check_positive("gen_len", self.gen_len)
        check_positive("loops", self.loops)
        check_positive("buffer_count", self.buffer_count)
        check_positive("quant_group_size", self.quant_group_size)
        if not isinstance(self.warmup, int) or isinstance(self.warmup, bool) or self.warmup < 0:
            raise SpecError(f"warmup must be an integer >= 0, not {self.warmup!r}")
        if self.buffer_size is not None:
            check_positive("buffer_size", self.buffer_size)
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("offload", self.offload, OFFLOADS)
        check_choice("quant_bits", self.quant_bits, QUANT_BITS)
        if self.aio is not None and not isinstance(self.aio, Mapping):
            raise SpecError(f"aio must be a mapping (a DeepSpeed aio block) or None, not {type(self.aio).__name__}")
        if self.test_hook is not None and self.test_hook.split(":", 1)[0] not in TEST_HOOKS:
            raise SpecError(f"test_hook {self.test_hook!r} is not one of {', '.join(TEST_HOOKS)}")
        info = resolve_model(self.model)  # raises UnknownModel (a SpecError) listing the shipped ones
        if self.prompt_len + self.gen_len > info.max_position:
            raise SpecError(f"prompt_len + gen_len = {self.prompt_len + self.gen_len} exceeds {info.name}'s "
                            f"max_position_embeddings {info.max_position}")
        if accelerator != "cuda" and self.dtype == "fp16":
            raise SpecError(FP16_CPU_REASON)
        if accelerator != "cuda" and self.kv_offload:
            raise SpecNotApplicable(KV_OFFLOAD_CPU_REASON)
