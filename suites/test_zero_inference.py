"""DeepSpeed ZeRO-Inference with parameters offloaded to the target (and to CPU memory, side by side).

Each case runs `generate` in a child process (warm-up, then the profile's
measured loops) and records prefill/decode/total latency and throughput,
peak memory, and the bytes the run read from the target. The grid depends on
the profile:

* quick    – random OPT-125m (its decoder matrices are above DeepSpeed's 1 MiB swap
  threshold, so the layers stream) on whatever accelerator is there (CPU in CI: bf16,
  gloo): NVMe offload at batch 1 and 2, 4-bit weights, no offload as the reference,
  and a KV-offload case that skips off CUDA.

Each NVMe-offloaded case also records its two bounds (docs/roofline.md): t_io from fio
on the same target this session, t_compute from the same spec with the weights resident
(offload none, or cpu where none does not fit), and the offloaded bytes and fraction.
* standard – OPT-1.3B and OPT-6.7B on a GPU, prompt 512, gen 32.
* full     – the seed matrix: OPT-13B/30B/66B, 4-bit weights, KV-cache offload,
  batch 32..140, prompt 512, gen 32.

`test_nvme_vs_cpu` runs the same model and batch with CPU and NVMe offload and
records `nvme_vs_cpu_throughput` (NVMe total throughput / CPU total throughput,
per loop): the figure that says what the drive costs against host memory. Both
sides run back to back, so drift (the build machines' burst credits, a noisy
neighbour) hits both alike; only the `full` profile, where one run takes many
minutes, reuses the NVMe run of the identical spec made earlier in the session.

What an outcome means for the test (the outcome itself is always recorded, as
extras `run_outcome` and `log_tail`, before the test decides):

* `ok`      – the test asserts the run really happened as specified: every loop
  generated `gen_len` tokens, metrics were recorded, and an NVMe-offloaded run
  read from the target (`target_read_bytes` > 0) through DeepSpeed's swap files.
* `oom`     – a *result* where the case is marked `may_oom` (CPU offload of a
  30B+ model, batch >= 128: the seed study's edge of what fits): the test passes
  with the outcome recorded and no throughput metrics. Anywhere else it fails.
* `timeout` / `error` – the test fails with the log tail: a run that never
  finished is not a measurement.
* a spec this accelerator cannot run (KV-cache offload without CUDA) – skipped
  with the reason; a case needing a GPU carries the `gpu` marker.

No test asserts an absolute latency or throughput: the gate compares them with
the baseline of the same device.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pytest

from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.core.profiles import InferenceCase, Profile
from pytest_nvme_ai.run.session import profile_of
from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec


@dataclass(frozen=True)
class Case(InferenceCase):
    """A grid point of the profile (its fields: core.profiles.InferenceCase) with what the tests need."""

    @property
    def id(self) -> str:
        return self.spec_for(self.offload).id.replace(f"-p{self.prompt_len}-g{self.gen_len}", "")

    @property
    def pair_id(self) -> str:
        return self.id.replace(f"-{self.offload}", "")

    def spec_for(self, offload: str, profile: Profile | None = None) -> InferenceSpec:
        loops, warmup = (profile.zi_loops, profile.zi_warmup) if profile else (3, 1)
        # GPU cases pin host buffers as the seed's runs did (faster host-to-GPU copies); CPU has nothing to pin.
        return InferenceSpec(model=self.model, batch_size=self.batch_size, offload=offload,  # type: ignore[arg-type]
                             quant_bits=self.quant_bits, kv_offload=self.kv_offload, prompt_len=self.prompt_len,
                             gen_len=self.gen_len, pin_memory=self.gpu, loops=loops, warmup=warmup)

    def may_oom(self, offload: str) -> bool:
        """The seed study's edge: host memory for CPU offload of 30B+, GPU memory at batch >= 128."""
        big = self.model in ("opt-30b", "opt-66b")
        return self.batch_size >= 128 or (offload == "cpu" and big)




def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    profile = profile_of(metafunc.config)
    kind = "pair" if metafunc.function.__name__ == "test_nvme_vs_cpu" else "single"
    cases = [Case(**asdict(c)) for c in (profile.zi_pair if kind == "pair" else profile.zi_single)]
    params = [pytest.param(c, marks=_marks(c, kind, metafunc.config), id=c.pair_id if kind == "pair" else c.id)
              for c in cases]
    metafunc.parametrize("case", params)


def _marks(case: Case, kind: str, config: pytest.Config) -> list[Any]:
    """gpu where needed, and the engines the case uses, so cases sharing one run together (run/order.py)."""
    from pytest_nvme_ai.measure.zero_inference.remote_worker import engine_key

    profile = profile_of(config)
    sides = ("nvme", "cpu") if kind == "pair" else (case.offload,)
    specs = [case.spec_for(side, profile) for side in sides]
    if kind == "single" and case.offload == "nvme":  # its compute bound: the same spec with resident weights
        specs.append(specs[0].with_(offload="none", aio=None))
    marks = [pytest.mark.nvme_ai_engines(*(engine_key(s) for s in specs))]
    return marks + ([pytest.mark.gpu] if case.gpu else [])


def _check_outcome(result: Any, nvme_ai: Any, may_oom: bool) -> None:
    if result.ok:
        return
    if result.outcome == "oom" and may_oom:
        nvme_ai.note(f"{result.spec.id}: out of memory, recorded as a result (this case is at the edge of what fits)")
        return
    pytest.fail(f"ZeRO-Inference {result.spec.id}: outcome {result.outcome}: {result.error}\n"
                f"--- log tail ({result.log_path}) ---\n{result.log_tail}", pytrace=False)


def _check_run(result: Any, nvme_ai: Any) -> None:
    """The run happened as specified: every loop generated gen_len tokens, one sample per loop."""
    spec = result.spec
    assert len(result.loops) == spec.loops
    assert all(lp.new_tokens == spec.gen_len for lp in result.loops), [lp.new_tokens for lp in result.loops]
    assert all(lp.decode_steps == spec.gen_len - 1 for lp in result.loops)
    if spec.offload == "nvme":
        # The file-backed target really was read: DeepSpeed swapped parameters in from it every loop.
        assert result.swap_files, "DeepSpeed created no parameter swap files under the target"
        assert all(lp.read_bytes > 0 for lp in result.loops), "an NVMe-offloaded loop read nothing from the target"


def test_zero_inference(case: Case, zero_inference: Any, nvme_ai: Any, request: pytest.FixtureRequest) -> None:
    spec = case.spec_for(case.offload, nvme_ai.profile)
    zero_inference.prepare()  # ops built visibly, fork server started; the runner skips when NVMe offload cannot run
    result = zero_inference.run(spec)
    _check_outcome(result, nvme_ai, case.may_oom(spec.offload))
    if not result.ok:
        return
    _check_run(result, nvme_ai)
    recorded = nvme_ai.metrics()
    assert recorded["total_throughput"].n == spec.loops
    if spec.offload == "nvme":
        assert recorded["target_read_bytes"].value > 0
        assert recorded["offloaded_bytes"].value > 0
        if "device_read_bytes" in recorded:  # counted in the worker's own cgroup (else a note says why not)
            nvme_ai.note(f"device read per loop {recorded['device_read_bytes'].value:.4g} B against the worker's "
                         f"own block-layer reads {recorded['target_read_bytes'].value:.4g} B (/proc/self/io)")
        _check_streaming(result, nvme_ai)
        _record_bounds(result, zero_inference, nvme_ai, request)


def _check_streaming(result: Any, nvme_ai: Any) -> None:
    """Decoder layers really stream from the target, where the issue says they must.

    DeepSpeed swaps a tensor only if it has at least max(1 MiB, aio block_size) bytes. At DeepSpeed's
    default aio block with 16-bit weights every decoder layer of the grid's models has at least one
    matrix that large; with 4-bit weights (or a larger block) some stay resident, so there the
    offloaded fraction is what the test records (params['offloaded_fraction']).
    """
    layers = result.streaming_layers()
    fraction = result.offloaded_fraction
    nvme_ai.note(f"{result.spec.id}: {result.offloaded_bytes} B in {len(result.swap_files)} swap files, "
                 f"{fraction if fraction is None else round(fraction, 3)} of the parameter bytes; "
                 f"decoder layers with a swapped weight: {sum(1 for n in layers.values() if n)}/{len(layers)}")
    assert layers, "the child listed no decoder layers' parameters"
    if result.spec.aio is None and result.spec.quant_bits is None:
        resident = [i for i, n in layers.items() if n == 0]
        assert not resident, (f"decoder layers {resident} have no weight in the swap files at DeepSpeed's default "
                              f"aio block and 16-bit weights: the case does not stream its layers")


def _reference(spec: Any, zero_inference: Any) -> Any:
    """The same model, batch and quantization with the weights resident: offload none, else cpu."""
    for offload in ("none", "cpu"):
        ref = zero_inference.run(spec.with_(offload=offload, aio=None), prefix=f"compute_{offload}", reuse=True,
                                 record=False)
        if ref.ok or ref.outcome != "oom":
            return ref
    return ref


def _record_bounds(result: Any, zero_inference: Any, nvme_ai: Any, request: pytest.FixtureRequest) -> None:
    """The two-bound model (docs/roofline.md): t_io from ONE bandwidth, measured with the offload's own access
    pattern (DeepSpeed's aio read at the run's block size, queue depth and threads, O_DIRECT) on the same
    target right after the run it explains; t_compute from a resident-weights run of the same spec. Where
    the aio read fails, fio (the seq-read suite's figure, else one measured here), named as such."""
    from pytest_nvme_ai.measure.zero_inference.pairing import record_bounds, run_bounds

    fio_bw, source, label = _t_io_bandwidth(result, nvme_ai, request)
    if not fio_bw:
        return
    ref = _reference(result.spec, zero_inference)
    # Its loops are measured (t_compute comes from them) but not recorded as this test's metrics: kept here
    # so that benchmarks/zi_suite_share.py can count them, with its engine's build time.
    nvme_ai.set_extra("compute_reference", {"spec": ref.spec.id, "outcome": ref.outcome, "error": ref.error,
                                            "loops_s": [lp.total_latency for lp in ref.loops],
                                            "init_s": ref.init_seconds})
    if not ref.ok:
        nvme_ai.note(f"roofline not recorded: the resident-weights run {ref.spec.id} ended {ref.outcome}: {ref.error}")
        if ref.outcome != "oom":
            pytest.fail(f"the resident-weights reference run {ref.spec.id} failed ({ref.outcome}): {ref.error}\n"
                        f"--- log tail ---\n{ref.log_tail}", pytrace=False)
        return
    if source != "fio":  # another source of t_io: not comparable with a baseline whose t_io came from fio
        nvme_ai.set_params(t_io_bw_source=source)
    bounds = run_bounds(result, ref, fio_bw, bw_source=source, bw_label=label)
    record_bounds(nvme_ai, bounds)
    assert bounds.decode or result.spec.gen_len < 2, bounds.reason
    assert all(0.0 <= b.overlap <= 1.0 for b in bounds.decode + bounds.prefill)


def _t_io_bandwidth(result: Any, nvme_ai: Any, request: pytest.FixtureRequest) -> tuple[float | None, str, str]:
    """(B/s, source, the figure named in words): DeepSpeed's aio read first, else fio."""
    from pytest_nvme_ai.measure.fio.runner import FioJob, fio_missing_reason
    from pytest_nvme_ai.measure.zero_inference.pairing import T_IO_FIO_BW, fio_bw_of

    bw, settings = _aio_read_bw(result, nvme_ai)
    if bw:
        missing = fio_missing_reason()
        label = (f"DeepSpeed's aio read bandwidth at the run's settings ({settings}, O_DIRECT) on this target, "
                 "measured right after the run" + (f"; fio is not installed here ({missing})" if missing else ""))
        nvme_ai.note(f"roofline: t_io uses {label}: {bw:.3g} B/s")
        return bw, "deepspeed-aio", label
    (fio_bw, origin) = fio_bw_of(nvme_ai)
    if not fio_bw and fio_missing_reason() is None:
        fio = request.getfixturevalue("fio")
        fio_bw = fio.run(FioJob(name="roofline", bs="1M", iodepth=16), record=False).bw_bytes
        nvme_ai.session_cache.put(T_IO_FIO_BW, fio_bw, nvme_ai.target.label)
        origin = "measured in this test (bs 1M, qd 16)"
    if not fio_bw:
        nvme_ai.note("roofline not recorded: neither DeepSpeed's aio read nor fio gave a bandwidth on this target")
        return None, "fio", ""
    label = f"fio read on this target, {origin} (DeepSpeed's aio read failed)"
    nvme_ai.note(f"roofline: t_io uses {fio_bw:.3g} B/s, {label}")
    return fio_bw, "fio", label


def _aio_read_bw(result: Any, nvme_ai: Any) -> tuple[float | None, str]:
    """DeepSpeed's aio read of the aio suite's data file on this target, with the offloaded run's own aio
    settings (block, queue depth, threads), median of the profile's repeats; (None, why) when it fails."""
    from pytest_nvme_ai.measure.aio.runner import (AioError, ensure_data_file, file_bytes, measure_read,
                                                   release_shared_worker)
    from pytest_nvme_ai.measure.fio.runner import DirectIOUnsupported
    from pytest_nvme_ai.measure.zero_inference.pairing import aio_settings_of

    settings = aio_settings_of(result)
    try:
        data = ensure_data_file(nvme_ai.target, file_bytes(nvme_ai.profile), nvme_ai.session_cache)
        bw = measure_read(data, settings, repeat=max(1, nvme_ai.repeat), timeout=float(nvme_ai.timeout)).bw
    except (AioError, DirectIOUnsupported, OSError) as exc:
        nvme_ai.note(f"roofline: DeepSpeed's aio read at the run's settings failed: {exc}")
        return None, str(exc)
    finally:
        release_shared_worker()  # its page-locked buffer is as large as the file; the next runs need the memory
    return bw, settings.label


def test_nvme_vs_cpu(case: Case, zero_inference: Any, nvme_ai: Any, request: pytest.FixtureRequest) -> None:
    zero_inference.prepare()
    profile = nvme_ai.profile
    cpu_spec, nvme_spec = case.spec_for("cpu", profile), case.spec_for("nvme", profile)
    reuse = profile.zi_reuse_runs
    nvme = zero_inference.run(nvme_spec, prefix="nvme", reuse=reuse)
    cpu = zero_inference.run(cpu_spec, prefix="cpu")
    params = cpu.spec.params(cpu.accelerator)
    params["offload"] = "cpu|nvme"
    if nvme.offloaded_fraction is not None:  # another fraction offloaded: another comparison (see runner.record)
        params["offloaded_fraction"] = round(nvme.offloaded_fraction, 3)
    nvme_ai.set_params(**params)
    _check_outcome(nvme, nvme_ai, case.may_oom("nvme"))
    _check_outcome(cpu, nvme_ai, case.may_oom("cpu"))
    if not (cpu.ok and nvme.ok):
        return
    _check_run(nvme, nvme_ai)
    _check_run(cpu, nvme_ai)
    ratios = [n / c for n, c in zip(nvme.metrics["total_throughput"].samples, cpu.metrics["total_throughput"].samples)]
    nvme_ai.record(Metric.of("nvme_vs_cpu_throughput", ratios))
    _record_energy_ratio(nvme, cpu, nvme_ai)
    # What separates the two runs is where the parameters come from: only the NVMe run reads the target.
    assert nvme.target_read_bytes > (cpu.target_read_bytes or 0)


def _record_energy_ratio(nvme: Any, cpu: Any, nvme_ai: Any) -> None:
    """nvme_vs_cpu_energy_per_token where both sides measured energy (docs/energy.md); a note where not."""
    from pytest_nvme_ai.measure.energy import energy_ratio

    ratios, basis = energy_ratio(nvme.metrics, cpu.metrics)
    if ratios:
        nvme_ai.record(Metric.of("nvme_vs_cpu_energy_per_token", ratios))
        nvme_ai.set_extra("energy_ratio_basis", basis)
    else:
        nvme_ai.note("nvme_vs_cpu_energy_per_token not recorded: the two runs share no readable energy counter")
