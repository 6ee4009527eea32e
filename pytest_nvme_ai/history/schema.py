"""The store's tables (SQLAlchemy Core) and its versioned DDL.

Why versioned DDL and not Alembic: the schema is four tables, and every runner of a fleet opens the
store at configure, so the check "is this store newer than me?" must be an integer comparison that
refuses with a message, under a lock, inside the plugin. Alembic keeps a revision hash (an unknown
one is a generic error, not "upgrade pytest-nvme-ai"), needs a migration environment (env.py, a
script directory, an ini) shipped inside a pytest plugin, and is one more dependency. Here each
schema version is an integer in `nvme_ai_meta`; `MIGRATIONS[n]` upgrades a store from version n to
n + 1 with plain DDL through the same engine, one transaction per step.

Column types (schema version 2): in PostgreSQL the times are `timestamptz` and the JSON columns `jsonb`,
so a user's `started > now() - interval '7 days'` or `params_json->>'bs'` works in psql without casts; in
SQLite both stay text (ISO 8601 UTC, whose text order is time order, and JSON text that SQLite's own
json_extract reads). The two TypeDecorators below keep the Python side one code path: the store always
binds and reads ISO 8601 UTC strings and JSON text, whatever the database holds. Version 1 stored text in
PostgreSQL too; MIGRATIONS[1] converts those columns in place (ALTER COLUMN ... TYPE ... USING).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

STORE_SCHEMA_VERSION = 2


class UtcTime(sa.types.TypeDecorator[str]):
    """ISO 8601 UTC text in Python and SQLite; `timestamptz` in PostgreSQL."""

    impl = sa.String(40)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.DateTime(timezone=True))
        return dialect.type_descriptor(sa.String(40))

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None or dialect.name != "postgresql":
            return value
        return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        if isinstance(value, datetime):   # PostgreSQL: back to the shape flatten.utc_iso writes
            return value.astimezone(timezone.utc).isoformat(timespec="microseconds")
        return value


class JsonText(sa.types.TypeDecorator[str]):
    """JSON text in Python and SQLite; `jsonb` in PostgreSQL (the store binds and reads it as text)."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None or dialect.name != "postgresql":
            return value
        if not isinstance(value, str):
            return value
        return _no_nul(json.loads(value))

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        # Text already (SQLite; PostgreSQL through engine.make_engine's json_deserializer) or, from an engine
        # made elsewhere, the parsed value.
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, sort_keys=True)


def _no_nul(x: Any) -> Any:
    """jsonb refuses the NUL character, which JSON text may carry escaped (version 1's text columns took it):
    it is stored as U+FFFD, the replacement character."""
    if isinstance(x, str):
        return x.replace("\x00", "\ufffd")
    if isinstance(x, list):
        return [_no_nul(v) for v in x]
    if isinstance(x, dict):
        return {_no_nul(k): _no_nul(v) for k, v in x.items()}
    return x


metadata = sa.MetaData()

meta = sa.Table(
    "nvme_ai_meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

runs = sa.Table(
    "nvme_ai_runs", metadata,
    sa.Column("run_id", sa.String(128), primary_key=True),
    sa.Column("started", UtcTime(), nullable=False),
    sa.Column("finished", UtcTime()),
    sa.Column("status", sa.String(32), nullable=False),     # complete | interrupted
    sa.Column("exitstatus", sa.Integer),
    sa.Column("profile", sa.String(32)),
    sa.Column("runner", sa.String(255), nullable=False),
    sa.Column("commit_id", sa.String(64)),
    sa.Column("commit_branch", sa.String(255)),
    sa.Column("commit_dirty", sa.Boolean),
    sa.Column("kernel", sa.String(255)),
    sa.Column("plugin_version", sa.String(64)),
    sa.Column("versions_json", JsonText(), nullable=False),    # python, fio, deepspeed, torch, ...
    sa.Column("environment_json", JsonText(), nullable=False),
    sa.Column("argv_json", JsonText(), nullable=False),
    sa.Column("source", sa.Text),                            # results.json it was imported from, if any
    sa.Column("recorded_at", UtcTime(), nullable=False),
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
    sa.Column("device_json", JsonText(), nullable=False),
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
    sa.Column("params_json", JsonText(), nullable=False),
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
    sa.Column("started", UtcTime(), nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("unit", sa.String(32)),
    sa.Column("better", sa.String(8)),
    sa.Column("gated", sa.Boolean),
    sa.Column("samples_json", JsonText(), nullable=False),
    sa.Index("ix_nvme_ai_metrics_series", "test_key", "name", "drive_model", "runner", "started"),
    sa.Index("ix_nvme_ai_metrics_trend", "test_key", "name", "fingerprint", "runner", "started"),
)

TABLES = (meta, runs, targets, tests, metrics)

# Columns typed in PostgreSQL from version 2 on; SQLite keeps text, so its migration changes nothing.
PG_TIME_COLUMNS = (("nvme_ai_runs", "started"), ("nvme_ai_runs", "finished"), ("nvme_ai_runs", "recorded_at"),
                   ("nvme_ai_metrics", "started"))
PG_JSON_COLUMNS = (("nvme_ai_runs", "versions_json"), ("nvme_ai_runs", "environment_json"),
                   ("nvme_ai_runs", "argv_json"), ("nvme_ai_targets", "device_json"),
                   ("nvme_ai_tests", "params_json"), ("nvme_ai_metrics", "samples_json"))


def _type_pg_columns(c: Any) -> None:
    """Version 1 -> 2: text times become timestamptz and JSON text becomes jsonb, in place (each ALTER rewrites
    its table once, inside the migration's transaction: a failure leaves version 1 intact)."""
    if c.dialect.name != "postgresql":
        return
    for table, col in PG_TIME_COLUMNS:
        c.execute(sa.text(f'ALTER TABLE {table} ALTER COLUMN {col} TYPE timestamptz USING "{col}"::timestamptz'))
    for table, col in PG_JSON_COLUMNS:
        c.execute(sa.text(f'ALTER TABLE {table} ALTER COLUMN {col} TYPE jsonb USING "{col}"::jsonb'))


# from-version -> function(connection) that upgrades the store to from-version + 1, e.g. a column added
# later: `MIGRATIONS[2] = lambda c: c.execute(sa.text("ALTER TABLE nvme_ai_runs ADD COLUMN x TEXT"))`.
MIGRATIONS: dict[int, Callable[[Any], None]] = {1: _type_pg_columns}
