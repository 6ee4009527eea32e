"""The inference worker, child side: `python -m pytest_nvme_ai.measure.zero_inference.remote_worker`.

One worker holds one engine: a model built under ZeRO-3 for one engine key (model, dtype,
quantization, offload device, aio settings, pinning, buffers, seed: `engine_key`). It stays alive
across the cases that differ only in batch size, prompt and generation length, KV offload, loops
and warm-up, so the imports (seconds), the random weights and the swap files (minutes for a large
model) are paid once per engine instead of once per case. Every case still runs its own warm-up
loops before its measured loops, on its own input shape.

The protocol copies the aio worker's (measure/aio/worker.py): JSON lines. On stdout, one object per
line with an "event": "ready" (pid; the heavy imports wait for the first request), "progress" (stage: build | warmup | loop, done, total,
seconds), "result" (an InferenceRecord's dict, record.py: what the one-shot child, `one_shot_main` below, writes as
RESULT.json, with import_s and case_s). On stdin, one request per line: {"op": "run", "job": {...a
deepspeed.job.Job, the one-shot child's JOB.json...}}. Everything else
goes to stderr, which the parent keeps as the worker's log. A request whose outcome is not ok ends
the worker (its DeepSpeed state may be half torn down); the parent starts a fresh one next time.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any, Callable, Mapping

from dataclasses import replace

from pytest_nvme_ai.measure.deepspeed import remote as common
from pytest_nvme_ai.measure.deepspeed.job import Job
from pytest_nvme_ai.measure.zero_inference import remote as child
from pytest_nvme_ai.measure.zero_inference.record import InferenceRecord
from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec

# What builds the engine: cases that agree on these share one worker. Everything else in a spec
# (batch_size, prompt_len, gen_len, kv_offload, loops, warmup, test_hook) is per case.
ENGINE_FIELDS = ("model", "dtype", "offload", "quant_bits", "quant_group_size", "pin_memory", "aio",
                 "buffer_count", "buffer_size", "seed")


def engine_key(spec: InferenceSpec) -> str:
    """A stable text key of the fields that build the engine (quant group size only matters when quantized)."""
    d = spec.to_dict()
    key = {f: d[f] for f in ENGINE_FIELDS}
    if not spec.quant_bits:
        key["quant_group_size"] = None
    if spec.offload != "nvme":
        key["aio"] = None  # DeepSpeed reads the aio block only for NVMe offload
    return json.dumps(key, sort_keys=True)


Emit = Callable[..., None]


class Engine:
    """The built model plus what every case reuses: forward hooks, the energy meter, the config."""

    def __init__(self, job: Job, emit: Emit) -> None:
        import deepspeed
        import torch
        from deepspeed.accelerator import get_accelerator

        from pytest_nvme_ai.measure.deepspeed.models import resolve_model
        from pytest_nvme_ai.measure.zero_inference.ds_config import build_ds_config

        spec = InferenceSpec.from_dict(job.spec)
        self.acc = get_accelerator()
        self.accelerator = self.acc.device_name()
        spec.validate(self.accelerator)
        self.key = engine_key(spec)
        self.info = resolve_model(spec.model)
        self.ds_config = job.config_for(self.accelerator, lambda nvme_path: build_ds_config(
            spec, self.info, accelerator=self.accelerator, nvme_path=nvme_path))
        self.dtype = spec.resolved_dtype(self.accelerator)
        self.cuda = self.accelerator == "cuda"
        child.say(f"engine: accelerator {self.accelerator}, dtype {self.dtype}, key {self.key}")
        emit(event="progress", stage="build", done=0, total=1, seconds=0.0)
        torch.manual_seed(spec.seed)
        if not deepspeed.comm.is_initialized():
            deepspeed.init_distributed(dist_backend="nccl" if self.cuda else "gloo")
        build_counter, _ = child.device_counter(self.ds_config)  # the swap files laid out: build-time writes
        d0 = build_counter.read() if build_counter is not None else None
        self.model, self._keepalive, self.facts = child.init_engine(self.info, self.ds_config, self.dtype,
                                                                    job.dummy_fill or "tile")
        d1 = build_counter.read() if build_counter is not None else None
        self.facts["build_device_write_bytes"] = d1[1] - d0[1] if d0 is not None and d1 is not None else None
        emit(event="progress", stage="build", done=1, total=1, seconds=self.facts["init_seconds"])
        self.hooks = child.FirstForward(self.acc.synchronize)
        self.model.register_forward_pre_hook(self.hooks.pre)
        self.model.register_forward_hook(self.hooks.post)
        self.meter = child.open_energy_meter(self.model, self.cuda)
        self.cases = 0

    def run_case(self, job: Job, emit: Emit) -> InferenceRecord:
        import torch

        spec = InferenceSpec.from_dict(job.spec)
        spec.validate(self.accelerator)
        if engine_key(spec) != self.key:
            raise RuntimeError(f"worker protocol: case {spec.id} needs engine {engine_key(spec)}, "
                               f"this worker holds {self.key}")
        torch.manual_seed(spec.seed)  # the same prompt and sampling state whether first on this engine or not
        input_ids = child.prompt_ids(spec, self.info.vocab_size, self.acc.current_device_name())
        kwargs = child.generate_kwargs(spec, self.info.hf_config.get("pad_token_id"))
        sync = self.acc.synchronize
        device, device_info = child.device_counter(self.ds_config)  # per case: the parent joined us after "ready"
        warmup, loops = [], []
        for i in range(spec.warmup):
            warmup.append(lp := child.measure_loop(self.model, input_ids, kwargs, self.hooks, sync, self.cuda,
                                                   device=device))
            emit(event="progress", stage="warmup", done=i + 1, total=spec.warmup, seconds=lp.total_latency)
            child.say(f"{spec.id} warm-up {i + 1}/{spec.warmup}: {lp.total_latency:.3f} s")
        for i in range(spec.loops):
            loops.append(lp := child.measure_loop(self.model, input_ids, kwargs, self.hooks, sync, self.cuda,
                                                  self.meter, device))
            emit(event="progress", stage="loop", done=i + 1, total=spec.loops, seconds=lp.total_latency)
            child.say(f"{spec.id} loop {i + 1}/{spec.loops}: total {lp.total_latency:.3f} s, prefill "
                      f"{lp.prefill_latency:.3f} s, read {lp.read_bytes} B, {lp.new_tokens} new tokens")
        reused = self.cases > 0
        self.cases += 1
        return InferenceRecord(
            outcome="ok", accelerator=self.accelerator, dtype=self.dtype, ds_config=self.ds_config,
            versions=common.versions(), device_name=torch.cuda.get_device_name() if self.cuda else None,
            **self.facts, engine_reused=reused, engine_cases=self.cases, warmup=tuple(warmup), loops=tuple(loops),
            energy={"meter": self.meter.description, "reasons": self.meter.reasons}, device=device_info,
        )


_IMPORTED: list[float] = []


def heavy_imports() -> float:
    """Seconds the first case spends importing torch, DeepSpeed and transformers; 0 for later cases.
    Done on the first request, after its test hook, so that tests of a misbehaving worker stay fast."""
    if _IMPORTED:
        return 0.0

    t0 = time.monotonic()
    common.setup_single_process_env()
    import deepspeed  # noqa: F401 - the start-up cost every case used to pay
    import torch  # noqa: F401
    import transformers  # noqa: F401

    _IMPORTED.append(time.monotonic() - t0)
    return _IMPORTED[0]


def serve(job: Job, engine: Engine | None, emit: Emit) -> tuple[InferenceRecord, Engine | None]:
    """One request: (the record, the engine to keep; None after a failure, which ends the worker)."""

    t0 = time.monotonic()
    try:
        common.obey_test_hook(job.test_hook)
        import_s = heavy_imports()
        if engine is None:
            engine = Engine(job, emit)
        record = replace(engine.run_case(job, emit), import_s=import_s)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded outcome
        traceback.print_exc()
        return replace(InferenceRecord.failed(exc), case_s=time.monotonic() - t0), None
    return replace(record, case_s=time.monotonic() - t0), engine


def _serve_requests(proto_fd: int, requests: Any, forked: bool) -> None:
    """The request loop: JSON lines in from `requests`, events out on `proto_fd`; never returns.
    fd 1 points at the log (stderr), so that DeepSpeed's and torch's prints cannot corrupt the JSON lines."""
    proto = os.fdopen(proto_fd, "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def emit(**msg: Any) -> None:
        proto.write(json.dumps(msg, default=str) + "\n")
        proto.flush()

    emit(event="ready", pid=os.getpid(), forked=forked)
    engine: Engine | None = None
    for line in requests:
        if not line.strip():
            continue
        req = json.loads(line)
        record, engine = serve(Job.from_dict(req["job"]), engine, emit)
        emit(event="result", **record.to_dict())
        if engine is None:  # a failed case: exit, the next case gets a fresh worker
            break
    sys.stderr.flush()
    os._exit(0)  # like the aio worker: skip DeepSpeed's and the aio handles' slow destructors


def _worker_main() -> int:
    # The protocol gets a private copy of stdout (fd 1 then becomes the log).
    _serve_requests(os.dup(1), sys.stdin, forked=False)
    return 0


def forked_main(requests_in: Any, events_out: Any, log_path: str, env: Mapping[str, str]) -> None:
    """A worker forked from the fork server (measure/deepspeed/forkserver.py), which has already imported torch, DeepSpeed
    and transformers: the same loop as `_worker_main`, on pipes the parent passed as Connections.
    Its own session first, as procutil.start gives an exec'd worker: a stop signals its whole group,
    and a Ctrl-C on the terminal reaches pytest only."""
    os.setsid()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.dup2(requests_in.fileno(), 0)
    proto_fd = os.dup(events_out.fileno())
    requests_in.close()
    events_out.close()
    # The environment the parent would have given an exec'd worker (the server's is from its start).
    os.environ.clear()
    os.environ.update(env)
    sys.stdin = os.fdopen(0, "r", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    _serve_requests(proto_fd, sys.stdin, forked=True)


def _quiet(**_: Any) -> None:
    """The one-shot child has no protocol: its parent reads RESULT.json."""


def _one_case(job: Job) -> InferenceRecord:
    common.obey_test_hook(job.test_hook)
    common.setup_single_process_env()
    return Engine(job, _quiet).run_case(job, _quiet)


def one_shot_main(argv: list[str]) -> int:
    """`python -m pytest_nvme_ai.measure.zero_inference JOB.json RESULT.json` (`--nvme-ai-engine-reuse 0`):
    one engine built for one case in this process, with the worker's own Engine, so that both paths
    measure with the same code."""
    return common.one_shot_main(argv, module="pytest_nvme_ai.measure.zero_inference", run=_one_case,
                                failed=InferenceRecord.failed)


if __name__ == "__main__":
    sys.exit(_worker_main())
