"""Test order for engine reuse: cases that share a ZeRO-Inference engine run next to each other.

A suite marks each case with the engines it uses, in order: `nvme_ai_engines(key, ...)` (the
ZeRO-Inference suite does it in pytest_generate_tests; a CPU-vs-NVMe pair names both of its engines).
`engine_order` reorders only the marked items, inside the slots they already occupy, so every other
test keeps its place; a pair test still runs both its sides back to back, inside one test, so drift
hits both alike.

The order is greedy and stable: after each case, the next one is the first remaining case that
uses an engine still alive (the last `alive` engines used); when none does, the first remaining
case in the original order. Cases are never moved across test files.
"""
from __future__ import annotations

from typing import Sequence, TypeVar

import pytest

T = TypeVar("T")
MARKER = "nvme_ai_engines"


def greedy_order(items: Sequence[T], engines: Sequence[tuple[str, ...]], alive: int = 2) -> list[T]:
    """`items` reordered so that consecutive ones share engines; `engines[i]` are item i's engines."""
    remaining = list(range(len(items)))
    recent: list[str] = []
    out: list[int] = []
    while remaining:
        pick = next((i for i in remaining if set(engines[i]) & set(recent)), remaining[0])
        remaining.remove(pick)
        out.append(pick)
        for key in engines[pick]:
            if key in recent:
                recent.remove(key)
            recent.append(key)
        recent = recent[-alive:]
    return [items[i] for i in out]


def engine_order(items: list[pytest.Item], alive: int = 2) -> list[pytest.Item]:
    """pytest items with the marked ones regrouped per file (see the module docstring)."""
    def keys(item: pytest.Item) -> tuple[str, ...] | None:
        marker = item.get_closest_marker(MARKER)
        if marker is None:
            return None
        callspec = getattr(item, "callspec", None)
        target = getattr(callspec.params.get("offload_target"), "label", "") if callspec is not None else ""
        return tuple(f"{k} @ {target}" for k in marker.args)  # an engine lives on one target

    out = list(items)
    by_file: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        if keys(item) is not None:
            by_file.setdefault(str(item.path), []).append(index)
    for slots in by_file.values():
        group = [items[i] for i in slots]
        for slot, item in zip(slots, greedy_order(group, [keys(i) or () for i in group], alive)):
            out[slot] = item
    return out
