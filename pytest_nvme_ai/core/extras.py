"""Names of the result `extra` keys that another stage reads (the report, the history store).

A runner writes `recorder.set_extra(KEY, value)` and the report reads `extra.get(KEY)`: both import the
name from here, grouped by the module that writes it, so renaming a key is one edit and a reader cannot
drift from its writer. Extras nobody else reads (fio_runs, swap_bytes...) stay plain strings at the writer.
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

    @staticmethod
    def key(prefix: str | None, name: str) -> str:
        """The key of `name` for one side of a pairing test (`nvme_run_outcome`), or `name` alone."""
        return f"{prefix}_{name}" if prefix else name
