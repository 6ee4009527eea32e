"""How a child's run ended, in the words both sides use (any process): outcomes, exit codes, OOM.

Outcomes are data, never a dead pytest: `ok`, `oom` (torch.OutOfMemoryError, MemoryError, or the
child killed by SIGKILL, the kernel OOM killer's signal), `timeout` (the parent killed the child's
process group) and `error`.
"""
from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pytest_nvme_ai.measure.deepspeed.record import ChildRecord

Outcome = Literal["ok", "oom", "timeout", "error"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "oom", "timeout", "error")
EXIT_OK, EXIT_ERROR, EXIT_OOM, EXIT_USAGE = 0, 1, 3, 2
_OOM_NAMES = ("OutOfMemoryError", "MemoryError")


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or type(exc).__name__ in _OOM_NAMES or "out of memory" in str(exc).lower()


@dataclass(frozen=True)
class ChildExit:
    """How the child process ended: its status (None while a worker lives on), killed for time, seconds."""

    returncode: int | None
    timed_out: bool
    seconds: float


def classify(returncode: int | None, timed_out: bool, record: ChildRecord | None,
             log_tail: str) -> tuple[str, str | None]:
    """(outcome, why) from how the child ended and what it reported (None: it wrote nothing)."""
    if timed_out:
        return "timeout", "the run did not finish in time; its process group was killed"
    if record is not None and record.outcome in OUTCOMES:
        return record.outcome, record.error
    if returncode == -signal.SIGKILL:
        return "oom", "the child was killed by SIGKILL (most likely the kernel OOM killer)"
    if re.search(r"out of memory|MemoryError|OutOfMemoryError", log_tail):
        return "oom", "the log reports an out-of-memory error"
    if returncode is not None and returncode < 0:
        return "error", f"the child died of signal {signal.Signals(-returncode).name}"
    return "error", f"the child exited with status {returncode} without writing a result"
