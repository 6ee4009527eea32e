"""Names of the result `extra` keys that another stage reads (the report, the history store).

A runner writes `recorder.set_extra(KEY, value)` and the report reads `extra.get(KEY)`: both import the
name from here, grouped by the module that writes it, so renaming a key is one edit and a reader cannot
drift from its writer. Every extra that the report or the terminal summary reads is declared here; extras
nobody else reads (fio_runs, swap_bytes...) stay plain strings at the writer.
"""
from __future__ import annotations

from typing import Final


class TunerExtra:
    """Written by measure.aio.tune.tuned_aio_block into every test that asked for `--nvme-ai-aio auto`."""

    BLOCK: Final = "tuned_aio"            # the tuned aio block (dict of DeepSpeed aio keys)
    DEFAULT_BW: Final = "default_aio_bw"  # B/s with DeepSpeed's default aio settings
    TUNED_BW: Final = "tuned_aio_bw"      # B/s with the tuned block


class AioSuiteExtra:
    """Written by suites/test_aio_read.py: the fio reference measured on the same file."""

    FIO_BW: Final = "fio_bw"              # median B/s
    FIO_BW_SAMPLES: Final = "fio_bw_samples"


class InferenceExtra:
    """Written by measure.zero_inference.runner for each run (prefixed `cpu_`/`nvme_` inside a pairing test)."""

    RUN_OUTCOME: Final = "run_outcome"    # ok | oom | timeout | error | not_applicable
    LOG_TAIL: Final = "log_tail"          # the child's last log lines
    PARAMS: Final = "params"              # inside a pairing test only: the side's own case params (`nvme_params`)

    @staticmethod
    def key(prefix: str | None, name: str) -> str:
        """The key of `name` for one side of a pairing test (`nvme_run_outcome`), or `name` alone."""
        return f"{prefix}_{name}" if prefix else name


class QualExtra:
    """Written by measure.fio.runner and suites/test_seq_read.py (qualification rigor, docs/qualification.md);
    read by the report's qualification panel and the terminal summary."""

    STEADY_STATE: Final = "steady_state"  # {reached, reason, criterion, ...}: SNIA steady state of a point
    HOST_BOUND: Final = "host_bound"      # {flagged, reason}: the host, not the drive, limited the figure
    HEALTH: Final = "health"              # {repetitions_throttled, throttle_reason, ...}: temperature/throttling
    TIMELINE: Final = "timeline"          # [[start, end, bw], ...] per repetition
    PRECONDITION: Final = "precondition"  # what the sequential fill before the points wrote
    CONCURRENT: Final = "concurrent"      # per-drive results of the all-targets-at-once run


class RooflineExtra:
    """Written by measure.zero_inference.pairing (the offload roofline) and suites/test_drive_speed.py."""

    ROOFLINE: Final = "roofline"          # bounds.summary(): the roofline of an NVMe-offloaded case
    DRIVE_SPEED: Final = "drive_speed"    # the drive-speed sweep's summary, or {skipped: reason}


class WriteExtra:
    """Written by suites/test_write.py's checkpoint test."""

    CHECKPOINT_BYTES: Final = "checkpoint_bytes"  # bytes written per checkpoint
    READBACK_METHOD: Final = "readback_method"    # O_DIRECT, or fadvise DONTNEED where O_DIRECT is refused


class TrainingExtra(InferenceExtra):
    """Written by measure.zero_infinity.runner: a run's keys as for inference (same strings, same `cpu_`/`nvme_`
    prefixes in a pairing test), plus the loss curve."""

    LOSS_CURVE: Final = "loss_curve"      # the loss per step


class DevTruthExtra:
    """Written by measure.deepspeed.devtier for every run that offloads to the target: what reached the drive."""

    DEVTRUTH: Final = "devtruth"          # {configured, device: DeviceBytes|None, app_read_bytes, flags, reason}
    ENDURANCE: Final = "endurance"        # {rated, written_bytes, seconds, write_rate, life_days, run_share}

    @staticmethod
    def key(prefix: str | None, name: str = DEVTRUTH) -> str:
        return f"{prefix}_{name}" if prefix else name
