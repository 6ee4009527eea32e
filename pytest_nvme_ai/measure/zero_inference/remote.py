"""Child side: how a ZeRO-Inference child measures, shared by the one-shot child and the persistent
worker (remote_worker.py). Nothing here runs in pytest.

The one-shot child, `python -m pytest_nvme_ai.measure.zero_inference JOB.json RESULT.json`
(`--nvme-ai-engine-reuse 0`), is one ZeRO-Inference run per process (measure/deepspeed/remote.py says
why). JOB.json is a deepspeed.job.Job; RESULT.json is an InferenceRecord (record.py).
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from pytest_nvme_ai.measure.deepspeed import remote
from pytest_nvme_ai.measure.deepspeed.devcount import DeviceCounter
from pytest_nvme_ai.measure.deepspeed.remote import peak_rss_bytes, read_bytes, say, torch_dtype_of
from pytest_nvme_ai.measure.energy import EnergyMeter, LoopEnergy
from pytest_nvme_ai.measure.zero_inference.metrics import LoopMeasurement
from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec

__all__ = ["FirstForward", "generate_kwargs", "init_engine", "list_swap_files", "measure_loop",
           "open_energy_meter", "prompt_ids", "say"]


class FirstForward:
    """Forward hooks on the model: time and bytes of the first forward (prefill) of each generate call."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self._sync = sync
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self.start = self.end = 0.0
        self.end_bytes = 0

    def pre(self, module: Any, args: Any) -> None:
        if self.calls == 0:
            self._sync()
            self.start = time.perf_counter()

    def post(self, module: Any, args: Any, output: Any) -> None:
        self.calls += 1
        if self.calls == 1:
            self._sync()
            self.end = time.perf_counter()
            self.end_bytes = read_bytes()


def list_swap_files(ds_config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """DeepSpeed's parameter swap files (<nvme_path>/zero_stage_3/<dtype>params/rank0/*.swp)."""
    return remote.list_swap_files(ds_config.get("zero_optimization", {}).get("offload_param", {}).get("nvme_path"))


def check_swap_files_complete(files: list[dict[str, Any]]) -> None:
    """DeepSpeed's failed swap writes are silent: on a full target a run 'succeeds' reading holes.

    A swap file with fewer bytes allocated than its size was not fully written; fail the run
    rather than record figures that measured a partly empty file.
    """
    short = [f for f in files if f["allocated"] < f["bytes"]]
    if short:
        f = short[0]
        raise RuntimeError(
            f"DeepSpeed's swap file {f['path']} is only partly written ({f['allocated']} of {f['bytes']} bytes "
            f"allocated; {len(short)} of {len(files)} files short): the target is full or failing. "
            f"Free space on it and rerun"
        )


def sync_swap_files(ds_config: Mapping[str, Any], files: list[dict[str, Any]]) -> float:
    """fsync every swap file (seconds taken). DeepSpeed writes them with O_DIRECT, but a drive's (or a VM
    host's) write cache may still hold them: flushed here, the build's writes cannot compete with the
    first measured loop's reads, so a case on a fresh engine reads like one on an engine built earlier."""
    nvme_path = ds_config.get("zero_optimization", {}).get("offload_param", {}).get("nvme_path")
    t0 = time.perf_counter()
    for f in files if nvme_path else ():
        fd = os.open(Path(nvme_path) / f["path"], os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return time.perf_counter() - t0


_SWAP_ID = re.compile(r"(\d+)_param\.tensor\.swp$")


def param_residency(model: Any, swap_files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per parameter: its name, elements and whether DeepSpeed swapped it to the target.

    DeepSpeed names a swap file after the parameter's ds_id ("<id>_param.tensor.swp") and swaps
    only tensors of at least max(1 MiB, aio block_size) bytes: the rest stay in memory.
    """
    swapped_ids = {int(m.group(1)) for f in swap_files if (m := _SWAP_ID.search(f["path"]))}
    out = []
    for name, p in model.named_parameters():
        ds_id = getattr(p, "ds_id", None)
        out.append({"name": name, "numel": int(getattr(p, "ds_numel", p.numel())),
                    "swapped": ds_id is not None and int(ds_id) in swapped_ids})
    return out


def measure_loop(model: Any, input_ids: Any, gen_kwargs: Mapping[str, Any], hooks: FirstForward,
                 sync: Callable[[], None], cuda: bool, meter: EnergyMeter | None = None,
                 device: DeviceCounter | None = None) -> LoopMeasurement:
    import torch

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    hooks.reset()
    sync()
    bytes0 = read_bytes()
    dev0 = device.read() if device is not None else None
    if meter is not None:
        meter.start()
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **gen_kwargs)
    sync()
    t1 = time.perf_counter()
    energy = meter.stop() if meter is not None else LoopEnergy(None, None)
    bytes1 = read_bytes()
    dev1 = device.read() if device is not None else None
    dev_r, dev_w = (dev1[0] - dev0[0], dev1[1] - dev0[1]) if dev0 is not None and dev1 is not None else (None, None)
    return LoopMeasurement(
        total_latency=t1 - t0, prefill_latency=hooks.end - hooks.start, forward_calls=hooks.calls,
        read_bytes=bytes1 - bytes0, prefill_read_bytes=hooks.end_bytes - bytes0, peak_rss=peak_rss_bytes(),
        peak_gpu_mem=int(torch.cuda.max_memory_allocated()) if cuda else None,
        new_tokens=int(out.shape[-1] - input_ids.shape[-1]),
        gpu_energy=energy.gpu_joules, cpu_energy=energy.cpu_joules,
        device_read_bytes=dev_r, device_write_bytes=dev_w,
    )


def device_counter(ds_config: Mapping[str, Any]) -> tuple[DeviceCounter | None, dict[str, Any]]:
    """The counter of the swap folder's disk in this child's own cgroup (None for no NVMe offload, or
    where none isolates this child), and the record's `device` entry: how it counts, or why not."""
    nvme_path = ds_config.get("zero_optimization", {}).get("offload_param", {}).get("nvme_path")
    if not nvme_path:
        return None, {}
    counter, why = DeviceCounter.open(nvme_path)
    if counter is None:
        say(f"device bytes not counted: {why}")
        return None, {"reason": why, "nvme_path": str(nvme_path)}
    return counter, {**counter.describe(), "nvme_path": str(nvme_path)}


def cuda_bus_ids(cuda: bool) -> list[str] | None:
    """PCI bus ids of the GPU this process uses, so NVML reads that one (NVML ignores CUDA_VISIBLE_DEVICES)."""
    if not cuda:
        return None
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    ids: list[int] = [i for part in ("domain", "bus", "device") if (i := getattr(props, f"pci_{part}_id", None)) is not None]
    if len(ids) != 3:
        return None  # older torch: the meter reads every visible GPU and says so
    return [f"{ids[0]:08X}:{ids[1]:02X}:{ids[2]:02X}.0"]


def open_energy_meter(model: Any, cuda: bool) -> EnergyMeter:
    """The meter for the measured loops; polled at every forward pass so RAPL wrap-arounds are seen."""
    meter = EnergyMeter.open(cuda=cuda, bus_ids=cuda_bus_ids(cuda))
    if meter.cpu is not None:
        model.register_forward_hook(lambda module, args, output: meter.poll())
    say(f"energy: {meter.description}" + "".join(f"; {r}" for r in meter.reasons))
    return meter


def generate_kwargs(spec: InferenceSpec, pad_token_id: int | None) -> dict[str, Any]:
    kw: dict[str, Any] = {"max_new_tokens": spec.gen_len, "min_new_tokens": spec.gen_len, "do_sample": False,
                          "use_cache": True, "pad_token_id": pad_token_id}
    if spec.kv_offload:
        # Stock transformers' KV offload (OffloadedCache); run_model.py's set_kv_cache_offload needs a fork.
        kw["cache_implementation"] = "offloaded"
    return kw


def init_engine(info: Any, ds_config: Mapping[str, Any], dtype: str,
                fill: str = "tile") -> tuple[Any, Any, dict[str, Any]]:
    """Build the model under ZeRO-3 and wrap it: (module, keepalive, facts about the initialization)."""
    import deepspeed

    from pytest_nvme_ai.measure.deepspeed.models import build_model

    t0, bytes0 = time.perf_counter(), read_bytes()
    model, keepalive = build_model(info, ds_config, torch_dtype_of(dtype), fill)
    engine = deepspeed.initialize(model=model, config_params=dict(ds_config))[0]
    engine.module.eval()
    swap_files = list_swap_files(ds_config)  # now, before the runner removes the offload directory
    check_swap_files_complete(swap_files)
    sync_s = sync_swap_files(ds_config, swap_files)
    facts = {"init_seconds": time.perf_counter() - t0, "swap_sync_seconds": sync_s,
             "init_read_bytes": read_bytes() - bytes0,
             "swap_files": tuple(swap_files), "model_params": info.param_count,
             "param_residency": tuple(param_residency(engine.module, swap_files))}
    say(f"model ready in {facts['init_seconds']:.1f} s; {len(swap_files)} swap files, "
        f"{sum(f['bytes'] for f in swap_files)} bytes")
    return engine.module, keepalive, facts


def prompt_ids(spec: InferenceSpec, vocab_size: int, device: str) -> Any:
    """Random token ids stand in for a tokenizer: generation cost depends on shape, not on words."""
    import torch

    generator = torch.Generator().manual_seed(spec.seed)
    ids = torch.randint(4, vocab_size, (spec.batch_size, spec.prompt_len), generator=generator)  # 0-3: specials
    return ids.to(device)
