"""Profiles: the knobs shared by every suite. Each suite keeps its own grid next to its tests."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    repeat: int              # default repetitions of each measurement
    fio_runtime_s: float     # per fio job
    fio_ramp_s: float
    fio_file_bytes: int      # data file laid out per target; large enough to defeat caches on standard/full
    zi_loops: int            # measured ZeRO-Inference loops (seed: 5)
    zi_warmup: int
    child_timeout_s: int     # fio / ZeRO-Inference child processes
    # training (suites/test_zero_infinity.py) and the write side (suites/test_write.py)
    zinf_steps: int = 3                  # measured ZeRO-Infinity training steps
    zinf_warmup: int = 1                 # steps before the clock (the first one allocates swap buffers)
    ckpt_files: int = 4                  # checkpoint-shaped write: files, each written and fsync'd
    ckpt_file_bytes: int = 64 << 20      # ... of this size; capped by the target's free space
    # Steady state of the seq-read points (docs/qualification.md): fio's ss= over a rolling window, stopped
    # at the budget. 0 = off (quick: CI cannot afford it; --nvme-ai-ss-budget turns it on anywhere).
    ss_budget_s: float = 0
    ss_window_s: float = 10
    ss_ramp_s: float = 5
    precondition_bytes: int = 0   # --nvme-ai-precondition fills this much of the target (capped by free space)
    health_interval_s: float = 5  # SMART sampling period during measurements long enough to heat a drive


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", repeat=3, fio_runtime_s=2, fio_ramp_s=0, fio_file_bytes=256 << 20,
                     zi_loops=3, zi_warmup=1, child_timeout_s=900,
                     ss_window_s=3, ss_ramp_s=1, precondition_bytes=512 << 20, health_interval_s=1,
                     zinf_steps=3, zinf_warmup=1, ckpt_files=4, ckpt_file_bytes=64 << 20),
    "standard": Profile("standard", repeat=3, fio_runtime_s=15, fio_ramp_s=3, fio_file_bytes=16 << 30,
                        zi_loops=5, zi_warmup=1, child_timeout_s=3600,
                        ss_budget_s=120, ss_window_s=10, ss_ramp_s=5, precondition_bytes=64 << 30,
                        zinf_steps=5, zinf_warmup=1, ckpt_files=8, ckpt_file_bytes=1 << 30),
    "full": Profile("full", repeat=5, fio_runtime_s=60, fio_ramp_s=5, fio_file_bytes=64 << 30,
                    zi_loops=5, zi_warmup=1, child_timeout_s=4 * 3600,
                    ss_budget_s=600, ss_window_s=30, ss_ramp_s=10, precondition_bytes=256 << 30,
                    zinf_steps=10, zinf_warmup=2, ckpt_files=16, ckpt_file_bytes=4 << 30),
}

