"""Pytest side: run a ZeRO-Infinity training spec in a child process and record what it measured.

The toolkit's (measure/deepspeed/) child start/timeout/stop (`launch.run_one_shot`, on top of
procutil), outcome classification (`ok`, `oom` incl. the OOM killer's SIGKILL, `timeout`, `error`), op builds before
the clock starts (aio for NVMe, the CPU comm op, and here DeepSpeed's CPU Adam op) and artifacts
(spec, DeepSpeed config, log), as ZeRO-Inference uses them.

Swap files live in `<target.workdir>/zero_infinity/<test-slug>[-prefix]/` and are removed after each
run, also when the child was killed or timed out. A target too small for them is refused before the
run (`space_shortfall`); one that fills up during it (another writer, a low estimate) is named as
"target full" with the case's need (`explain_full_target`), not left as DeepSpeed's SIGABRT.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping


from pytest_nvme_ai.core.extras import TrainingExtra
from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.core.text import median
from pytest_nvme_ai.measure.deepspeed.config_blocks import AioSettingError, normalize_aio, parse_aio_json
from pytest_nvme_ai.measure.deepspeed.devtier import child_accounting, fail_on_dead_tier, tier_check
from pytest_nvme_ai.measure.deepspeed.endurance_use import record_endurance
from pytest_nvme_ai.measure.deepspeed.job import Job
from pytest_nvme_ai.measure.deepspeed.recording import (not_applicable, record_extras, record_metrics, record_params,
                                                        validate_or_skip)
from pytest_nvme_ai.measure.deepspeed.launch import (ChildRun, keep_run_artifacts, missing_reason, offload_dir,
                                                     run_one_shot, run_stem, tail_of)
from pytest_nvme_ai.measure.deepspeed.ops import (Progress, default_progress, detect_accelerator, ensure_adam_op,
                                                  ensure_aio_op, ensure_comm_op)
from pytest_nvme_ai.measure.deepspeed.options import RunnerOptions
from pytest_nvme_ai.measure.zero_infinity.ds_config import build_ds_config, model_info, swap_bytes_estimate
from pytest_nvme_ai.measure.zero_infinity.metrics import StepMeasurement, step_metrics
from pytest_nvme_ai.measure.zero_infinity.record import TrainingRecord
from pytest_nvme_ai.measure.zero_infinity.spec import SpecError, TrainingSpec

if TYPE_CHECKING:
    from pytest_nvme_ai.core.recorder import Recorder
    from pytest_nvme_ai.core.targets import Target

CHILD_MODULE = "pytest_nvme_ai.measure.zero_infinity"
SPACE_MARGIN = 64 << 20   # leave room so a run never fills the target to the last block
# A full target in a child's log: Python's ENOSPC, or DeepSpeed's aio reader finding a swap file shorter
# than it wrote (its writes fail silently when the disk is full; the read then asserts and aborts).
_FULL = re.compile(r"No space left on device|ENOSPC|\[Errno 28\]|file_offset \+ buffer nbytes > file bytes")


@dataclass(frozen=True)
class TrainingResult:
    """One training run as data: outcome, per-step measurements (warm-up apart), catalog metrics (empty
    unless ok), the DeepSpeed config it used, its log, and what the child saw."""

    spec: TrainingSpec
    outcome: str                                   # ok | oom | timeout | error
    error: str | None
    accelerator: str
    steps: tuple[StepMeasurement, ...]
    warmup: tuple[StepMeasurement, ...]
    metrics: Mapping[str, Metric] = field(hash=False)
    ds_config: Mapping[str, Any] = field(hash=False)
    facts: Mapping[str, Any] = field(hash=False)   # init time and bytes, swap files, optimizer class, versions
    log_path: Path | None = None
    log_tail: str = ""
    returncode: int | None = None
    wall_seconds: float = 0.0
    offload_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def losses(self) -> list[float]:
        """Every step's loss in order, warm-up first: the curve that must fall."""
        return [s.loss for s in self.warmup + self.steps]

    @property
    def swap_files(self) -> list[Mapping[str, Any]]:
        return list(self.facts.get("swap_files") or [])

    @property
    def read_bytes_per_step(self) -> float | None:
        return median(s.read_bytes for s in self.steps)

    @property
    def write_bytes_per_step(self) -> float | None:
        return median(s.write_bytes for s in self.steps)

    @property
    def step_time(self) -> float | None:
        return median(s.step_time for s in self.steps)


FACTS = ("init_seconds", "init_read_bytes", "init_write_bytes", "swap_files", "model_params", "optimizer",
         "basic_optimizer", "versions", "dtype", "device", "init_device_write_bytes")


def result_of(spec: TrainingSpec, accelerator: str, run: ChildRun[TrainingRecord], ds_config: Mapping[str, Any],
              offload_dir: Path) -> TrainingResult:
    """The runner's result from a classified child run."""
    r = run.record or TrainingRecord(outcome=run.outcome)
    metrics = step_metrics(r.steps, tokens_per_step=spec.tokens_per_step) if run.outcome == "ok" else {}
    facts = {k: v for k, v in r.to_dict().items() if k in FACTS} if run.record is not None else {}
    return TrainingResult(
        spec=spec, outcome=run.outcome, error=run.error, accelerator=r.accelerator or accelerator,
        steps=r.steps, warmup=r.warmup, metrics=metrics, ds_config=r.ds_config or ds_config, facts=facts,
        log_path=run.log, log_tail=tail_of(run.log), returncode=run.exit.returncode,
        wall_seconds=run.exit.seconds, offload_dir=offload_dir)


class ZeroInfinityRunner:
    """The `zero_infinity` fixture: `run(spec)` -> TrainingResult, recorded into the test."""

    def __init__(self, target: "Target", recorder: "Recorder", progress: Progress | None = None,
                 options: RunnerOptions | None = None) -> None:
        self.target = target
        self.recorder = recorder
        self.options = options or RunnerOptions()
        self.progress = progress or default_progress

    def run(self, spec: TrainingSpec, *, prefix: str | None = None) -> TrainingResult:
        """Run `spec` (skips when it cannot run here) and record it; `prefix` names a run among several."""
        accelerator = detect_accelerator()
        validate_or_skip(spec, accelerator, self.recorder, prefix)
        reason = self.unavailable(spec)
        if reason:
            not_applicable(self.recorder, prefix, reason)
        spec = self.with_aio(spec)
        ensure_comm_op(self.progress)
        result = self._run_fresh(spec, accelerator, prefix)
        self.record(result, prefix)
        return result

    def unavailable(self, spec: TrainingSpec) -> str | None:
        """Why this spec cannot run here (an op that does not build, a target too small), or None."""
        if spec.offloads_to_target:
            reason = ensure_aio_op(self.progress) or self.space_shortfall(spec)
            if reason:
                return reason
        if spec.offload_optimizer != "none":
            return ensure_adam_op(self.progress)
        return None

    def space_shortfall(self, spec: TrainingSpec) -> str | None:
        """DeepSpeed does not notice a full disk (its swap writes fail silently): check first."""
        free = shutil.disk_usage(self.target.workdir).free
        if free < swap_bytes_estimate(model_info(spec), spec) + SPACE_MARGIN:
            return (f"target {self.target.path} has {_size(free)} free; {self.space_need(spec)}: "
                    "free space or use a larger target")
        return None

    def space_need(self, spec: TrainingSpec) -> str:
        """What the case needs on the target, in words and figures."""
        swap = swap_bytes_estimate(model_info(spec), spec)
        return (f"training {spec.model_label} with {spec.offload_label} offload needs about "
                f"{_size(swap + SPACE_MARGIN)}: {_size(swap)} of swap files (16-bit parameters and/or fp32 master "
                f"weights with two Adam moments) plus a margin of {_size(SPACE_MARGIN)}")

    def explain_full_target(self, spec: TrainingSpec, run: ChildRun[TrainingRecord]) -> ChildRun[TrainingRecord]:
        """A run that failed because the target filled up says so, and how much the case needs, instead of
        DeepSpeed's SIGABRT and assertion (its swap writes fail silently; a later read aborts)."""
        if run.outcome == "ok" or not spec.offloads_to_target:
            return run
        seen = next((line.strip()[:200] for line in (tail_of(run.log, 200) + "\n" + (run.error or "")).splitlines()
                     if _FULL.search(line)), None)
        if seen is None:
            return run
        usage = shutil.disk_usage(self.target.workdir)
        how = run.error or f"exit status {run.exit.returncode}"
        return replace(run, outcome="error", error=(
            f"target full: {self.target.path} filled up during the run (the log: {seen!r}; the child "
            f"ended: {how}); {self.space_need(spec)}, and the target has {_size(usage.free)} free now, "
            f"of {_size(usage.total)}, with this run's swap files removed: free space on it or use a larger target"))

    def with_aio(self, spec: TrainingSpec) -> TrainingSpec:
        """The spec's aio block from --nvme-ai-aio (default | auto | JSON) for runs that swap to the target."""
        if not spec.offloads_to_target or spec.aio is not None:
            return spec
        setting = (self.options.aio or "default").strip()
        if setting == "default":
            return spec
        if setting == "auto":
            from pytest_nvme_ai.measure.aio.tune import tuned_aio_block

            block = tuned_aio_block(self.target, self.recorder)
            return spec.with_(aio=normalize_aio(block)) if block else spec
        try:
            return spec.with_(aio=parse_aio_json(setting))
        except AioSettingError as exc:
            raise SpecError(f"--nvme-ai-aio: {exc}") from None

    @property
    def timeout(self) -> float:
        return float(self.options.timeout if self.options.timeout is not None else self.recorder.timeout)

    def offload_dir(self, prefix: str | None) -> Path:
        """<workdir>/zero_infinity/<test-slug>[-prefix]/: removed after each run."""
        return offload_dir(self.target, "zero_infinity", self.recorder.nodeid, prefix)

    def _run_fresh(self, spec: TrainingSpec, accelerator: str, prefix: str | None) -> TrainingResult:
        swap_dir = self.offload_dir(prefix)
        nvme_path = swap_dir / spec.id if spec.offloads_to_target else None
        try:
            ds = build_ds_config(spec, model_info(spec), accelerator=accelerator, nvme_path=nvme_path)
        except ValueError as exc:
            raise SpecError(str(exc)) from None
        job = Job(spec=spec.to_dict(), ds_config=ds, accelerator=accelerator,
                  nvme_path=str(nvme_path) if nvme_path else None)
        with child_accounting(nvme_path) as acct:  # the child counts its own device bytes per step
            run = run_one_shot(job, TrainingRecord, artifact_dir=Path(self.recorder.artifact_dir),
                               stem=run_stem(spec.id, prefix), timeout=self.timeout, module=CHILD_MODULE,
                               swap_dir=swap_dir, wrap=acct.wrap() if acct is not None else ())
            # optimizer states: 12 bytes per parameter
        return result_of(spec, accelerator, self.explain_full_target(spec, run), ds, swap_dir)

    def record(self, result: TrainingResult, prefix: str | None = None) -> None:
        rec, spec = self.recorder, result.spec
        record_params(rec, spec.params(result.accelerator), prefix)
        swap = result.swap_files
        record_extras(rec, ((TrainingExtra.RUN_OUTCOME, result.outcome), ("accelerator", result.accelerator),
                           (TrainingExtra.LOG_TAIL, result.log_tail if not result.ok else result.log_tail[-1500:]),
                           ("run_error", result.error), (TrainingExtra.LOSS_CURVE, result.losses),
                           ("warmup_step_time", [s.step_time for s in result.warmup]),
                           ("swap_files", len(swap)), ("swap_bytes", sum(int(f.get("bytes", 0)) for f in swap)),
                           ("init_seconds", result.facts.get("init_seconds")),
                           ("init_write_bytes", result.facts.get("init_write_bytes")),
                           ("optimizer", result.facts.get("basic_optimizer")),
                           ("versions", dict(result.facts.get("versions") or {}))), prefix)
        record_metrics(rec, result.metrics.values(), prefix)
        keep_run_artifacts(rec, spec.id, spec.to_json(), result.ds_config, result.log_path, prefix)
        self.record_device(result, prefix)

    def record_device(self, result: TrainingResult, prefix: str | None) -> None:
        """What reached the drive per step, the endurance projection, and the tier check (a dead tier fails)."""
        if not result.ok or not result.spec.offloads_to_target:
            return
        info = dict(result.facts.get("device") or {})
        steps = list(result.steps)
        check = tier_check(f"ZeRO-Infinity {result.spec.offload_label} offload at {info.get('nvme_path') or 'the target'}",
                           info, [s.device_read_bytes for s in steps], [s.device_write_bytes for s in steps],
                           None, sum(s.write_bytes for s in steps))
        if check.device is not None:
            every = list(result.warmup) + steps
            run_written = int(result.facts.get("init_device_write_bytes") or 0) + sum(
                s.device_write_bytes or 0 for s in every)
            record_endurance(self.recorder, self.options, self.target.workdir, check.device.write_bytes,
                             sum(s.step_time for s in steps), run_written, prefix)
        fail_on_dead_tier(self.recorder, check, prefix)


def _size(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 1 << 30 else f"{n / 2**20:.1f} MiB"


def training_missing_reason() -> str | None:
    """None when torch, DeepSpeed and transformers are importable (checked without importing them)."""
    return missing_reason()
