"""What one ZeRO-Infinity training run is: model shape, batch, where parameters and optimizer states live.

A `TrainingSpec` is plain data (no torch), like `InferenceSpec`: the suite builds it, the runner
validates it, writes it as JSON for the child and keeps it as an artifact. Refusals are the
inference spec's two kinds (`SpecError`: the spec is wrong; `SpecNotApplicable`: this machine
cannot run it, a skip).

Every run trains on one fixed synthetic batch (token ids drawn from `seed`), so the loss must fall
step after step: a run whose loss does not fall did not train, whatever its step time says.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, Mapping

from pytest_nvme_ai.measure.deepspeed.spec_base import SpecJson, check_choice, check_positive, safe_label
from pytest_nvme_ai.measure.deepspeed.errors import FP16_CPU_REASON, SpecError, SpecNotApplicable
from pytest_nvme_ai.measure.deepspeed.models import ModelInfo, resolve_model

Dtype = Literal["auto", "fp16", "bf16"]
Offload = Literal["none", "cpu", "nvme"]

DTYPES = ("auto", "fp16", "bf16")
OFFLOADS = ("none", "cpu", "nvme")
# Test-only hooks the child obeys before any heavy import (tests of timeouts and kills stay fast).
# "hang_after_init" waits once the swap files exist: the test of cleanup after a killed child.
TEST_HOOKS = ("sleep", "memory_error", "sigkill", "crash", "hang_after_init")

__all__ = ["SpecError", "SpecNotApplicable", "TrainingSpec", "model_info"]


@dataclass(frozen=True)
class TrainingSpec(SpecJson):
    model: str = "opt-125m"                # a shipped OPT config name (deepspeed.models) or a local directory
    num_layers: int | None = None          # override the config's layer count (a CI-sized slice of a real shape)
    dtype: Dtype = "auto"
    batch_size: int = 2
    seq_len: int = 64
    offload_param: Offload = "nvme"
    offload_optimizer: Offload = "nvme"
    pipeline_read: bool = False            # optimizer swap: overlap the read of the next sub-group with compute
    pipeline_write: bool = False           # ... and the write of the previous one
    pin_memory: bool = False
    # The DeepSpeed `aio` block (in the installed version's key names); None = DeepSpeed's defaults.
    aio: Mapping[str, Any] | None = field(default=None, hash=False)
    sub_group_size: int = 10_000_000       # elements per optimizer sub-group: the unit the optimizer swaps
    lr: float = 1e-3
    steps: int = 3                         # measured steps (one metric sample each)
    warmup: int = 1                        # steps before the clock (the first step allocates swap buffers)
    seed: int = 1234
    test_hook: str | None = None           # test-only: see TEST_HOOKS

    # ---- derived -----------------------------------------------------------------------------
    def resolved_dtype(self, accelerator: str) -> str:
        """bf16 on the CPU accelerator (DeepSpeed has no fp16 there), fp16 on CUDA."""
        if self.dtype != "auto":
            return self.dtype
        return "fp16" if accelerator == "cuda" else "bf16"

    @property
    def offloads_to_target(self) -> bool:
        return "nvme" in (self.offload_param, self.offload_optimizer)

    @property
    def offload_label(self) -> str:
        """'nvme' / 'cpu' / 'none' when both agree, else 'param-nvme+optim-cpu'."""
        if self.offload_param == self.offload_optimizer:
            return self.offload_param
        return f"param-{self.offload_param}+optim-{self.offload_optimizer}"

    @property
    def model_label(self) -> str:
        base = self.model.rstrip("/").rsplit("/", 1)[-1] or self.model
        return f"{base}-l{self.num_layers}" if self.num_layers else base

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def id(self) -> str:
        """Short, path- and id-safe name: opt-125m-l4-bs2-s64-nvme-pr-pw."""
        parts = [safe_label(self.model_label), f"bs{self.batch_size}", f"s{self.seq_len}", safe_label(self.offload_label)]
        if self.pipeline_read:
            parts.append("pr")
        if self.pipeline_write:
            parts.append("pw")
        if self.dtype != "auto":
            parts.append(self.dtype)
        return "-".join(parts)

    def params(self, accelerator: str) -> dict[str, Any]:
        """What the result's `params` show (the report's columns); settings that move the figures are here,
        so a baseline made with other settings is not comparable."""
        return {"model": self.model_label, "batch_size": self.batch_size, "seq_len": self.seq_len,
                "offload": self.offload_label, "offload_param": self.offload_param,
                "offload_optimizer": self.offload_optimizer, "pipeline_read": self.pipeline_read,
                "pipeline_write": self.pipeline_write, "dtype": self.resolved_dtype(accelerator),
                "accelerator": accelerator, "aio": dict(self.aio) if self.aio else "deepspeed-default",
                "pin_memory": self.pin_memory, "sub_group_size": self.sub_group_size, "lr": self.lr,
                "steps": self.steps, "warmup": self.warmup}

    def with_(self, **changes: Any) -> "TrainingSpec":
        return replace(self, **changes)

    # ---- validation --------------------------------------------------------------------------
    def validate(self, accelerator: str = "cpu") -> None:
        """Raise SpecError naming the bad field and what is accepted; SpecNotApplicable for a skip."""
        for name in ("batch_size", "seq_len", "steps", "sub_group_size"):
            check_positive(name, getattr(self, name))
        if self.num_layers is not None:
            check_positive("num_layers", self.num_layers)
        if not isinstance(self.warmup, int) or isinstance(self.warmup, bool) or self.warmup < 0:
            raise SpecError(f"warmup must be an integer >= 0, not {self.warmup!r}")
        if self.steps + self.warmup < 2:
            raise SpecError("steps + warmup must be at least 2: a falling loss needs two steps to compare")
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or not self.lr > 0:
            raise SpecError(f"lr must be a positive number, not {self.lr!r}")
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("offload_param", self.offload_param, OFFLOADS)
        check_choice("offload_optimizer", self.offload_optimizer, OFFLOADS)
        if self.offload_optimizer == "none" and self.offload_param != "none":
            raise SpecError("offload_param without offload_optimizer: DeepSpeed's ZeRO-Infinity offloads the "
                            "optimizer states too (set offload_optimizer to 'cpu' or 'nvme')")
        if (self.pipeline_read or self.pipeline_write) and self.offload_optimizer != "nvme":
            raise SpecError("pipeline_read/pipeline_write overlap the optimizer's swap I/O: they need "
                            "offload_optimizer 'nvme'")
        if self.aio is not None and not isinstance(self.aio, Mapping):
            raise SpecError(f"aio must be a mapping (a DeepSpeed aio block) or None, not {type(self.aio).__name__}")
        if self.test_hook is not None and self.test_hook.split(":", 1)[0] not in TEST_HOOKS:
            raise SpecError(f"test_hook {self.test_hook!r} is not one of {', '.join(TEST_HOOKS)}")
        info = model_info(self)  # raises UnknownModel (a SpecError) listing the shipped ones
        if self.seq_len > info.max_position:
            raise SpecError(f"seq_len {self.seq_len} exceeds {info.name}'s max_position_embeddings {info.max_position}")
        if accelerator != "cuda" and self.dtype == "fp16":
            raise SpecError(FP16_CPU_REASON)


def model_info(spec: TrainingSpec) -> ModelInfo:
    """The spec's model with its layer override applied (the config arithmetic then sizes the slice)."""
    info = resolve_model(spec.model)
    if spec.num_layers is None:
        return info
    cfg = dict(info.hf_config)
    cfg["num_hidden_layers"] = int(spec.num_layers)
    return replace(info, hf_config=cfg)
