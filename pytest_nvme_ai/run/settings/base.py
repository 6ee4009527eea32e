"""A setting's declaration and the parsers the declarations share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pytest


@dataclass(frozen=True)
class Setting:
    name: str            # attribute name, e.g. "tolerance"
    help: str
    parse: Callable[[str], Any]
    default: Any
    kind: str = "value"  # value | list | flag
    metavar: str | None = None
    env: bool = True
    # How a list setting's env var is split into values (default: os.pathsep, as for targets);
    # --nvme-ai-ab splits like a shell (core.arms.split_ab_text: aio JSON holds commas and colons).
    split_env: Callable[[str], list[str]] | None = None

    @property
    def option(self) -> str:
        return "--nvme-ai-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "nvme_ai_" + self.name

    @property
    def envvar(self) -> str:
        return "NVME_AI_" + self.name.upper()


class SettingError(pytest.UsageError):  # type: ignore[misc]  # @final only in the stubs; a subclass names the cause
    """A bad setting value; pytest shows a UsageError as a one-line error, not a traceback."""


def percent(v: str) -> float:
    from pytest_nvme_ai.gate.policy import parse_percent  # one tolerance parser: the gate owns the unit

    return parse_percent(v)


def positive_int(v: str) -> int:
    x = int(v)
    if x < 1:
        raise ValueError(f"{v!r} must be a whole number of at least 1")
    return x


def boolean(v: str) -> bool:
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{v!r} is not a boolean; use 1/0, true/false, yes/no")


def text(v: str) -> str:
    return str(v)
