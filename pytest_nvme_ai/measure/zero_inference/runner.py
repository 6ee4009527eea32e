"""Run a ZeRO-Inference spec in a child process and record what it measured.

Pytest side. Outcomes are data, never a dead pytest (measure/deepspeed/outcome.py: `ok`, `oom`,
`timeout`, `error`); launching, classifying and keeping artifacts are the toolkit's
(measure/deepspeed/launch.py), shared with ZeRO-Infinity. The runner records the outcome and the log tail into the test; the
suite decides what an outcome means for the test (see suites/test_zero_inference.py).

Offload files live in `<target.workdir>/zero_inference/<test-slug>/` and are
removed after each run. The DeepSpeed config the run used, the spec and the
child's log are kept as artifacts.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence


from pytest_nvme_ai.core.cache import CacheKey, SessionCache
from pytest_nvme_ai.core.extras import InferenceExtra
from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.core.text import median
from pytest_nvme_ai.measure.deepspeed.devtier import (TierCheck, child_accounting, fail_on_dead_tier, tier_check,
                                                      tier_on_device)
from pytest_nvme_ai.measure.deepspeed.config_blocks import AioSettingError, normalize_aio, parse_aio_json
from pytest_nvme_ai.measure.deepspeed.job import Job
from pytest_nvme_ai.measure.deepspeed.launch import (ChildRun, keep_run_artifacts, missing_reason, offload_dir,
                                                     run_one_shot, run_stem, tail_of)
from pytest_nvme_ai.measure.deepspeed.models import equal_offload_max_block, resolve_model
from pytest_nvme_ai.measure.deepspeed.ops import (Progress, default_progress, detect_accelerator, ensure_comm_op,
                                                  ensure_offload_ops)
from pytest_nvme_ai.measure.deepspeed.options import RunnerOptions
from pytest_nvme_ai.measure.zero_inference.ds_config import build_ds_config
from pytest_nvme_ai.measure.deepspeed.recording import (not_applicable, prefixed, record_extras, record_metrics,
                                                        record_params, validate_or_skip)
from pytest_nvme_ai.measure.zero_inference.metrics import LoopMeasurement, loop_metrics
from pytest_nvme_ai.measure.zero_inference.record import InferenceRecord
from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec, SpecError

if TYPE_CHECKING:
    from pytest_nvme_ai.core.recorder import Recorder
    from pytest_nvme_ai.core.targets import Target

CHILD_MODULE = "pytest_nvme_ai.measure.zero_inference"


def inference_missing_reason() -> str | None:
    """None when torch, DeepSpeed and transformers are importable (checked without importing them)."""
    return missing_reason()


@dataclass(frozen=True)
class InferenceResult:
    """One run as data: its outcome, per-loop measurements and catalog metrics (empty unless ok), the
    DeepSpeed config it used, where its log is, and what the child saw (accelerator, versions, swap files)."""

    spec: InferenceSpec
    outcome: str                                  # ok | oom | timeout | error
    error: str | None
    accelerator: str
    dtype: str | None
    loops: tuple[LoopMeasurement, ...]            # measured loops (one metric sample each)
    warmup: tuple[LoopMeasurement, ...]
    metrics: Mapping[str, Metric] = field(hash=False)
    ds_config: Mapping[str, Any] = field(hash=False)
    versions: Mapping[str, Any] = field(hash=False)
    swap_files: tuple[Mapping[str, Any], ...] = ()  # DeepSpeed's *.swp files, listed by the child after init
    # per parameter {name, numel, swapped}: which ones DeepSpeed put in the swap files (child, after init)
    residency: tuple[Mapping[str, Any], ...] = ()
    log_path: Path | None = None
    log_tail: str = ""
    returncode: int | None = None
    wall_seconds: float = 0.0
    init_seconds: float | None = None
    swap_sync_seconds: float | None = None   # fsync of the swap files after the build (child.sync_swap_files)
    energy: Mapping[str, Any] = field(default_factory=dict, hash=False)  # the child's meter and why a counter is missing
    device: Mapping[str, Any] = field(default_factory=dict, hash=False)  # how device bytes were counted, or why not
    build_device_write_bytes: int | None = None   # the engine's build (swap files written); None when reused

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def target_read_bytes(self) -> float | None:
        return median(lp.read_bytes for lp in self.loops)

    @property
    def decode_read_bytes_per_step(self) -> float | None:
        return median(v for lp in self.loops if (v := lp.decode_read_bytes_per_step) is not None)

    @property
    def decode_steps(self) -> int | None:
        return self.loops[0].decode_steps if self.loops else None

    @property
    def swap_read_request(self) -> int:
        """Bytes of swap files times forward passes over the measured loops: the scale of what the tier
        moves (DeepSpeed keeps some parameters between passes: read_amplification was 0.76 for OPT-125m),
        used only to judge a dead tier, whose threshold (1%) is far below that factor."""
        return self.offloaded_bytes * sum(lp.forward_calls for lp in self.loops)

    def tier_check(self) -> TierCheck | None:
        """What reached the drive over the measured loops (None unless offloaded to NVMe and ok).
        The leak rule compares with the child's own block-layer reads (/proc/self/io read_bytes: bytes its
        reads made the block layer fetch, on any device): it catches I/O that did not reach the target's
        disk in the child's cgroup; the dead-tier rule compares with `swap_read_request`."""
        if self.spec.offload != "nvme" or not self.ok:
            return None
        where = self.device.get("nvme_path") or "the target"
        return tier_check(f"ZeRO-Inference offload_param nvme at {where} ({self.offloaded_bytes} B of swap files)",
                          self.device, [lp.device_read_bytes for lp in self.loops],
                          [lp.device_write_bytes for lp in self.loops], sum(lp.read_bytes for lp in self.loops),
                          tier_bytes=self.swap_read_request or None)

    @property
    def offloaded_bytes(self) -> int:
        """Bytes of parameters on the target: the swap files' sizes (0 unless offloaded to NVMe)."""
        return sum(int(f.get("bytes", 0)) for f in self.swap_files)

    @property
    def offloaded_fraction(self) -> float | None:
        """Swapped parameters' elements / all parameters' elements: the share of the model's parameter
        bytes (all one dtype) that streams from the target. None when the child listed no parameters."""
        return offloaded_fraction(self.residency)

    def streaming_layers(self) -> dict[int, int]:
        """Decoder layer index -> how many of its parameters are in the swap files."""
        return streaming_layers(self.residency)


_LAYER = re.compile(r"\.layers\.(\d+)\.")


def offloaded_fraction(residency: Sequence[Mapping[str, Any]]) -> float | None:
    total = sum(int(p["numel"]) for p in residency)
    return sum(int(p["numel"]) for p in residency if p.get("swapped")) / total if total else None


def streaming_layers(residency: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for p in residency:
        if (m := _LAYER.search(str(p["name"]))) is not None:
            out[int(m.group(1))] = out.get(int(m.group(1)), 0) + int(bool(p.get("swapped")))
    return dict(sorted(out.items()))


def result_of(spec: InferenceSpec, accelerator: str, run: ChildRun[InferenceRecord],
              ds_config: Mapping[str, Any]) -> InferenceResult:
    """The runner's result from a classified child run (one-shot or a worker's case alike)."""
    r = run.record or InferenceRecord(outcome=run.outcome)
    metrics = loop_metrics(r.loops, batch_size=spec.batch_size, prompt_len=spec.prompt_len,
                           gen_len=spec.gen_len) if run.outcome == "ok" else {}
    return InferenceResult(
        spec=spec, outcome=run.outcome, error=run.error, accelerator=r.accelerator or accelerator, dtype=r.dtype,
        loops=r.loops, warmup=r.warmup, metrics=metrics, ds_config=r.ds_config or ds_config,
        versions=r.versions, swap_files=r.swap_files, residency=r.param_residency,
        log_path=run.log, log_tail=tail_of(run.log), returncode=run.exit.returncode,
        wall_seconds=run.exit.seconds, init_seconds=r.init_seconds, swap_sync_seconds=r.swap_sync_seconds,
        energy=r.energy, device=r.device,
        build_device_write_bytes=None if r.engine_reused else r.build_device_write_bytes,
    )


def record_energy_note(rec: "Recorder", energy: Mapping[str, Any], prefix: str | None) -> None:
    """Which counters measured the energy metrics, and why any is missing (the metrics are then absent)."""
    if not energy:
        return
    rec.set_extra(f"{prefix}_energy_meter" if prefix else "energy_meter", energy.get("meter"))
    for reason in energy.get("reasons") or ():
        rec.note(f"{prefix + ': ' if prefix else ''}energy not recorded: {reason}")


# (target label, accelerator, spec JSON) -> an earlier run of the same spec this session (reuse=True).
INFERENCE_RUNS = CacheKey[InferenceResult]("zero_inference", "runs kept for reuse within the session")
# What a later case may reuse: a run that measured, or one that did not fit in memory (the OOM killer or
# an allocation failure: it would again; the suite then falls back to CPU offload). A timed-out, killed or
# crashed run says nothing about the next case, which measures the spec afresh (sweep 3: one stopped
# worker failed two cases).
CACHED_OUTCOMES = ("ok", "oom")


class ZeroInferenceRunner:
    """The `zero_inference` fixture: `run(spec)` -> InferenceResult, recorded into the test."""

    def __init__(self, target: "Target", recorder: "Recorder", progress: Progress | None = None,
                 loop_progress: Progress | None = None, position: str | None = None,
                 options: RunnerOptions | None = None) -> None:
        self.target = target
        self.recorder = recorder
        self.options = options or RunnerOptions()
        self.progress = progress or default_progress
        self.loop_progress = loop_progress  # per-loop lines (the plugin passes one at -v and above)
        self.position = position            # "3/12": this case among the session's inference tests

    @property
    def accelerator(self) -> str:
        return detect_accelerator()

    def run(self, spec: InferenceSpec, *, prefix: str | None = None, reuse: bool = False, record: bool = True,
            wrap: Sequence[str] = ()) -> InferenceResult:
        """Run `spec` (skips when it cannot run here) and record it; `prefix` names a run among several.

        record=False runs it without recording metrics into the test (a reference run, such as the
        resident-weights run the roofline takes t_compute from). `wrap` prefixes the child's command
        (a cgroup-joining wrapper, measure.throttle); a wrapped run is never reused nor cached."""
        accelerator = detect_accelerator()
        validate_or_skip(spec, accelerator, self.recorder, prefix)
        if spec.offload == "nvme":
            reason = self.prepare() or self.space_shortfall(spec)
            if reason:
                not_applicable(self.recorder, prefix, reason)
            if record:  # a swap folder with no block device under it is a dead tier before any run
                dead = tier_on_device(f"ZeRO-Inference offload_param nvme under {self.target.workdir}",
                                      self.target.workdir)
                if dead is not None:
                    fail_on_dead_tier(self.recorder, TierCheck(dead.message, None, None, None, (dead,)), prefix)
        spec = self.with_aio(spec)  # after the skips: never tune a target for a run that cannot happen
        self.start_fork_server()
        ensure_comm_op(self.progress)
        cache = self._cache()
        key = (self.target.label, accelerator, spec.to_json())
        result = cache.get(INFERENCE_RUNS, *key) if reuse and not wrap else None
        if result is None:
            result = self._run_fresh(spec, accelerator, prefix, wrap)
            if not wrap and result.outcome in CACHED_OUTCOMES:
                cache.put(INFERENCE_RUNS, result, *key)
        else:
            self.recorder.note(f"{prefix or 'run'} {spec.id}: reused this session's earlier run of the same spec")
        if record:
            self.record(result, prefix)
        return result

    def prepare(self) -> str | None:
        """Start the fork server (its imports overlap the op checks), then build or load DeepSpeed's ops
        (minutes the first time, visibly, before any run's clock starts); why NVMe offload cannot run
        here, or None. Cached per process: every call after the first is free."""
        self.start_fork_server()
        return ensure_offload_ops(self.progress)

    def start_fork_server(self) -> None:
        """When workers are forked (--nvme-ai-engine-reuse and --nvme-ai-fork-workers, the defaults), start
        the session's fork server now; the session's ChildRegistry stops it at the end."""
        if self.options.engine_reuse and self.options.fork_workers:
            from pytest_nvme_ai.measure.zero_inference.pool import start_fork_server

            start_fork_server(detect_accelerator(), self.recorder.children)

    def space_shortfall(self, spec: InferenceSpec) -> str | None:
        """Why the target cannot hold this run's swap files, or None. DeepSpeed does not notice a full
        disk (its swap writes fail silently), so check first; 16-bit size bounds the quantized one."""

        weights = resolve_model(spec.model).param_count * 2
        need = int(weights * 1.1) + (64 << 20)
        free = shutil.disk_usage(self.target.workdir).free
        if free < need:
            return (f"target {self.target.path} has {free / 2**30:.2f} GiB free; offloading {spec.model} needs "
                    f"about {need / 2**30:.2f} GiB: {weights / 2**30:.2f} GiB of 16-bit swap files plus a margin "
                    f"of 10% + 64 MiB ({(need - weights) / 2**30:.2f} GiB): free space or use a larger target")
        return None

    def with_aio(self, spec: InferenceSpec) -> InferenceSpec:
        """Fill the spec's aio block from --nvme-ai-aio (default | auto | JSON) for NVMe runs."""
        if spec.offload != "nvme" or spec.aio is not None:
            return spec
        setting = (self.options.aio or "default").strip()
        if setting == "default":
            return spec
        if setting == "auto":
            block = self._tuned_aio(spec)
            return spec.with_(aio=block) if block else spec
        try:
            return spec.with_(aio=parse_aio_json(setting))
        except AioSettingError as exc:
            raise SpecError(f"--nvme-ai-aio: {exc}") from None

    def _tuned_aio(self, spec: InferenceSpec) -> dict[str, Any] | None:
        """The tuner's block (it tunes once per target, session and block bound, and records its extras in
        each test), searched only over block sizes that offload the same tensors as DeepSpeed's default:
        the tuner must not win by offloading less (models.equal_offload_max_block)."""
        try:
            from pytest_nvme_ai.measure.aio.tune import BLOCK_SIZES, tuned_aio_block
        except ImportError as exc:
            self.recorder.note(f"--nvme-ai-aio auto: no tuner available ({exc}); DeepSpeed's aio defaults used")
            return None
        bpe = (spec.quant_bits or 16) / 8
        max_block = equal_offload_max_block(resolve_model(spec.model), bpe, BLOCK_SIZES)
        self.recorder.note(f"--nvme-ai-aio auto: block sizes up to {max_block >> 10} KiB searched; a larger block "
                           f"would keep some of {spec.model}'s weights in memory (equal offloaded bytes)")
        return normalize_aio(tuned_aio_block(self.target, self.recorder, max_block_size=max_block))

    def _cache(self) -> SessionCache:
        return self.recorder.session_cache

    @property
    def timeout(self) -> float:
        return float(self.options.timeout if self.options.timeout is not None else self.recorder.timeout)

    def offload_dir(self, prefix: str | None) -> Path:
        """<workdir>/zero_inference/<test-slug>[-prefix]/: removed after each run."""
        return offload_dir(self.target, "zero_inference", self.recorder.nodeid, prefix)

    def _run_fresh(self, spec: InferenceSpec, accelerator: str, prefix: str | None,
                   wrap: Sequence[str] = ()) -> InferenceResult:
        if self.options.engine_reuse:
            return self._run_in_worker(spec, accelerator, prefix, wrap)
        swap_dir = self.offload_dir(prefix)
        nvme_path = swap_dir / spec.id if spec.offload == "nvme" else None
        try:
            ds = build_ds_config(spec, resolve_model(spec.model), accelerator=accelerator, nvme_path=nvme_path)
        except ValueError as exc:
            raise SpecError(str(exc)) from None
        job = Job(spec=spec.to_dict(), ds_config=ds, accelerator=accelerator,
                  nvme_path=str(nvme_path) if nvme_path else None)
        with child_accounting(nvme_path if not wrap else None) as acct:  # a capped child is in its cgroup already
            run = run_one_shot(job, InferenceRecord, artifact_dir=Path(self.recorder.artifact_dir),
                               stem=run_stem(spec.id, prefix), timeout=self.timeout, module=CHILD_MODULE,
                               wrap=acct.wrap() if acct is not None else wrap, swap_dir=swap_dir)
        return result_of(spec, accelerator, run, ds)

    def _run_in_worker(self, spec: InferenceSpec, accelerator: str, prefix: str | None,
                       wrap: Sequence[str] = ()) -> InferenceResult:
        """The case in its engine's persistent worker (dispatch.py), classified like a one-shot child.
        A wrapped (capped) case gets a fresh worker started inside the cgroup, closed after the case."""
        from pytest_nvme_ai.measure.zero_inference.dispatch import run_in_worker

        run, ds = run_in_worker(spec, accelerator, prefix, target=self.target, recorder=self.recorder,
                                timeout=self.timeout, fork=self.options.fork_workers,
                                loop_progress=self.loop_progress, position=self.position, wrap=wrap)
        return result_of(spec, accelerator, run, ds)

    def record(self, result: InferenceResult, prefix: str | None = None) -> None:
        rec, spec = self.recorder, result.spec
        record_params(rec, spec.params(result.accelerator), prefix)
        record_extras(rec, ((InferenceExtra.RUN_OUTCOME, result.outcome), ("accelerator", result.accelerator),
                           (InferenceExtra.LOG_TAIL, result.log_tail if not result.ok else result.log_tail[-1500:]),
                           ("decode_read_bytes_per_step", result.decode_read_bytes_per_step),
                           ("decode_steps", result.decode_steps), ("run_error", result.error),
                           ("swap_files", len(result.swap_files)),
                           ("streaming_layers", {str(k): v for k, v in result.streaming_layers().items()}),
                           ("init_seconds", result.init_seconds), ("swap_sync_seconds", result.swap_sync_seconds),
                           ("build_device_write_bytes", result.build_device_write_bytes),
                           ("versions", dict(result.versions))), prefix)
        if spec.offload == "nvme" and result.ok:
            # What streams depends on the aio block (DeepSpeed swaps a tensor only if it has at least
            # max(1 MiB, block_size) bytes): a param, so a baseline with another fraction is incomparable.
            fraction = result.offloaded_fraction
            if fraction is not None:
                if prefix:
                    rec.set_extra(f"{prefix}_params", {**spec.params(result.accelerator),
                                                       "offloaded_fraction": round(fraction, 3)})
                else:
                    rec.set_params(offloaded_fraction=round(fraction, 3))
            rec.record(prefixed(Metric.of("offloaded_bytes", [float(result.offloaded_bytes)]), prefix)
                       if prefix else Metric.of("offloaded_bytes", [float(result.offloaded_bytes)]))
            # Read amplification (issue 15): bytes read from the target per decode pass / offloaded bytes.
            # 1.0 = each pass streams the swapped weights once; more = re-reads (small aio blocks, evictions).
            amp = [v / result.offloaded_bytes for lp in result.loops
                   if (v := lp.decode_read_bytes_per_step) is not None] if result.offloaded_bytes else []
            if amp:
                m = Metric.of("read_amplification", amp)
                rec.record(prefixed(m, prefix) if prefix else m)
        record_metrics(rec, result.metrics.values(), prefix)
        record_energy_note(rec, result.energy, prefix)
        keep_run_artifacts(rec, spec.id, spec.to_json(), result.ds_config, result.log_path, prefix)
        self.record_device(result, prefix)

    def record_device(self, result: InferenceResult, prefix: str | None) -> None:
        """What reached the drive (notes, the devtruth extra); a dead tier fails the test (after the metrics
        and artifacts are recorded, so the report shows what was measured)."""
        check = result.tier_check()
        if check is not None:
            fail_on_dead_tier(self.recorder, check, prefix)
