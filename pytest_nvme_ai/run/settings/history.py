"""The run history store (history/)."""
from __future__ import annotations

from pytest_nvme_ai.run.settings.base import Setting, text

ORDER = 40

SETTINGS = (
    Setting("history", "run history store: a path (SQLite file), a postgresql://user@host/db URL shared by a fleet, "
            "or 'none' to turn it off. Default: history.sqlite beside the reports (in the report dir).",
            text, None, metavar="PATH|URL|none"),
)
