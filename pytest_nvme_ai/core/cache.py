"""The session cache: what one test leaves for the next in the same session, under typed keys.

A key is declared once, by the module that writes it (`FIO_BW = CacheKey[float]("fio_bw")` in
measure/fio/runner.py), and read by importing that name, so a reader gets the writer's type and a
misspelt key is an ImportError, not a silent miss. `parts` (a target label, a size...) pick the entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, Hashable, TypeVar, cast

T = TypeVar("T")


@dataclass(frozen=True)
class CacheKey(Generic[T]):
    """A named family of cache entries whose values are all of type T."""

    name: str
    doc: str = ""


class SessionCache:
    """One per pytest session (run.session creates it; measure/ code reaches it through the recorder)."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, tuple[Hashable, ...]], object] = {}

    def get(self, key: CacheKey[T], *parts: Hashable) -> T | None:
        return cast("T | None", self._data.get((key.name, parts)))

    def put(self, key: CacheKey[T], value: T, *parts: Hashable) -> T:
        self._data[(key.name, parts)] = value
        return value

    def has(self, key: CacheKey[T], *parts: Hashable) -> bool:
        return (key.name, parts) in self._data

    def setdefault(self, key: CacheKey[T], make: Callable[[], T], *parts: Hashable) -> T:
        """The entry, created by `make()` on first use."""
        if (key.name, parts) not in self._data:
            self._data[(key.name, parts)] = make()
        return cast("T", self._data[(key.name, parts)])

    def __len__(self) -> int:
        return len(self._data)
