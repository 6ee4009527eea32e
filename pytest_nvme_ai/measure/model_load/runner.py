"""Cold model load, parent side: write the model once per session, then rounds of (cold load, fio) per loader.

Each round loads the model cold in a fresh child (child.py) and reads the same file with fio, sequential
and direct, shaped like the aio loader's read (same block size and queue depth); rounds alternate the
order (load, fio / fio, load) so a drifting drive favours neither. Each round gives one sample of the
loader's bandwidth and of its ratio to fio. The model directory lives in the target's private workdir
(`<workdir>/model_load/<model>/`) and goes with it at the end of the session.

Everything that starts a process goes through `launch`, one small function, so the lead can switch it to
the toolkit's launcher (measure/deepspeed/) and, with it, block-layer byte accounting per child.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from pytest_nvme_ai.core import procutil
from pytest_nvme_ai.core.cache import CacheKey
from pytest_nvme_ai.core.text import file_tail, median
from pytest_nvme_ai.measure.model_load.models import opt_config, weight_bytes
from pytest_nvme_ai.measure.model_load.spec import (LOADER_INSTALL, LOADER_MODULES, AioLoadSettings, LoadResult,
                                                    LoadSpec, WriteResult, WriteSpec)

if TYPE_CHECKING:
    from pytest_nvme_ai.core.recorder import Recorder
    from pytest_nvme_ai.core.targets import Target
    from pytest_nvme_ai.measure.deepspeed.ops import Progress
    from pytest_nvme_ai.measure.fio.runner import FioJob, FioResult

CHILD_MODULE = "pytest_nvme_ai.measure.model_load"
SPACE_MARGIN = 256 << 20     # never fill the target to the last block
MEMORY_SHARE = 0.6           # a loader holds the whole model in memory; from_pretrained briefly more
HEADER_ALLOWANCE = 1 << 20   # header JSON on top of the weights, for the space check

MODEL_FILES = CacheKey["ModelFiles"]("model_load_files", "(target label, model) -> the model written once per session")


class ModelLoadError(RuntimeError):
    """A write or a load failed (or its check did); the message says which and ends with the child's log."""


class NotHere(Exception):
    """The measurement cannot run on this machine or target; the message says why (the suite skips)."""


@dataclass(frozen=True)
class ModelFiles:
    model: str
    model_dir: Path
    weights: Path
    file_bytes: int
    tensors: int
    write_seconds: float


@dataclass(frozen=True)
class ChildExit:
    returncode: int | None
    seconds: float
    timed_out: bool
    device_read_bytes: int | None = None   # block layer (measure/blkio.py): filled once launch runs children in a cgroup


@dataclass(frozen=True)
class LoaderRun:
    """A loader's rounds: one cold load and one fio read each (fio None where fio is missing)."""

    loader: str
    model: str
    loads: tuple[LoadResult, ...]
    fio: tuple["FioResult | None", ...]
    facts: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def ratios(self) -> list[float]:
        return [ld.bw / f.bw_bytes for ld, f in zip(self.loads, self.fio) if f is not None and f.bw_bytes > 0]


def launch(argv: list[str], log: Path, timeout: float) -> ChildExit:
    """Run one child to completion with its output in `log`; stopped (with everything it started) past
    `timeout` s or on Ctrl-C. The one place a model-load child is started."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    with open(log, "ab") as out:
        proc = procutil.start(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            procutil.finish(proc, timeout)
        except subprocess.TimeoutExpired:
            return ChildExit(proc.returncode, time.monotonic() - t0, True)
    return ChildExit(proc.returncode, time.monotonic() - t0, False)


def loader_missing_reason(loader: str, progress: "Progress | None" = None) -> str | None:
    """None when `loader` can run here; otherwise what is missing and how to get it (nothing imported)."""
    import importlib.util

    for module in LOADER_MODULES[loader]:
        if importlib.util.find_spec(module) is None:
            return f"{loader}: {module} is not importable here: {LOADER_INSTALL[loader]}"
    if loader == "deepspeed_aio":
        from pytest_nvme_ai.measure.deepspeed.ops import ensure_aio_op

        return ensure_aio_op(progress)
    return None


def mem_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            return next(int(line.split()[1]) << 10 for line in fh if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def why_not_here(directory: Path, file_bytes: int) -> str | None:
    """Why a model of `file_bytes` cannot be written to `directory` and loaded whole here, or None."""
    import shutil

    free = shutil.disk_usage(directory).free
    if free < file_bytes + SPACE_MARGIN:
        return (f"{directory} has {free / 1e9:.1f} GB free; the model's weights need {file_bytes / 1e9:.1f} GB "
                "(plus a margin): free space or use a larger target")
    avail = mem_available()
    if avail is not None and file_bytes > MEMORY_SHARE * avail:
        return (f"every loader holds the whole model in memory: {file_bytes / 1e9:.1f} GB of weights, "
                f"{avail / 1e9:.1f} GB available (needs under {MEMORY_SHARE:.0%} of it)")
    return None


def fio_twin(files: ModelFiles, aio: AioLoadSettings) -> "FioJob":
    """fio reading the model file as the aio loader does: direct, sequential, same block size and queue
    depth, one job per aio thread on its own slice (fio reads whole blocks only: up to one short of the end)."""
    from pytest_nvme_ai.measure.aio.runner import AioSettings, twin_fio_job

    aligned = files.file_bytes - files.file_bytes % (aio.parallelism * 4096)
    if aligned <= 0:
        raise ModelLoadError(f"{files.weights} ({files.file_bytes} B) is smaller than {aio.parallelism} x 4 KiB: "
                             "nothing for a direct read")
    block = min(aio.block_size, aligned // aio.parallelism)   # a model file smaller than one block: one block
    return twin_fio_job(files.weights, aligned, AioSettings(block, aio.queue_depth, aio.parallelism))


class ModelLoadRunner:
    """The suite's `model_load` fixture: write a model on the target, measure cold loads, record them."""

    def __init__(self, target: "Target", recorder: "Recorder", aio: AioLoadSettings | None = None) -> None:
        self.target = target
        self.recorder = recorder
        self.aio = aio or AioLoadSettings()

    # ---- children ------------------------------------------------------------------------------
    def run_job(self, spec: WriteSpec | LoadSpec, stem: str) -> dict[str, Any]:
        """Run one child job; its result dict, or ModelLoadError with the child's words and log tail."""
        art = self.recorder.artifact_dir
        job, result, log = art / f"{stem}.job.json", art / f"{stem}.result.json", art / f"{stem}.log"
        job.write_text(json.dumps(spec.to_dict(), indent=1) + "\n", encoding="utf-8")
        result.unlink(missing_ok=True)
        exit_ = launch([sys.executable, "-m", CHILD_MODULE, str(job), str(result)], log, float(self.recorder.timeout))
        what = f"model_load {spec.op} ({getattr(spec, 'loader', getattr(spec, 'model', ''))})"
        tail = f"\n--- child log ({log}) ---\n{file_tail(log, 20)}"
        if exit_.timed_out:
            raise ModelLoadError(f"{what} timed out after {self.recorder.timeout} s (stopped){tail}")
        if not result.exists():
            code = exit_.returncode or 0
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            raise ModelLoadError(f"{what} died without a result ({how}; out of memory?){tail}")
        data = json.loads(result.read_text(encoding="utf-8"))
        if data.get("outcome") != "ok":
            raise ModelLoadError(f"{what} failed: {data.get('error')}{tail}")
        out: dict[str, Any] = dict(data["result"])
        if exit_.device_read_bytes is not None:
            out["device_read_bytes"] = exit_.device_read_bytes
        return out

    # ---- the model -----------------------------------------------------------------------------
    def model_files(self, model: str) -> ModelFiles:
        """The model's files on the target, written on first use in the session; NotHere when it cannot fit."""
        cache = self.recorder.session_cache
        got = cache.get(MODEL_FILES, self.target.label, model)
        if got is not None and got.weights.exists():
            return got
        from pytest_nvme_ai.measure.fio.runner import check_direct_io

        config = opt_config(model)
        reason = why_not_here(self.target.workdir, weight_bytes(config) + HEADER_ALLOWANCE)
        if reason:
            raise NotHere(f"{model}: {reason}")
        check_direct_io(self.target.workdir)   # DirectIOUnsupported (tmpfs): no fio twin, no aio, no eviction
        model_dir = self.target.inside("model_load", model)
        w = WriteResult.from_dict(self.run_job(WriteSpec(model, config, str(model_dir)), f"write-{model}"))
        files = ModelFiles(model, model_dir, Path(w.weights), w.file_bytes, w.tensors, w.seconds)
        return cache.put(MODEL_FILES, files, self.target.label, model)

    # ---- one load, one fio read ----------------------------------------------------------------
    def load(self, files: ModelFiles, loader: str, round_: int = 1) -> LoadResult:
        spec = LoadSpec(loader, str(files.model_dir), self.aio)
        return LoadResult.from_dict(self.run_job(spec, f"load-{loader}-{round_}"))

    def fio(self, files: ModelFiles, round_: int = 1) -> "FioResult":
        from pytest_nvme_ai.measure.fio.runner import run_fio

        return run_fio(fio_twin(files, self.aio), self.target.workdir, self.recorder.artifact_dir,
                       float(self.recorder.timeout), stem=f"fio-{round_}")

    # ---- the rounds, recorded ------------------------------------------------------------------
    def measure(self, files: ModelFiles, loader: str, rounds: int) -> LoaderRun:
        from pytest_nvme_ai.measure.fio.runner import fio_missing_reason

        fio_reason = fio_missing_reason()
        loads: list[LoadResult] = []
        fios: list[FioResult | None] = []
        for i in range(1, rounds + 1):
            if i % 2:
                loads.append(self.load(files, loader, i))
                fios.append(None if fio_reason else self.fio(files, i))
            else:
                fios.append(None if fio_reason else self.fio(files, i))
                loads.append(self.load(files, loader, i))
        run = LoaderRun(loader, files.model, tuple(loads), tuple(fios), {"fio_missing": fio_reason})
        self.record(files, run)
        return run

    def record(self, files: ModelFiles, run: LoaderRun) -> None:
        rec = self.recorder
        rec.record_samples("load_bw", [ld.bw for ld in run.loads])
        rec.record_samples("target_read_bytes", [float(ld.read_bytes) for ld in run.loads])
        ttft = [ld.ttft_seconds for ld in run.loads if ld.ttft_seconds is not None]
        if ttft:
            rec.record_samples("ttft_cold", ttft)
        if run.ratios:
            fio_bw = [f.bw_bytes for f in run.fio if f is not None]
            rec.record_samples("load_vs_fio", run.ratios)
            rec.set_extra("fio_bw", median(fio_bw))
            rec.set_extra("fio_bw_samples", fio_bw)
            rec.add_artifact("fio twin job file", rec.artifact_dir / "fio-1.fio")
        else:
            rec.note(f"load_vs_fio not measured: {run.facts.get('fio_missing')}")
        first = run.loads[0]
        rec.set_extra("model", files.model)
        rec.set_extra("model_file_bytes", files.file_bytes)
        rec.set_extra("model_tensors", files.tensors)
        rec.set_extra("loader", run.loader)
        rec.set_extra("loader_version", first.version)
        rec.set_extra("load_device", first.device)
        rec.set_extra("load_rounds", [ld.to_dict() for ld in run.loads])
        if run.loader == "deepspeed_aio":
            from pytest_nvme_ai.measure.deepspeed.version import aio_block

            rec.set_extra("aio", aio_block(block_size=self.aio.block_size, queue_depth=self.aio.queue_depth,
                                           parallelism=self.aio.parallelism))
        device = [ld.device_read_bytes for ld in run.loads if ld.device_read_bytes is not None]
        if device:
            rec.set_extra("device_read_bytes", device)
        low = [ld.read_bytes for ld in run.loads if ld.read_bytes < files.file_bytes // 2]
        if low:
            rec.note(f"{run.loader}: {len(low)} of {len(run.loads)} loads had storage read under half the "
                     f"{files.file_bytes} B file (/proc/self/io read_bytes {low}): this filesystem's reads may "
                     "not be counted per process; the page cache was checked empty before each load")
