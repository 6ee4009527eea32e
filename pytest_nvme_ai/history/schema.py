"""The store's tables (SQLAlchemy Core) and its versioned DDL.

Why versioned DDL and not Alembic: the schema is four tables, and every runner of a fleet opens the
store at configure, so the check "is this store newer than me?" must be an integer comparison that
refuses with a message, under a lock, inside the plugin. Alembic keeps a revision hash (an unknown
one is a generic error, not "upgrade pytest-nvme-ai"), needs a migration environment (env.py, a
script directory, an ini) shipped inside a pytest plugin, and is one more dependency. Here each
schema version is an integer in `nvme_ai_meta`; `MIGRATIONS[n]` upgrades a store from version n to
n + 1 with plain DDL through the same engine, one transaction per step.

Timestamps are ISO 8601 UTC text: they sort the same way in SQLite and PostgreSQL, and a date
filter is a string comparison on one code path.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

STORE_SCHEMA_VERSION = 1

metadata = sa.MetaData()

meta = sa.Table(
    "nvme_ai_meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

runs = sa.Table(
    "nvme_ai_runs", metadata,
    sa.Column("run_id", sa.String(128), primary_key=True),
    sa.Column("started", sa.String(40), nullable=False),
    sa.Column("finished", sa.String(40)),
    sa.Column("status", sa.String(32), nullable=False),     # complete | interrupted
    sa.Column("exitstatus", sa.Integer),
    sa.Column("profile", sa.String(32)),
    sa.Column("runner", sa.String(255), nullable=False),
    sa.Column("commit_id", sa.String(64)),
    sa.Column("commit_branch", sa.String(255)),
    sa.Column("commit_dirty", sa.Boolean),
    sa.Column("kernel", sa.String(255)),
    sa.Column("plugin_version", sa.String(64)),
    sa.Column("versions_json", sa.Text, nullable=False),    # python, fio, deepspeed, torch, ...
    sa.Column("environment_json", sa.Text, nullable=False),
    sa.Column("argv_json", sa.Text, nullable=False),
    sa.Column("source", sa.Text),                            # results.json it was imported from, if any
    sa.Column("recorded_at", sa.String(40), nullable=False),
    sa.Index("ix_nvme_ai_runs_started", "started"),
)

targets = sa.Table(
    "nvme_ai_targets", metadata,
    sa.Column("run_id", sa.String(128), sa.ForeignKey("nvme_ai_runs.run_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("label", sa.String(255), primary_key=True),
    sa.Column("path", sa.Text),
    sa.Column("kind", sa.String(32)),
    sa.Column("drive_model", sa.String(255), nullable=False),
    sa.Column("serial", sa.String(255)),
    sa.Column("firmware", sa.String(255)),
    sa.Column("pcie_link", sa.String(64)),
    sa.Column("fingerprint", sa.String(512), nullable=False),
    sa.Column("device_json", sa.Text, nullable=False),
)

tests = sa.Table(
    "nvme_ai_tests", metadata,
    sa.Column("run_id", sa.String(128), sa.ForeignKey("nvme_ai_runs.run_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("test_index", sa.Integer, primary_key=True),
    sa.Column("nodeid", sa.Text, nullable=False),
    sa.Column("test_key", sa.Text, nullable=False),
    sa.Column("suite", sa.String(255)),
    sa.Column("target_label", sa.String(255)),
    sa.Column("outcome", sa.String(32)),
    sa.Column("verdict", sa.String(32)),
    sa.Column("duration", sa.Float),
    sa.Column("params_json", sa.Text, nullable=False),
    sa.Index("ix_nvme_ai_tests_key", "test_key"),
)

# One row per (run, test, metric), denormalised with the series key and the fingerprint so that reading
# one series over 10,000 runs is one index range scan, without joins.
metrics = sa.Table(
    "nvme_ai_metrics", metadata,
    sa.Column("run_id", sa.String(128), sa.ForeignKey("nvme_ai_runs.run_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("test_index", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("test_key", sa.Text, nullable=False),
    sa.Column("drive_model", sa.String(255), nullable=False),
    sa.Column("runner", sa.String(255), nullable=False),
    sa.Column("fingerprint", sa.String(512), nullable=False),
    sa.Column("started", sa.String(40), nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("unit", sa.String(32)),
    sa.Column("better", sa.String(8)),
    sa.Column("gated", sa.Boolean),
    sa.Column("samples_json", sa.Text, nullable=False),
    sa.Index("ix_nvme_ai_metrics_series", "test_key", "name", "drive_model", "runner", "started"),
    sa.Index("ix_nvme_ai_metrics_trend", "test_key", "name", "fingerprint", "runner", "started"),
)

TABLES = (meta, runs, targets, tests, metrics)

# from-version -> function(connection) that upgrades the store to from-version + 1.
# Version 1 is the first released schema, so there is nothing to migrate yet; a column added later goes
# here as e.g. `MIGRATIONS[1] = lambda c: c.execute(sa.text("ALTER TABLE nvme_ai_runs ADD COLUMN x TEXT"))`.
MIGRATIONS: dict[int, Callable[[Any], None]] = {}
