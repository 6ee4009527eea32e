"""The run history: every run's results in one store (SQLite beside the reports, or a fleet's PostgreSQL),
change points in each series, and the trends the report charts. Imports only `core`.

SQLAlchemy, numpy and ruptures are imported inside functions: `import pytest_nvme_ai.history` stays cheap.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest_nvme_ai.history.store import Store

__all__ = ["HistoryError", "open_store"]


def open_store(raw_url: str, *, create: bool = True, notify: Callable[[str], None] | None = None) -> Store:
    from pytest_nvme_ai.history.store import open_store as _open

    return _open(raw_url, create=create, notify=notify)


def __getattr__(name: str) -> Any:
    if name == "HistoryError":
        from pytest_nvme_ai.history.store import HistoryError

        return HistoryError
    raise AttributeError(name)
