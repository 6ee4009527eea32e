"""A workload runner's options, passed explicitly (pytest side): built once by the fixture from the
settings, never read off the recorder."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunnerOptions:
    aio: str = "default"            # --nvme-ai-aio: default | auto | a JSON aio block
    timeout: float | None = None    # seconds a run may take; None: the test's (recorder.timeout)
    engine_reuse: bool = True       # --nvme-ai-engine-reuse (ZeRO-Inference): persistent workers per engine
    fork_workers: bool = True       # --nvme-ai-fork-workers (ZeRO-Inference): fork them from the fork server
    rated_tbw: float | None = None      # --nvme-ai-rated-tbw: the drive's rated TBW (core.endurance)
    rated_dwpd: float | None = None     # --nvme-ai-rated-dwpd, with warranty_years and the target's capacity
    warranty_years: float | None = None  # --nvme-ai-warranty-years
