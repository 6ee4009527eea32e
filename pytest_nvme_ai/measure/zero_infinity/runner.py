"""Run a ZeRO-Infinity training spec in a child process and record what it measured.

The inference runner's structure, reused: the same child start/timeout/stop (`run_child`, on top of
procutil), the same outcome classification (`ok`, `oom` incl. SIGKILL, `timeout`, `error`), the
same op builds before the clock starts (aio for NVMe, the CPU comm op, and here DeepSpeed's CPU
Adam op), the same artifacts (spec, DeepSpeed config, log).

Swap files live in `<target.workdir>/zero_infinity/<test-slug>[-prefix]/` and are removed after each
run, also when the child was killed or timed out.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import pytest

from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.measure.deepspeed.ops import (Progress, default_progress, detect_accelerator, ensure_adam_op,
                                                  ensure_aio_op, ensure_comm_op)
from pytest_nvme_ai.measure.zero_inference.ds_config import AioSettingError, normalize_aio, parse_aio_json
from pytest_nvme_ai.core.text import median
from pytest_nvme_ai.measure.zero_inference.metrics import prefixed
from pytest_nvme_ai.measure.zero_inference.runner import ChildExit, classify, keep_run_artifacts, run_child, tail_of
from pytest_nvme_ai.measure.zero_infinity.ds_config import build_ds_config, model_info, swap_bytes_estimate
from pytest_nvme_ai.measure.zero_infinity.metrics import StepMeasurement, step_metrics
from pytest_nvme_ai.measure.zero_infinity.spec import SpecError, SpecNotApplicable, TrainingSpec

if TYPE_CHECKING:
    from pytest_nvme_ai.core.recorder import Recorder
    from pytest_nvme_ai.core.targets import Target

CHILD_MODULE = "pytest_nvme_ai.measure.zero_infinity"
SPACE_MARGIN = 64 << 20   # leave room so a run never fills the target to the last block


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


def result_from_child(spec: TrainingSpec, accelerator: str, data: Mapping[str, Any] | None, outcome: str,
                      error: str | None, ds_config: Mapping[str, Any], log: Path, exit_: ChildExit,
                      offload_dir: Path) -> TrainingResult:
    data = data or {}
    steps = tuple(StepMeasurement.from_dict(d) for d in data.get("steps", []))
    metrics = step_metrics(steps, tokens_per_step=spec.tokens_per_step) if outcome == "ok" else {}
    facts = {k: data[k] for k in ("init_seconds", "init_read_bytes", "init_write_bytes", "swap_files",
                                  "model_params", "optimizer", "basic_optimizer", "versions", "dtype") if k in data}
    return TrainingResult(
        spec=spec, outcome=outcome, error=error, accelerator=str(data.get("accelerator") or accelerator),
        steps=steps, warmup=tuple(StepMeasurement.from_dict(d) for d in data.get("warmup", [])),
        metrics=metrics, ds_config=data.get("ds_config") or ds_config, facts=facts, log_path=log,
        log_tail=tail_of(log), returncode=exit_.returncode, wall_seconds=exit_.seconds, offload_dir=offload_dir)


class ZeroInfinityRunner:
    """The `zero_infinity` fixture: `run(spec)` -> TrainingResult, recorded into the test."""

    def __init__(self, target: "Target", recorder: "Recorder", progress: Progress | None = None) -> None:
        self.target = target
        self.recorder = recorder
        self.progress = progress or default_progress

    def run(self, spec: TrainingSpec, *, prefix: str | None = None) -> TrainingResult:
        """Run `spec` (skips when it cannot run here) and record it; `prefix` names a run among several."""
        accelerator = detect_accelerator()
        try:
            spec.validate(accelerator)
        except SpecNotApplicable as exc:
            self._extra(prefix, "run_outcome", "not_applicable")
            pytest.skip(str(exc))
        reason = self.unavailable(spec)
        if reason:
            self._extra(prefix, "run_outcome", "not_applicable")
            pytest.skip(reason)
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
        need = swap_bytes_estimate(model_info(spec), spec) + SPACE_MARGIN
        free = shutil.disk_usage(self.target.workdir).free
        if free < need:
            return (f"target {self.target.path} has {free / 2**30:.2f} GiB free; training {spec.model_label} with "
                    f"{spec.offload_label} offload needs about {need / 2**30:.2f} GiB of swap files: "
                    "free space or use a larger target")
        return None

    def with_aio(self, spec: TrainingSpec) -> TrainingSpec:
        """The spec's aio block from --nvme-ai-aio (default | auto | JSON) for runs that swap to the target."""
        if not spec.offloads_to_target or spec.aio is not None:
            return spec
        setting = str(getattr(self.recorder, "aio_setting", "default") or "default").strip()
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

    def offload_dir(self, prefix: str | None) -> Path:
        """<workdir>/zero_infinity/<test-slug>[-prefix]/: removed after each run."""
        slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.recorder.nodeid.rsplit("::", 1)[-1]).strip("_")[:80]
        name = f"{slug}-{prefix}" if prefix else slug
        d = self.target.inside("zero_infinity", name or "run")
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _run_fresh(self, spec: TrainingSpec, accelerator: str, prefix: str | None) -> TrainingResult:
        offload_dir = self.offload_dir(prefix)
        nvme_path = offload_dir / spec.id if spec.offloads_to_target else None
        try:
            ds = build_ds_config(spec, model_info(spec), accelerator=accelerator, nvme_path=nvme_path)
        except ValueError as exc:
            raise SpecError(str(exc)) from None
        stem = f"{prefix}-{spec.id}" if prefix else spec.id
        art = Path(self.recorder.artifact_dir)
        job, result_path, log = art / f"{stem}.job.json", art / f"{stem}.result.json", art / f"{stem}.log"
        result_path.unlink(missing_ok=True)
        job.write_text(json.dumps({"spec": spec.to_dict(), "ds_config": ds, "accelerator": accelerator,
                                   "nvme_path": str(nvme_path) if nvme_path else None}, indent=2), encoding="utf-8")
        try:
            exit_ = run_child(job, result_path, log, float(self.recorder.timeout), module=CHILD_MODULE)
        finally:
            shutil.rmtree(offload_dir, ignore_errors=True)  # optimizer states: 12 bytes per parameter
        data = json.loads(result_path.read_text(encoding="utf-8")) if result_path.exists() else None
        outcome, error = classify(exit_.returncode, exit_.timed_out, data, tail_of(log))
        if exit_.timed_out:
            error = f"killed after {self.recorder.timeout} s ({error})"
        return result_from_child(spec, accelerator, data, outcome, error, ds, log, exit_, offload_dir)

    def record(self, result: TrainingResult, prefix: str | None = None) -> None:
        rec, spec = self.recorder, result.spec
        if prefix:
            rec.set_extra(f"{prefix}_params", spec.params(result.accelerator))
        else:
            rec.set_params(**spec.params(result.accelerator))
        swap = result.swap_files
        for key, value in (("run_outcome", result.outcome), ("accelerator", result.accelerator),
                           ("log_tail", result.log_tail if not result.ok else result.log_tail[-1500:]),
                           ("run_error", result.error), ("loss_curve", result.losses),
                           ("warmup_step_time", [s.step_time for s in result.warmup]),
                           ("swap_files", len(swap)), ("swap_bytes", sum(int(f.get("bytes", 0)) for f in swap)),
                           ("init_seconds", result.facts.get("init_seconds")),
                           ("init_write_bytes", result.facts.get("init_write_bytes")),
                           ("optimizer", result.facts.get("basic_optimizer")),
                           ("versions", dict(result.facts.get("versions") or {}))):
            self._extra(prefix, key, value)
        for metric in result.metrics.values():
            rec.record(prefixed(metric, prefix) if prefix else metric)
        self._artifacts(result, prefix)

    def _artifacts(self, result: TrainingResult, prefix: str | None) -> None:
        keep_run_artifacts(self.recorder, result.spec.id, result.spec.to_json(), result.ds_config,
                           result.log_path, prefix)

    def _extra(self, prefix: str | None, key: str, value: Any) -> None:
        self.recorder.set_extra(f"{prefix}_{key}" if prefix else key, value)


def training_missing_reason() -> str | None:
    """None when torch, DeepSpeed and transformers are importable (the inference runner's check)."""
    from pytest_nvme_ai.measure.zero_inference.runner import inference_missing_reason

    return inference_missing_reason()
