"""DeepSpeed ZeRO-Infinity: a training step with parameters and optimizer states offloaded to the target.

ZeRO stage 3 with `offload_param` and `offload_optimizer` on `nvme`: each step swaps the 16-bit
parameters in for forward and backward, and the fp32 master weights and both Adam moments in and
back out for the optimizer step (DeepSpeed's CPU Adam op), so it writes as much as it reads. Each
case runs in a child process (timeout, outcomes as data, the DeepSpeed config and log kept), trains
on one fixed synthetic batch with a fixed seed, and records per step: `step_time`,
`train_throughput`, `target_read_bytes`, `target_write_bytes`, `target_read_bw`, `target_write_bw`,
`peak_rss` and `loss` (ungated). Every loss must be finite and the last below the first.

* quick    – OPT's shape at hidden 256 × 4 layers (opt-tiny) on whatever accelerator is there
  (CPU in CI: bf16, gloo), batch 2 × 64 tokens: pipelining off and on, and the NVMe/CPU pair.
* standard – OPT-1.3b and OPT-6.7b on a GPU (`gpu` marker), batch 8 × 512, pipeline_read/pipeline_write
  off, each alone, both.
* full     – adds OPT-13b.

`test_nvme_vs_cpu` runs the same case with everything offloaded to the target (ZeRO-Infinity) and
everything in host memory (ZeRO-Offload), back to back, and records `nvme_vs_cpu_step` (NVMe step
time ÷ CPU step time, per step): what the drive costs a training step against host memory.

Every NVMe case also records the step's I/O bound: its bytes read and written at fio's read and
write bandwidth on the same target (`step_io_bound`, `step_io_fraction`; measure/zero_infinity/bounds.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pytest

from pytest_nvme_ai.core.cache import CacheKey
from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.core.profiles import Profile, TrainingCase
from pytest_nvme_ai.measure.zero_infinity.spec import TrainingSpec
from pytest_nvme_ai.run.session import profile_of

# (target label) -> fio read bandwidth this suite measured for its I/O bound when the fio suite did not run
BOUND_READ_BW = CacheKey[float]("bound_read_bw", "fio read bw measured by the training suite for its bound")


@dataclass(frozen=True)
class Case(TrainingCase):
    """A grid point of the profile (its fields: core.profiles.TrainingCase) with what the tests need."""

    def spec_for(self, offload: str, profile: Profile | None = None) -> TrainingSpec:
        steps, warmup = (profile.zinf_steps, profile.zinf_warmup) if profile else (3, 1)
        nvme = offload == "nvme"
        return TrainingSpec(model=self.model, batch_size=self.batch_size, seq_len=self.seq_len,
                            offload_param=offload, offload_optimizer=offload,  # type: ignore[arg-type]
                            pipeline_read=self.pipeline_read and nvme, pipeline_write=self.pipeline_write and nvme,
                            pin_memory=self.gpu, steps=steps, warmup=warmup)

    @property
    def id(self) -> str:
        return self.spec_for("nvme").id

    @property
    def pair_id(self) -> str:
        return self.spec_for("cpu").id.replace("-cpu", "")


def grid_of(profile: Profile) -> dict[str, list[Case]]:
    """The profile's training grid (core.profiles) as this suite's cases."""
    return {"single": [Case(**asdict(c)) for c in profile.zinf_single],
            "pair": [Case(**asdict(c)) for c in profile.zinf_pair]}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    grid = grid_of(profile_of(metafunc.config))
    kind = "pair" if metafunc.function.__name__ == "test_nvme_vs_cpu" else "single"
    metafunc.parametrize("case", [pytest.param(c, marks=[pytest.mark.gpu] if c.gpu else [],
                                               id=c.pair_id if kind == "pair" else c.id) for c in grid[kind]])


@pytest.fixture(scope="session")
def training_ops(request: pytest.FixtureRequest) -> None:
    """JIT-build DeepSpeed's comm and CPU Adam ops once, visibly, before any run's clock starts
    (the runner skips with the reason when one cannot build)."""
    from pytest_nvme_ai.fixtures import terminal_progress
    from pytest_nvme_ai.measure.deepspeed.ops import ensure_adam_op, ensure_comm_op

    progress = terminal_progress(request.config)
    ensure_comm_op(progress)
    ensure_adam_op(progress)


def check_outcome(result: Any) -> None:
    """A run that did not finish is not a measurement: the test fails with the log tail."""
    if not result.ok:
        pytest.fail(f"ZeRO-Infinity {result.spec.id}: outcome {result.outcome}: {result.error}\n"
                    f"--- log tail ({result.log_path}) ---\n{result.log_tail}", pytrace=False)


def check_trained(result: Any) -> None:
    """The run happened as specified and trained: one sample per step, every loss finite, the last below
    the first; a run that swaps to the target read *and* wrote it every step."""
    import math

    spec = result.spec
    assert len(result.steps) == spec.steps and len(result.warmup) == spec.warmup
    losses = result.losses
    assert all(math.isfinite(x) for x in losses), f"non-finite loss: {losses}"
    assert losses[-1] < losses[0], f"the loss did not fall on a fixed batch: {losses}"
    if spec.offloads_to_target:
        assert result.swap_files, "DeepSpeed created no swap files under the target"
        assert all(s.read_bytes > 0 for s in result.steps), "an offloaded step read nothing from the target"
        assert all(s.write_bytes > 0 for s in result.steps), "an offloaded step wrote nothing to the target"


def fio_bandwidths(nvme_ai: Any, request: pytest.FixtureRequest) -> tuple[float | None, float | None]:
    """fio's read and write bandwidth on this target in this session: the seq-read and write suites'
    figures when they ran first (they sort first), else one short fio measurement of each here."""
    from pytest_nvme_ai.measure.fio.runner import BEST_FIO_BW, FioJob, fio_missing_reason
    from pytest_nvme_ai.measure.write_check import FIO_WRITE_BW, MIN_WRITE_BYTES, run_seq_write

    label = nvme_ai.target.label if nvme_ai.target is not None else None
    cache = nvme_ai.session_cache
    read_bw = cache.get(BEST_FIO_BW, label) or cache.get(BOUND_READ_BW, label)
    write_bw = cache.get(FIO_WRITE_BW, label)
    if (read_bw and write_bw) or fio_missing_reason() is not None:
        return read_bw, write_bw
    fio = request.getfixturevalue("fio")
    if not read_bw:
        read_bw = fio.run(FioJob(name="bound-read", bs="1M", iodepth=16), repeat=1, record=False).bw_bytes
        cache.put(BOUND_READ_BW, read_bw, label)  # measured once per session and target, as the write side
        nvme_ai.note(f"fio read bandwidth for the I/O bound measured in this test (bs 1M, qd 16): {read_bw:.3g} B/s")
    if not write_bw:
        write_bw = run_seq_write(fio, MIN_WRITE_BYTES, repeat=1, name="bound-write").bw_bytes
        nvme_ai.note(f"fio write bandwidth for the I/O bound measured in this test (bs 1M, qd 16): {write_bw:.3g} B/s")
    return read_bw, write_bw


def record_bound(result: Any, nvme_ai: Any, request: pytest.FixtureRequest) -> None:
    from pytest_nvme_ai.measure.zero_infinity.bounds import StepBound

    read_bw, write_bw = fio_bandwidths(nvme_ai, request)
    if not (read_bw and write_bw):
        nvme_ai.note("no fio bandwidth on this target: the step's I/O bound is not recorded")
        return
    bounds = [StepBound(s.read_bytes, s.write_bytes, read_bw, write_bw, s.step_time) for s in result.steps]
    nvme_ai.record(Metric.of("step_io_bound", [b.io_time for b in bounds]))
    nvme_ai.record(Metric.of("step_io_fraction", [b.fraction for b in bounds]))
    nvme_ai.set_extra("fio_read_bw", read_bw)
    nvme_ai.set_extra("fio_write_bw", write_bw)


def test_zero_infinity(case: Case, zero_infinity: Any, nvme_ai: Any, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("training_ops")
    result = zero_infinity.run(case.spec_for("nvme", nvme_ai.profile))
    check_outcome(result)
    check_trained(result)
    recorded = nvme_ai.metrics()
    assert recorded["step_time"].n == result.spec.steps
    assert recorded["target_write_bytes"].value > 0 and recorded["target_read_bytes"].value > 0
    if "device_write_bytes" in recorded:  # counted in the child's own cgroup (else a note says why not)
        nvme_ai.note(f"device bytes per step: read {recorded['device_read_bytes'].value:.4g} B, written "
                     f"{recorded['device_write_bytes'].value:.4g} B (the child's /proc/self/io: read "
                     f"{recorded['target_read_bytes'].value:.4g} B, written {recorded['target_write_bytes'].value:.4g} B)")
    record_bound(result, nvme_ai, request)


def test_nvme_vs_cpu(case: Case, zero_infinity: Any, nvme_ai: Any, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("training_ops")
    profile = nvme_ai.profile
    nvme = zero_infinity.run(case.spec_for("nvme", profile), prefix="nvme")
    cpu = zero_infinity.run(case.spec_for("cpu", profile), prefix="cpu")
    params = cpu.spec.params(cpu.accelerator)
    params.update(offload="cpu|nvme", offload_param="cpu|nvme", offload_optimizer="cpu|nvme")
    nvme_ai.set_params(**params)
    check_outcome(nvme)
    check_outcome(cpu)
    check_trained(nvme)
    check_trained(cpu)
    ratios = [n.step_time / c.step_time for n, c in zip(nvme.steps, cpu.steps)]
    nvme_ai.record(Metric.of("nvme_vs_cpu_step", ratios))
    # What separates the two runs is where the states live: only the NVMe run writes the target.
    assert (nvme.write_bytes_per_step or 0) > (cpu.write_bytes_per_step or 0)
