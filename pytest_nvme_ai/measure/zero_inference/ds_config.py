"""The DeepSpeed config of a ZeRO-Inference run, as DeepSpeedExamples' run_model.py builds it.

Stage 3 with the bucket sizes run_model.py derives from the hidden size h:
prefetch bucket 2h², persistence threshold h (small tensors — biases, layer
norms — stay resident), max live parameters 2h². Parameters offload to `cpu`
or `nvme` (`offload_param`), optionally quantized at initialization (4-bit,
group 64, as the seed). Two traps this module exists to avoid:

* `offload_param.buffer_size` counts **elements**, not bytes, and each pinned
  swap buffer must hold the largest single parameter whole (for OPT the tied
  embedding, vocab × hidden); too small and DeepSpeed asserts mid-run.
* the aio thread key changed name in DeepSpeed 0.16.4; every aio block goes
  through `deepspeed.version.aio_block`, which writes the key the installed version reads.

The blocks every workload shares (stage 3, buffers, aio) are in `measure.deepspeed.config_blocks`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from packaging.version import Version

from pytest_nvme_ai.measure.deepspeed.config_blocks import (AIO_KEYS, AioSettingError, buffer_elements, normalize_aio,
                                                            parse_aio_json, stage3_block, thread_key)
from pytest_nvme_ai.measure.deepspeed.version import default_aio_block

if TYPE_CHECKING:
    from pathlib import Path

    from pytest_nvme_ai.measure.deepspeed.models import ModelInfo
    from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec

# AioSettingError and parse_aio_json stay importable from here for run/settings/aio.py (owned by run/).


def quantization_block(bits: int, group_size: int) -> dict[str, Any]:
    """Weights quantized while zero.Init partitions them (run_model.py's get_quant_config)."""
    return {"quantized_initialization": {"num_bits": int(bits), "group_size": int(group_size),
                                         "group_dim": 1, "symmetric": False}}


def offload_block(spec: "InferenceSpec", largest_numel: int, nvme_path: "Path | str | None",
                  accelerator: str = "cuda") -> dict[str, Any] | None:
    if spec.offload == "none":
        return None
    # Page-locking only speeds host-to-GPU copies; with the CPU accelerator there is no such copy.
    pin = bool(spec.pin_memory) and accelerator == "cuda"
    if spec.offload == "cpu":
        return {"device": "cpu", "pin_memory": pin}
    if nvme_path is None:
        raise ValueError("offload 'nvme' needs an nvme_path (a directory inside the target's work directory)")
    return {"device": "nvme", "pin_memory": pin, "nvme_path": str(nvme_path),
            "buffer_count": int(spec.buffer_count),
            "buffer_size": buffer_elements(largest_numel, spec.buffer_size)}


def build_ds_config(spec: "InferenceSpec", info: "ModelInfo", *, accelerator: str,
                    nvme_path: "Path | str | None" = None, version: Version | None = None) -> dict[str, Any]:
    """The complete DeepSpeed config for `spec` on `accelerator` ("cuda" or "cpu")."""
    dtype = spec.resolved_dtype(accelerator)
    zero = stage3_block(info.hidden_size)
    offload = offload_block(spec, info.largest_param_numel, nvme_path, accelerator)
    if offload is not None:
        zero["offload_param"] = offload
    cfg: dict[str, Any] = {
        "fp16": {"enabled": dtype == "fp16"},
        "bf16": {"enabled": dtype == "bf16"},
        "zero_optimization": zero,
        "train_micro_batch_size_per_gpu": int(spec.batch_size),
        "steps_per_print": 1 << 30,     # inference: no training-step logging
        "wall_clock_breakdown": False,
    }
    if spec.quant_bits:
        cfg["weight_quantization"] = quantization_block(spec.quant_bits, spec.quant_group_size)
    if spec.offload == "nvme":
        cfg["aio"] = normalize_aio(spec.aio, version) if spec.aio is not None else default_aio_block(version)
    return cfg


__all__ = ["AIO_KEYS", "AioSettingError", "buffer_elements", "build_ds_config", "normalize_aio",
           "parse_aio_json", "stage3_block", "thread_key"]
