"""Profiles: every knob that differs between quick, standard and full, in one place.

Suites, runners and the tuner read their sizes, durations and grids from the session's `Profile`
(`nvme_ai.profile`, or `run.session.profile_of(config)` at collection) and keep no per-profile
tables of their own: a new profile is one `Profile(...)` here, and a knob it forgets is a TypeError
at import, not a KeyError in the middle of a run (tests/test_profiles.py checks both).
"""
from __future__ import annotations

from dataclasses import dataclass

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
SEED_PROMPT, SEED_GEN = 512, 32      # the seed study's and DeepSpeedExamples run_model.py's shape
QUICK_MODEL = "opt-125m"             # the smallest shipped OPT whose decoder layers stream (matrices >= 1 MiB)


@dataclass(frozen=True)
class InferenceCase:
    """One ZeRO-Inference configuration of a profile's grid (the suite turns it into an InferenceSpec)."""

    model: str
    batch_size: int
    offload: str = "nvme"          # the single-run offload; pairing cases run both cpu and nvme
    quant_bits: int | None = None
    kv_offload: bool = False
    prompt_len: int = 32
    gen_len: int = 8
    gpu: bool = False              # needs CUDA: the suite marks it `gpu`


@dataclass(frozen=True)
class TrainingCase:
    """One ZeRO-Infinity training configuration of a profile's grid (suites/test_zero_infinity.py)."""

    model: str
    batch_size: int = 2
    seq_len: int = 64
    pipeline_read: bool = False
    pipeline_write: bool = False
    gpu: bool = False


@dataclass(frozen=True)
class Profile:
    name: str
    repeat: int              # default repetitions of each measurement
    child_timeout_s: int     # fio / ZeRO-Inference child processes
    # fio: per job, and the data file laid out per target (large enough to defeat caches on standard/full)
    fio_runtime_s: float
    fio_ramp_s: float
    fio_file_bytes: int
    # fio suite grid: every block size x these queue depths x these job counts, plus the seed study's point
    fio_depths: tuple[int, ...]
    fio_numjobs: tuple[int, ...]
    fio_seed_point: bool
    # DeepSpeed aio suite: the file is read into one page-locked buffer, so it cannot be fio's (16/64 GiB on
    # standard/full); big enough that one read lasts well beyond per-call overheads, capped by memory.
    aio_file_bytes: int
    aio_block_sizes: tuple[int, ...]
    aio_depths: tuple[int, ...]
    aio_parallelism: tuple[int, ...]
    aio_reference_points: bool   # the seed study's and run_model.py's aio blocks as extra points
    # the aio tuner behind --nvme-ai-aio auto
    tune_budget_s: float
    tune_file_bytes: int
    # ZeRO-Inference suite
    zi_loops: int            # measured loops (seed: 5)
    zi_warmup: int
    zi_single: tuple[InferenceCase, ...]    # one run each (test_generate)
    zi_pair: tuple[InferenceCase, ...]      # CPU and NVMe offload side by side (test_nvme_vs_cpu)
    zi_reuse_runs: bool      # the pairing test reuses an identical NVMe run from earlier in the session
    drive_speed_cases: tuple[InferenceCase, ...]   # the drive-speed suite (NVMe offload under bandwidth caps)
    drive_speed_loops: int   # measured loops per cap (quick: two; three children at capped speed are most of its time)
    # training (suites/test_zero_infinity.py) and the write side (suites/test_write.py)
    zinf_steps: int                  # measured ZeRO-Infinity training steps
    zinf_warmup: int                 # steps before the clock (the first one allocates swap buffers)
    zinf_single: tuple[TrainingCase, ...]
    zinf_pair: tuple[TrainingCase, ...]   # CPU and NVMe offload side by side
    ckpt_files: int                  # checkpoint-shaped write: files, each written and fsync'd
    ckpt_file_bytes: int      # ... of this size; capped by the target's free space
    # Steady state of the seq-read points (docs/qualification.md): fio's ss= over a rolling window, stopped
    # at the budget. 0 = off (quick: CI cannot afford it; --nvme-ai-ss-budget turns it on anywhere).
    ss_budget_s: float
    ss_window_s: float
    ss_ramp_s: float
    precondition_bytes: int       # --nvme-ai-precondition fills this much of the target (capped by free space)
    health_interval_s: float      # SMART sampling period during measurements long enough to heat a drive
    # cold model loads (suites/test_model_load.py): the OPT models written and loaded per target
    model_load_models: tuple[str, ...]
    # KV cache on the drive (suites/test_kv_cache.py): serving (users, rounds, system-prompt tokens) and
    # storage-shaped cases (KV shape, sequences, tokens per sequence)
    kv_serving: tuple[int, int, int]
    kv_storage: tuple[tuple[str, int, int], ...]
    # A/B (--nvme-ai-ab): seconds per test that pairs may take before an undecided metric reads `unknown`
    # (--nvme-ai-ab-budget overrides). quick: issue 23's goal for a fio decision (2 min).
    ab_budget_s: float


def _quick_inference() -> tuple[tuple[InferenceCase, ...], tuple[InferenceCase, ...]]:
    # opt-125m, not opt-tiny: opt-tiny's decoder matrices are below DeepSpeed's 1 MiB swap threshold, so
    # its "NVMe offload" streamed only the embeddings. No offload comes first: the NVMe cases reuse it as
    # their compute bound. Batch 2 NVMe is measured by the pairing test; the KV case skips off CUDA.
    single = (InferenceCase(QUICK_MODEL, 1, offload="none"), InferenceCase(QUICK_MODEL, 1),
              InferenceCase(QUICK_MODEL, 1, quant_bits=4), InferenceCase("opt-tiny", 1, kv_offload=True))
    return single, (InferenceCase(QUICK_MODEL, 1), InferenceCase(QUICK_MODEL, 2))


def _standard_inference() -> tuple[tuple[InferenceCase, ...], tuple[InferenceCase, ...]]:
    single, pair = [], []
    for model in ("opt-1.3b", "opt-6.7b"):
        for bs in (8, 32):
            for offload in ("none", "nvme") if model == "opt-1.3b" else ("nvme",):
                single.append(InferenceCase(model, bs, offload=offload, prompt_len=SEED_PROMPT, gen_len=SEED_GEN,
                                            gpu=True))
            pair.append(InferenceCase(model, bs, prompt_len=SEED_PROMPT, gen_len=SEED_GEN, gpu=True))
        single.append(InferenceCase(model, 32, quant_bits=4, prompt_len=SEED_PROMPT, gen_len=SEED_GEN, gpu=True))
    return tuple(single), tuple(pair)


def _full_inference() -> tuple[tuple[InferenceCase, ...], tuple[InferenceCase, ...]]:
    cases = tuple(InferenceCase(model, bs, quant_bits=4, kv_offload=True, prompt_len=SEED_PROMPT, gen_len=SEED_GEN,
                                gpu=True)
                  for model in ("opt-13b", "opt-30b", "opt-66b") for bs in (32, 80, 128, 140))
    return cases, cases


def _seed_shaped(*cases: tuple[str, int]) -> tuple[InferenceCase, ...]:
    """GPU cases of the seed study's shape (prompt 512, gen 32)."""
    return tuple(InferenceCase(m, bs, prompt_len=SEED_PROMPT, gen_len=SEED_GEN, gpu=True) for m, bs in cases)


_PIPELINES = ((False, False), (True, False), (False, True), (True, True))
_GPU_BATCH, _GPU_SEQ = 8, 512


def _gpu_training(models: tuple[str, ...]) -> tuple[tuple[TrainingCase, ...], tuple[TrainingCase, ...]]:
    single = tuple(TrainingCase(m, _GPU_BATCH, _GPU_SEQ, pr, pw, gpu=True) for m in models for pr, pw in _PIPELINES)
    return single, tuple(TrainingCase(m, _GPU_BATCH, _GPU_SEQ, gpu=True) for m in models)


_TQS = (TrainingCase("opt-tiny"), TrainingCase("opt-tiny", pipeline_read=True, pipeline_write=True))
_TQP = (TrainingCase("opt-tiny"),)
_TSS, _TSP = _gpu_training(("opt-1.3b", "opt-6.7b"))
_TFS, _TFP = _gpu_training(("opt-1.3b", "opt-6.7b", "opt-13b"))
_QS, _QP = _quick_inference()
_SS, _SP = _standard_inference()
_FS, _FP = _full_inference()

PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick", repeat=3, child_timeout_s=900,
        fio_runtime_s=2, fio_ramp_s=0, fio_file_bytes=256 * MiB,
        fio_depths=(16,), fio_numjobs=(1,), fio_seed_point=False,
        aio_file_bytes=256 * MiB, aio_block_sizes=(MiB, 16 * MiB), aio_depths=(8, 32), aio_parallelism=(1, 2),
        aio_reference_points=False,
        tune_budget_s=45.0, tune_file_bytes=256 * MiB,
        zi_loops=3, zi_warmup=1, zi_single=_QS, zi_pair=_QP, zi_reuse_runs=False,
        drive_speed_cases=(InferenceCase(QUICK_MODEL, 1),), drive_speed_loops=2,
        ss_budget_s=0, ss_window_s=3, ss_ramp_s=1, precondition_bytes=512 * MiB, health_interval_s=1,
        zinf_steps=3, zinf_warmup=1, zinf_single=_TQS, zinf_pair=_TQP, ckpt_files=4, ckpt_file_bytes=64 * MiB,
        model_load_models=("opt-350m",),                    # one 662 MB file: a few hundred MB, as CI affords
        kv_serving=(3, 3, 448), kv_storage=(("llama-3-8b", 4, 1024),),
        ab_budget_s=120),
    "standard": Profile(
        "standard", repeat=3, child_timeout_s=3600,
        fio_runtime_s=15, fio_ramp_s=3, fio_file_bytes=16 * GiB,
        fio_depths=(16, 64), fio_numjobs=(1, 4), fio_seed_point=True,
        aio_file_bytes=2 * GiB, aio_block_sizes=(128 * KiB, MiB, 8 * MiB, 16 * MiB), aio_depths=(8, 32, 128),
        aio_parallelism=(1, 8), aio_reference_points=True,
        tune_budget_s=240.0, tune_file_bytes=1 * GiB,
        zi_loops=5, zi_warmup=1, zi_single=_SS, zi_pair=_SP, zi_reuse_runs=False,
        drive_speed_cases=_seed_shaped(("opt-1.3b", 8), ("opt-1.3b", 32), ("opt-6.7b", 8)), drive_speed_loops=5,
        ss_budget_s=120, ss_window_s=10, ss_ramp_s=5, precondition_bytes=64 * GiB, health_interval_s=5,
        zinf_steps=5, zinf_warmup=1, zinf_single=_TSS, zinf_pair=_TSP, ckpt_files=8, ckpt_file_bytes=1 * GiB,
        model_load_models=("opt-1.3b", "opt-6.7b"),         # 2.6 and 13 GB
        kv_serving=(12, 4, 1984), kv_storage=(("llama-3-8b", 16, 2048), ("llama-3-70b", 8, 2048)),
        ab_budget_s=900),
    "full": Profile(
        "full", repeat=5, child_timeout_s=4 * 3600,
        fio_runtime_s=60, fio_ramp_s=5, fio_file_bytes=64 * GiB,
        fio_depths=(1, 16, 64), fio_numjobs=(1, 4), fio_seed_point=True,
        aio_file_bytes=4 * GiB, aio_block_sizes=(128 * KiB, MiB, 2 * MiB, 8 * MiB, 16 * MiB),
        aio_depths=(8, 32, 64, 128), aio_parallelism=(1, 2, 4, 8, 16), aio_reference_points=False,
        tune_budget_s=600.0, tune_file_bytes=2 * GiB,
        zi_loops=5, zi_warmup=1, zi_single=_FS, zi_pair=_FP, zi_reuse_runs=True,
        drive_speed_cases=_seed_shaped(("opt-13b", 32), ("opt-30b", 32), ("opt-66b", 32)), drive_speed_loops=5,
        ss_budget_s=600, ss_window_s=30, ss_ramp_s=10, precondition_bytes=256 * GiB, health_interval_s=5,
        zinf_steps=10, zinf_warmup=2, zinf_single=_TFS, zinf_pair=_TFP, ckpt_files=16, ckpt_file_bytes=4 * GiB,
        model_load_models=("opt-13b", "opt-30b", "opt-66b"),  # the seed study's models: 26, 60 and 132 GB
        kv_serving=(24, 6, 1984), kv_storage=(("llama-3-8b", 64, 4096), ("llama-3-70b", 32, 4096)),
        ab_budget_s=3600),
}
