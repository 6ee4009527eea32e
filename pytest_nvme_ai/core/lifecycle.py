"""One owner for the long-lived children of a session (aio worker, engine pool, fork server, cgroups).

Each measurement that starts something which outlives one test registers a closer here; the pytest
session owns one `ChildRegistry` and closes it from `pytest_sessionfinish`, the way pytest-xdist tears
down its nodes. Closing runs in reverse order of registration (what started last, e.g. a worker forked
from the fork server, stops before what it depends on), every closer runs even when one fails, and a
closer registered twice under one name is kept once (a pool asks again for every case).

`atexit` stays only as the last resort for a dying interpreter: `close_all` is idempotent, so a module
may keep its own atexit hook calling the same closer without closing anything twice.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class CloseFailure:
    """A closer that raised: named, so the session can report it instead of hiding it."""

    name: str
    error: str


class ChildRegistry:
    """Named closers, closed once, newest first."""

    def __init__(self) -> None:
        self._closers: dict[str, Callable[[], None]] = {}
        self._lock = threading.Lock()

    def register(self, name: str, close: Callable[[], None]) -> None:
        """Close `name` at the end of the session (replaces an earlier closer of the same name)."""
        with self._lock:
            self._closers.pop(name, None)   # re-registered: it moves to the newest position
            self._closers[name] = close

    def unregister(self, name: str) -> None:
        """`name` closed itself (e.g. an evicted worker): nothing left to do for it at the end."""
        with self._lock:
            self._closers.pop(name, None)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._closers)

    def close_all(self) -> list[CloseFailure]:
        """Run every closer, newest first; returns the ones that raised (each closer runs once)."""
        with self._lock:
            closers = list(self._closers.items())
            self._closers.clear()
        failures: list[CloseFailure] = []
        for name, close in reversed(closers):
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - one closer failing must not leave the others' children running
                failures.append(CloseFailure(name, f"{type(exc).__name__}: {exc}"))
        return failures
