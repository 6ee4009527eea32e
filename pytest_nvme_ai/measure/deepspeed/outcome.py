"""How a child's run ended, in the words both sides use (any process): outcomes, exit codes, OOM.

Outcomes are data, never a dead pytest: `ok`, `oom` (torch.OutOfMemoryError, MemoryError, or the
child killed by SIGKILL, the kernel OOM killer's signal), `timeout` (the parent killed the child's
process group) and `error`. The parent classifies a run with launch.classify.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
