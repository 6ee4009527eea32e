"""What every workload spec shares (any process): its JSON form and the checks of its fields.

A spec is a frozen dataclass of plain data; `SpecJson` gives it `to_dict`/`to_json` and a `from_dict`
that names unknown keys (a typo in a suite's spec fails with what is accepted), and the checks raise
`SpecError` naming the field.
"""
from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import Any, TypeVar

from pytest_nvme_ai.core.text import safe_name
from pytest_nvme_ai.measure.deepspeed.errors import SpecError

S = TypeVar("S", bound="SpecJson")


class SpecJson:
    """Mixin for a frozen spec dataclass with an optional `aio` mapping field."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]  # the subclass is a dataclass
        if d.get("aio") is not None:
            d["aio"] = dict(d["aio"])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls: type[S], d: Any) -> S:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]  # the subclass is a dataclass
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"unknown spec key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(known))}")
        return cls(**dict(d))

    @classmethod
    def from_json(cls: type[S], text: str) -> S:
        return cls.from_dict(json.loads(text))


def check_positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError(f"{name} must be a positive integer, not {value!r}")


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise SpecError(f"{name} {value!r} is not one of {', '.join(repr(c) for c in choices)}")


def safe_label(text: str) -> str:
    """A model label made path- and id-safe for a spec's `id`."""
    return safe_name(text, None, default="model", keep="_.-")
