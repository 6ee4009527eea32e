"""Pytest side: a case sent to the persistent worker of its engine (pool.py), recorded like a one-shot child's.

`run_in_worker` is the runner's path when `--nvme-ai-engine-reuse` is on (the default). It builds
the case's DeepSpeed config with the engine's swap folder as `nvme_path`, keeps the same
artifacts a one-shot run keeps (job, result, the case's slice of the worker log), and classifies
a dead or timed-out worker with the same rules (deepspeed.launch.finish_run). What the result adds:
`engine_reused` (this case found its engine built) and `engine_key`, kept as extras, so that a
report or a benchmark can tell build cost from measured loops.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from pytest_nvme_ai.measure.deepspeed.forkserver import fork_server
from pytest_nvme_ai.measure.deepspeed.job import Job, write_job
from pytest_nvme_ai.measure.deepspeed.launch import ChildRun, finish_run, run_stem
from pytest_nvme_ai.measure.deepspeed.models import ModelInfo, resolve_model
from pytest_nvme_ai.measure.deepspeed.outcome import ChildExit
from pytest_nvme_ai.measure.zero_inference.ds_config import build_ds_config
from pytest_nvme_ai.measure.zero_inference.pool import PROCESS_BYTES, WorkerGone, engine_dir_name, shared_pool
from pytest_nvme_ai.measure.zero_inference.progress import CaseProgress
from pytest_nvme_ai.measure.zero_inference.record import InferenceRecord
from pytest_nvme_ai.measure.zero_inference.remote_worker import engine_key
from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec, SpecError

if TYPE_CHECKING:
    from pytest_nvme_ai.core.recorder import Recorder
    from pytest_nvme_ai.core.targets import Target

_BYTES_PER_PARAM = {None: 2.0, 8: 1.0, 4: 0.5}


def estimate_host_bytes(spec: InferenceSpec, info: ModelInfo, ds_config: Mapping[str, Any]) -> int:
    """Host memory one worker of this engine holds: the process, plus the weights for none/cpu
    offload (resident in host memory on the CPU accelerator and for CPU offload) or DeepSpeed's
    swap buffers for NVMe offload (buffer_count × buffer_size elements, 16-bit)."""
    if spec.offload == "nvme":
        off = ds_config.get("zero_optimization", {}).get("offload_param", {})
        weights = int(off.get("buffer_count", 5)) * int(off.get("buffer_size", 0)) * 2
    else:
        weights = int(info.param_count * _BYTES_PER_PARAM.get(spec.quant_bits, 2.0))
    return PROCESS_BYTES + weights


def swap_dir_for(target: "Target", spec: InferenceSpec, key: str) -> Path | None:
    """<workdir>/zero_inference/engine-<hash>/: one per engine, removed when its worker closes."""
    if spec.offload != "nvme":
        return None
    d = target.inside("zero_inference", engine_dir_name(key))
    d.mkdir(parents=True, exist_ok=True)
    return d


def run_in_worker(spec: InferenceSpec, accelerator: str, prefix: str | None, *, target: "Target",
                  recorder: "Recorder", timeout: float, fork: bool = True,
                  loop_progress: Callable[[str], None] | None = None, position: str | None = None,
                  wrap: Sequence[str] = (), dummy_fill: str | None = None) -> tuple[ChildRun[InferenceRecord], Mapping[str, Any]]:
    """(the classified run, the DeepSpeed config sent). `wrap` (a cgroup-joining wrapper,
    measure.throttle): the case runs in a fresh worker started through it, so the worker and all its
    threads are inside the cgroup from their first read; that worker is closed after the case,
    before the caller removes the cgroup. No pid is moved. `fork`: --nvme-ai-fork-workers."""
    info = resolve_model(spec.model)
    key = f"{engine_key(spec)} @ {target.label}"  # an engine's swap files are on one target
    if wrap:
        key += " in " + " ".join(wrap)
    if dummy_fill:  # another way of drawing the random weights is another engine (benchmarks only)
        key += f" fill {dummy_fill}"
    swap_dir = swap_dir_for(target, spec, key)
    try:
        ds = build_ds_config(spec, info, accelerator=accelerator, nvme_path=swap_dir)
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    stem = run_stem(spec.id, prefix)
    art = Path(recorder.artifact_dir)
    result_path, log = art / f"{stem}.result.json", art / f"{stem}.log"
    result_path.unlink(missing_ok=True)
    job = Job(spec=spec.to_dict(), ds_config=ds, accelerator=accelerator,
              nvme_path=str(swap_dir) if swap_dir else None, dummy_fill=dummy_fill)
    write_job(art / f"{stem}.job.json", job)
    progress = None
    if loop_progress is not None:
        progress = CaseProgress(f"{prefix + ' ' if prefix else ''}{spec.id}", spec.warmup, spec.loops,
                                loop_progress, position)
    if fork:
        fork_server().register(recorder.children)  # before the pool: the pool's workers close first
    t0 = time.monotonic()
    record: InferenceRecord | None = None
    returncode, timed_out = None, False
    try:
        msg = shared_pool(recorder.children).run(
            key, job.to_dict(), timeout=timeout, swap_dir=swap_dir, estimate=estimate_host_bytes(spec, info, ds),
            progress=progress, case_log=log, wrap=wrap, fork_for=accelerator if fork else None)
        result_path.write_text(json.dumps(msg, indent=2, default=str) + "\n", encoding="utf-8")
        record = InferenceRecord.from_dict(msg)
    except WorkerGone as gone:
        returncode, timed_out = gone.returncode, gone.timed_out
    recorder.set_extra(f"{prefix}_engine" if prefix else "engine", engine_extra(key, record))
    exit_ = ChildExit(returncode, timed_out, time.monotonic() - t0)
    return finish_run(record, exit_, log, timeout), ds


def engine_extra(key: str, record: InferenceRecord | None) -> dict[str, Any]:
    """The `engine` extra: which engine ran the case, and whether this case paid its start-up."""
    r = record or InferenceRecord(outcome="error")  # the worker died first: nothing reused
    return {"key": key, "reused": bool(r.engine_reused), "cases_on_engine": r.engine_cases,
            "import_s": r.import_s, "case_s": r.case_s, "forked": r.worker_forked,
            "fork_server_s": r.fork_server_s}
