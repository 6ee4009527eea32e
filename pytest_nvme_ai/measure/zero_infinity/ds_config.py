"""The DeepSpeed config of a ZeRO-Infinity training run (stage 3, parameters and optimizer offloaded).

Built on the toolkit's shared blocks (measure/deepspeed/config_blocks.py: `stage3_block` for the bucket sizes derived from the hidden
size, `buffer_elements` for the parameter swap buffers, `normalize_aio`/`default_aio_block` for
the aio block in the installed version's key names), plus what training adds:

* `offload_optimizer {device, nvme_path, buffer_count 4, pipeline_read, pipeline_write}`: the fp32
  master weights and both Adam moments live on the target and are swapped per `sub_group_size`
  elements each step. `buffer_count` must cover Adam's 4 states (param, grad, m, v).
* `optimizer: AdamW` in the config, not a torch optimizer passed in: with an offloaded optimizer
  DeepSpeed then builds its CPU Adam op (`cpu_adam`; a torch optimizer is refused unless
  `zero_force_ds_cpu_optimizer` is turned off, and would be 5-7x slower).
* bf16 on the CPU accelerator (DeepSpeed has no fp16 there), fp16 with loss scaling on CUDA.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from packaging.version import Version

from pytest_nvme_ai.measure.deepspeed.version import default_aio_block
from pytest_nvme_ai.measure.deepspeed.config_blocks import buffer_elements, normalize_aio, stage3_block
from pytest_nvme_ai.measure.deepspeed.models import ModelInfo
from pytest_nvme_ai.measure.zero_infinity.spec import TrainingSpec, model_info

__all__ = ["build_ds_config", "model_info", "optimizer_buffer_count", "swap_bytes_estimate"]

if TYPE_CHECKING:
    from pathlib import Path

OPTIMIZER_BUFFER_COUNT = 4   # Adam's states per parameter: param, gradient, momentum, variance
PARAM_BUFFER_COUNT = 5       # DeepSpeed's default, and run_model.py's


def offload_param_block(spec: TrainingSpec, info: ModelInfo, nvme_path: "Path | str | None",
                        pin: bool) -> dict[str, Any] | None:
    if spec.offload_param == "none":
        return None
    if spec.offload_param == "cpu":
        return {"device": "cpu", "pin_memory": pin}
    return {"device": "nvme", "pin_memory": pin, "nvme_path": str(_need_path(nvme_path, "offload_param")),
            "buffer_count": PARAM_BUFFER_COUNT, "buffer_size": buffer_elements(info.largest_param_numel)}


def offload_optimizer_block(spec: TrainingSpec, nvme_path: "Path | str | None", pin: bool) -> dict[str, Any] | None:
    if spec.offload_optimizer == "none":
        return None
    if spec.offload_optimizer == "cpu":
        return {"device": "cpu", "pin_memory": pin}
    return {"device": "nvme", "pin_memory": pin, "nvme_path": str(_need_path(nvme_path, "offload_optimizer")),
            "buffer_count": optimizer_buffer_count(spec), "pipeline_read": bool(spec.pipeline_read),
            "pipeline_write": bool(spec.pipeline_write)}


def optimizer_buffer_count(spec: TrainingSpec) -> int:
    """Swap buffers for the optimizer: Adam's 4 states for the sub-group being updated, and 4 more for each
    overlapped stage (the next sub-group read ahead, the previous one still being written). DeepSpeed's
    documented 4 runs out as soon as a pipeline is on (`assert new_alloc_buffers is not None` in
    pipelined_optimizer_swapper.py, 0.19.8)."""
    return OPTIMIZER_BUFFER_COUNT * (1 + int(bool(spec.pipeline_read)) + int(bool(spec.pipeline_write)))


def build_ds_config(spec: TrainingSpec, info: ModelInfo, *, accelerator: str,
                    nvme_path: "Path | str | None" = None, version: Version | None = None) -> dict[str, Any]:
    """The complete DeepSpeed config for `spec` on `accelerator` ("cuda" or "cpu")."""
    dtype = spec.resolved_dtype(accelerator)
    # Page-locking only speeds host-to-GPU copies; with the CPU accelerator there is no such copy.
    pin = bool(spec.pin_memory) and accelerator == "cuda"
    zero: dict[str, Any] = {**stage3_block(info.hidden_size), "sub_group_size": int(spec.sub_group_size),
                            "overlap_comm": False, "contiguous_gradients": True}
    param = offload_param_block(spec, info, nvme_path, pin)
    if param is not None:
        zero["offload_param"] = param
    optim = offload_optimizer_block(spec, nvme_path, pin)
    if optim is not None:
        zero["offload_optimizer"] = optim
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": int(spec.batch_size),
        "gradient_accumulation_steps": 1,
        "fp16": {"enabled": dtype == "fp16", "initial_scale_power": 12},
        "bf16": {"enabled": dtype == "bf16"},
        "optimizer": {"type": "AdamW", "params": {"lr": float(spec.lr), "betas": [0.9, 0.999], "eps": 1e-8,
                                                  "weight_decay": 0.0}},
        "zero_optimization": zero,
        "steps_per_print": 1 << 30,     # the child logs each step itself
        "wall_clock_breakdown": False,
    }
    if spec.offloads_to_target:
        cfg["aio"] = normalize_aio(spec.aio, version) if spec.aio is not None else default_aio_block(version)
    return cfg


def swap_bytes_estimate(info: ModelInfo, spec: TrainingSpec) -> int:
    """Bytes the swap files take on the target: 16-bit parameters, and fp32 master weights + 2 Adam moments."""
    n = info.param_count
    need = 0
    if spec.offload_param == "nvme":
        need += 2 * n
    if spec.offload_optimizer == "nvme":
        need += 3 * 4 * n
    return need


def _need_path(nvme_path: "Path | str | None", block: str) -> "Path | str":
    if nvme_path is None:
        raise ValueError(f"{block} 'nvme' needs an nvme_path (a directory inside the target's work directory)")
    return nvme_path
