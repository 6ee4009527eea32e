"""Pytest side: a run's device writes against the drive's rated endurance (core.endurance), recorded.

The rating comes from the runner's options (--nvme-ai-rated-tbw, or --nvme-ai-rated-dwpd x the target
disk's capacity x --nvme-ai-warranty-years). The projected life uses the measured steps' write rate
(device bytes written / their time, run continuously); the run's share counts every byte the child
wrote to the disk, the engine's build (swap files laid out) included.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_nvme_ai.core.endurance import EnduranceError, EnduranceUse, endurance_use, rated, run_share
from pytest_nvme_ai.core.extras import DevTruthExtra
from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.measure.deepspeed.options import RunnerOptions
from pytest_nvme_ai.measure.deepspeed.recording import prefixed

if TYPE_CHECKING:
    from pytest_nvme_ai.core.recorder import Recorder


def disk_capacity(path: Path | str) -> int | None:
    """Bytes of the whole disk behind `path` (/sys/block/<disk>/size, 512-byte sectors), None if unknown."""
    from pytest_nvme_ai.measure.io_cgroup import IoCgroupError, disk_of

    try:
        disk = disk_of(path)
        return int((Path("/sys/block") / disk.name / "size").read_text()) * 512
    except (IoCgroupError, OSError, ValueError):
        return None


def record_endurance(rec: "Recorder", options: RunnerOptions, target_dir: Path, steady_written: int,
                     steady_seconds: float, run_written: int, prefix: str | None = None) -> EnduranceUse | None:
    """endurance_life_days, endurance_run_share and the endurance extra; nothing without a rating."""
    if options.rated_tbw is None and options.rated_dwpd is None:
        return None
    try:
        rating = rated(options.rated_tbw, options.rated_dwpd,
                       disk_capacity(target_dir) if options.rated_dwpd is not None else None,
                       options.warranty_years)
    except EnduranceError as exc:
        rec.note(f"endurance not projected: {exc}")
        return None
    if rating is None or steady_seconds <= 0:
        return None
    use = endurance_use(rating, steady_written, steady_seconds)
    share = run_share(rating, run_written)
    metrics = [Metric.of("endurance_run_share", [share])]
    if use.life_days != float("inf"):
        metrics.append(Metric.of("endurance_life_days", [use.life_days]))
    for m in metrics:
        rec.record(prefixed(m, prefix) if prefix else m)
    extra: dict[str, Any] = {"rated": rating.source, "rated_tbw": rating.tbw, "steady_written_bytes": steady_written,
                             "steady_seconds": steady_seconds, "write_rate": use.write_rate,
                             "life_days": None if use.life_days == float("inf") else use.life_days,
                             "run_written_bytes": run_written, "run_share": share}
    rec.set_extra(DevTruthExtra.key(prefix, DevTruthExtra.ENDURANCE), extra)
    life = "never (nothing written)" if use.life_days == float("inf") else f"{use.life_days:.1f} days"
    rec.note(f"{prefix + ': ' if prefix else ''}endurance ({rating.source}): {use.write_rate / 1e6:.2f} MB/s "
             f"written while training -> rated TBW reached in {life} run continuously; this run used "
             f"{share:.3g} of the rated life ({run_written} B)")
    return use
