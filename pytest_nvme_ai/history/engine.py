"""Connecting to a history store: URLs (normalised, shown without secrets), the engine, and SQLite's
wait for another process's lock, announced instead of silent (split from store.py)."""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_nvme_ai.core.redact import redact_text

SQLITE_BUSY_TIMEOUT_S = 120   # a second session waits for the first one's append instead of failing
SQLITE_QUIET_WAIT_S = 2.0     # a lock held longer than this is announced before the long wait


class HistoryError(Exception):
    """The store cannot be used; the message says what to do."""


def normalise_url(raw: str) -> str:
    """A path means an SQLite file; postgresql:// gets the psycopg (3) driver, which is what we install."""
    s = str(raw).strip()
    if "://" not in s:
        return "sqlite:///" + str(Path(s).expanduser().resolve())
    if s.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + s.split("://", 1)[1]
    return s


def redact(url: str) -> str:
    """The URL without its password (user info and `?password=`-style query keys), for messages and the
    terminal. SQLAlchemy's hide_password masks only the user info, so core.redact masks the query."""
    try:
        import sqlalchemy as sa

        # redact_text, not redact_url: urlunsplit would turn sqlite:////abs/path into sqlite://abs/path
        return redact_text(sa.engine.make_url(url).render_as_string(hide_password=True))
    except Exception:  # noqa: BLE001 - a URL we cannot parse is shown without anything after '@'
        return redact_text(url.split("@")[-1])


class Busy:
    """How long a new SQLite connection waits for another writer's lock; starts short (SQLITE_QUIET_WAIT_S)."""

    def __init__(self) -> None:
        self.seconds = float(SQLITE_QUIET_WAIT_S)

    def wait_full(self) -> None:
        self.seconds = float(SQLITE_BUSY_TIMEOUT_S)


def make_engine(url: str) -> tuple[Any, Busy]:
    """An engine for `url` and its SQLite lock wait: each new connection waits up to `busy.seconds` for
    another writer's lock (first briefly, so that a longer wait can be announced; see ensure_waiting)."""
    import sqlalchemy as sa

    if url.startswith("sqlite"):
        busy = Busy()
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)

        @sa.event.listens_for(engine, "do_connect")
        def _timeout(_dialect: Any, _rec: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
            cparams["timeout"] = busy.seconds

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's own transaction handling starts transactions late and DEFERRED, which turns two
            # concurrent writers into "database is locked"; take control and BEGIN IMMEDIATE ourselves.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy.seconds * 1000)}")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine, busy
    try:
        pg = url.startswith("postgresql")
        # jsonb columns come back as the server's text, not parsed: the store reads them as JSON text on
        # both backends (schema.JsonText), and parsing here only to serialise again halved series reads.
        engine = sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10} if pg else {},
                                  **({"json_deserializer": _as_text} if pg else {}))
        return engine, Busy()
    except (ImportError, sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise HistoryError(f"history store URL {redact(url)!r} cannot be used: {exc}; "
                           "use a path (SQLite) or postgresql://user@host/dbname") from None


def _as_text(raw: str | bytes) -> str:
    return raw if isinstance(raw, str) else bytes(raw).decode("utf-8")   # psycopg hands bytes for binary results


def _is_locked(exc: BaseException) -> bool:
    return "database is locked" in str(getattr(exc, "orig", None) or exc)


def ensure_waiting(engine: Any, url: str, busy: Busy, notify: Callable[[str], None] | None,
                   ensure: Callable[[Any], None]) -> None:
    """ensure(engine) (the schema check); an SQLite store another process keeps locked is announced (what,
    how long) and waited for up to SQLITE_BUSY_TIMEOUT_S, then refused with what to do."""
    import sqlalchemy as sa

    if engine.dialect.name != "sqlite":
        ensure(engine)
        return
    try:
        ensure(engine)
        return
    except sa.exc.OperationalError as exc:
        if not _is_locked(exc):
            raise
    where = redact(url)
    (notify or _stderr)(f"pytest-nvme-ai: the history store {where} is locked by another process (another "
                        f"session appending its run, or a program holding a write transaction open, e.g. an "
                        f"sqlite3 shell); waiting up to {SQLITE_BUSY_TIMEOUT_S} s for it")
    busy.wait_full()
    try:
        ensure(engine)
    except sa.exc.OperationalError as exc:
        if not _is_locked(exc):
            raise
        raise HistoryError(
            f"history store {where} stayed locked for {SQLITE_BUSY_TIMEOUT_S + SQLITE_QUIET_WAIT_S:g} s: another "
            f"process holds a write transaction on it (find it with `fuser {where.removeprefix('sqlite:///')}`). "
            f"Close that program and retry, or run without the history (--nvme-ai-history none) and import "
            f"results.json later with `nvme-ai history import`") from None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
