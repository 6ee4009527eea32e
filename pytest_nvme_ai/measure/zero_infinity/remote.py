"""Child side: `python -m pytest_nvme_ai.measure.zero_infinity JOB.json RESULT.json`. Nothing here runs in pytest.

One training run per process, for the reasons measure/deepspeed/remote.py gives (DeepSpeed's global
state, memory, hangs: the OOM killer must hit this process, not pytest); its helpers (process
env, test hooks, versions, swap files, atomic result) are the toolkit's.

Each step is timed from the forward to the end of `engine.step()`, and the bytes this process
made the block layer read and write over it are read from /proc/self/io (DeepSpeed's aio
threads are threads of this process, and its swap I/O is O_DIRECT, so it is counted).

JOB.json is a deepspeed.job.Job; RESULT.json is a TrainingRecord (record.py).
"""
from __future__ import annotations

import math
import time
from typing import Any

from pytest_nvme_ai.measure.deepspeed.devcount import DeviceCounter
from pytest_nvme_ai.measure.deepspeed.job import Job
from pytest_nvme_ai.measure.deepspeed.remote import (io_bytes, list_swap_files, obey_test_hook, one_shot_main,
                                                     peak_rss_bytes, say, setup_single_process_env, torch_dtype_of,
                                                     versions)
from pytest_nvme_ai.measure.zero_infinity.metrics import StepMeasurement
from pytest_nvme_ai.measure.zero_infinity.record import TrainingRecord
from pytest_nvme_ai.measure.zero_infinity.spec import TrainingSpec

HANG_S = 3600.0


def synthetic_batch(spec: TrainingSpec, vocab_size: int, device: str) -> Any:
    """The one fixed batch every step trains on: random ids from the spec's seed (0-3 are OPT's specials)."""
    import torch

    generator = torch.Generator().manual_seed(spec.seed)
    return torch.randint(4, vocab_size, (spec.batch_size, spec.seq_len), generator=generator).to(device)


def build_model(info: Any, dtype: str) -> Any:
    """The model built whole in host memory, outside `deepspeed.zero.Init`.

    Under zero.Init, transformers' weight init fails on OPT (`padding_idx` out of range on the
    already-partitioned, empty embedding); skipping that init (as the inference builder does) would
    leave torch's N(0, 1) embeddings and a first loss far above ln(vocab). Built outside, the model
    gets transformers' own init (std 0.02) and `deepspeed.initialize` partitions and offloads it;
    the cost is one full bf16 copy in host memory while it starts (26 GB for OPT-13b).
    """
    from transformers import AutoModelForCausalLM

    from pytest_nvme_ai.measure.deepspeed.models import hf_config_object

    model = AutoModelForCausalLM.from_config(hf_config_object(info), dtype=torch_dtype_of(dtype))
    model.train()
    return model


def measure_step(engine: Any, input_ids: Any, sync: Any, device: DeviceCounter | None = None) -> StepMeasurement:
    sync()
    r0, w0 = io_bytes()
    d0 = device.read() if device is not None else None
    t0 = time.perf_counter()
    out = engine(input_ids=input_ids, labels=input_ids)
    loss = out.loss
    engine.backward(loss)
    engine.step()
    sync()
    t1 = time.perf_counter()
    r1, w1 = io_bytes()
    d1 = device.read() if device is not None else None
    value = float(loss.detach().float().item())
    dr, dw = (d1[0] - d0[0], d1[1] - d0[1]) if d0 is not None and d1 is not None else (None, None)
    return StepMeasurement(step_time=t1 - t0, loss=value, read_bytes=r1 - r0, write_bytes=w1 - w0,
                           peak_rss=peak_rss_bytes(), device_read_bytes=dr, device_write_bytes=dw)


def device_counter(nvme_path: str | None) -> tuple[DeviceCounter | None, dict[str, Any]]:
    """The swap folder's disk counter in this child's own cgroup, and the record's `device` entry."""
    if not nvme_path:
        return None, {}
    from pathlib import Path

    Path(nvme_path).mkdir(parents=True, exist_ok=True)  # DeepSpeed makes it later; its disk is known now
    counter, why = DeviceCounter.open(nvme_path)
    if counter is None:
        say(f"device bytes not counted: {why}")
        return None, {"reason": why, "nvme_path": nvme_path}
    return counter, {**counter.describe(), "nvme_path": nvme_path}


def run(spec: TrainingSpec, job: Job) -> TrainingRecord:
    setup_single_process_env()
    import deepspeed
    import torch
    from deepspeed.accelerator import get_accelerator

    from pytest_nvme_ai.measure.zero_infinity.ds_config import build_ds_config, model_info

    acc = get_accelerator()
    accelerator = acc.device_name()
    spec.validate(accelerator)
    info = model_info(spec)
    ds_config = job.config_for(accelerator, lambda nvme_path: build_ds_config(spec, info, accelerator=accelerator,
                                                                               nvme_path=nvme_path))
    dtype = spec.resolved_dtype(accelerator)
    say(f"accelerator {accelerator}, dtype {dtype}, spec {spec.id}")
    torch.manual_seed(spec.seed)
    deepspeed.init_distributed(dist_backend="nccl" if accelerator == "cuda" else "gloo")

    nvme_path = job.nvme_path if spec.offloads_to_target else None
    device, device_info = device_counter(nvme_path)
    d0 = device.read() if device is not None else None
    t0, (r0, w0) = time.perf_counter(), io_bytes()
    model = build_model(info, dtype)
    engine = deepspeed.initialize(model=model, model_parameters=[p for p in model.parameters()],
                                  config=dict(ds_config))[0]
    del model
    swap_files = list_swap_files(nvme_path)
    r1, w1 = io_bytes()
    d1 = device.read() if device is not None else None
    facts: dict[str, Any] = {"init_seconds": time.perf_counter() - t0, "init_read_bytes": r1 - r0, "init_write_bytes": w1 - w0,
             "swap_files": tuple(swap_files), "model_params": info.param_count,
             "optimizer": type(engine.optimizer).__name__,
             "basic_optimizer": type(getattr(engine, "basic_optimizer", None)).__name__,
             "device": device_info, "init_device_write_bytes": d1[1] - d0[1] if d0 and d1 else None}
    say(f"engine ready in {facts['init_seconds']:.1f} s; {len(swap_files)} swap files, "
        f"{sum(f['bytes'] for f in swap_files)} bytes; optimizer {facts['basic_optimizer']}")
    if spec.test_hook == "hang_after_init":
        say("test hook 'hang_after_init': waiting to be killed")
        time.sleep(HANG_S)

    input_ids = synthetic_batch(spec, info.vocab_size, acc.current_device_name())
    sync = acc.synchronize
    warmup, steps = [], []
    for i in range(spec.warmup):
        warmup.append(st := measure_step(engine, input_ids, sync, device))
        say(f"warm-up {i + 1}/{spec.warmup}: {st.step_time:.3f} s, loss {st.loss:.4f}")
    for i in range(spec.steps):
        steps.append(st := measure_step(engine, input_ids, sync, device))
        say(f"step {i + 1}/{spec.steps}: {st.step_time:.3f} s, loss {st.loss:.4f}, read {st.read_bytes} B, "
            f"written {st.write_bytes} B")
    bad = [s.loss for s in warmup + steps if not math.isfinite(s.loss)]
    if bad:
        raise FloatingPointError(f"non-finite loss {bad[0]!r}: the run diverged (dtype {dtype}, lr {spec.lr})")
    return TrainingRecord(
        outcome="ok", accelerator=accelerator, dtype=dtype, ds_config=ds_config, versions=versions(),
        device_name=torch.cuda.get_device_name() if accelerator == "cuda" else None,
        **facts, warmup=tuple(warmup), steps=tuple(steps))


def _one_run(job: Job) -> TrainingRecord:
    spec = TrainingSpec.from_dict(job.spec)
    if spec.test_hook != "hang_after_init":
        obey_test_hook(spec.test_hook)
    return run(spec, job)


def main(argv: list[str]) -> int:
    return one_shot_main(argv, module="pytest_nvme_ai.measure.zero_infinity", run=_one_run,
                         failed=TrainingRecord.failed)
