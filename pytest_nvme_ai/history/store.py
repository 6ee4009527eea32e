"""The run store: one code path (SQLAlchemy Core) for an embedded SQLite file and a fleet's PostgreSQL.

`open_store(url)` connects, checks the schema version (a newer store is refused with a message),
creates or migrates the tables under a lock, and returns a `Store`. Appending a run is one
transaction; a run id already present is skipped, so importing the same results.json twice is harmless
and two sessions appending at once each get their own transaction (SQLite: BEGIN IMMEDIATE with a
busy timeout; PostgreSQL: row-level, distinct primary keys).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_nvme_ai.core.history_types import SeriesKey, SeriesPoint
from pytest_nvme_ai.core.redact import redact_text
from pytest_nvme_ai.core.results import load_results, results_path
from pytest_nvme_ai.history.engine import (HistoryError, ensure_waiting, make_engine, normalise_url,
                                           redact)
from pytest_nvme_ai.history.flatten import RunRows, flatten

_PG_LOCK_ID = 0x6E766D65      # "nvme": the advisory lock that serialises schema creation across a fleet


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    started: str
    status: str
    runner: str
    commit: str | None
    profile: str | None
    tests: int
    fingerprints: tuple[str, ...]
    failed: int = 0                 # tests that failed, errored or regressed (outcome or gate verdict)
    exitstatus: int | None = None
    verdict: str = ""               # passed | failed | interrupted ... (run_verdict)


FAILED_OUTCOMES = ("failed", "error")
FAILED_VERDICTS = ("regression", "error")


def run_verdict(status: str, exitstatus: int | None, failed: int) -> str:
    """One word per run: an interrupted run says so; a failed test or a non-zero exit is a failed run."""
    if status != "complete":
        return status
    if failed:
        return "failed"
    if exitstatus not in (0, None):
        return f"failed (exit {exitstatus})"
    return "passed"


@dataclass(frozen=True)
class MetricRow:
    run_id: str
    started: str
    status: str
    test_key: str
    metric: str
    value: float | None
    unit: str | None
    fingerprint: str
    runner: str


class Store:
    def __init__(self, engine: Any, url: str) -> None:
        self.engine = engine
        self.url = url

    @property
    def display(self) -> str:
        return redact(self.url)

    def close(self) -> None:
        self.engine.dispose()

    # ---- writing ---------------------------------------------------------------------------
    def has_run(self, run_id: str) -> bool:
        import sqlalchemy as sa

        from pytest_nvme_ai.history import schema as s

        with self.engine.connect() as c:
            return c.execute(sa.select(s.runs.c.run_id).where(s.runs.c.run_id == run_id)).first() is not None

    def append(self, data: Mapping[str, Any], *, source: str | None = None) -> bool:
        """Store one run; False when its run id is already there (idempotent import)."""
        return self.append_rows([flatten(data, source=source)]) == 1

    def append_rows(self, batch: Sequence[RunRows]) -> int:
        """Store runs in one transaction; returns how many were new."""
        import sqlalchemy as sa

        from pytest_nvme_ai.history import schema as s

        if not batch:
            return 0
        try:
            with self.engine.begin() as c:
                ids = [r.run_id for r in batch]
                present: set[str] = set()
                for chunk in _chunks(ids, 500):
                    present |= set(c.execute(sa.select(s.runs.c.run_id).where(s.runs.c.run_id.in_(chunk))).scalars())
                new = []
                for r in batch:  # a glob that matched one file twice stores it once
                    if r.run_id not in present:
                        present.add(r.run_id)
                        new.append(r)
                if not new:
                    return 0
                c.execute(s.runs.insert(), [r.run for r in new])
                for table, rows in ((s.targets, [t for r in new for t in r.targets]),
                                    (s.tests, [t for r in new for t in r.tests]),
                                    (s.metrics, [m for r in new for m in r.metrics])):
                    if rows:
                        c.execute(table.insert(), rows)
                return len(new)
        except sa.exc.IntegrityError:
            # Another session stored the same run id between our check and our insert: it is there.
            if len(batch) == 1 and self.has_run(batch[0].run_id):
                return 0
            raise

    # ---- reading ---------------------------------------------------------------------------
    def list_runs(self, *, test: str | None = None, metric: str | None = None, fingerprint: str | None = None,
                  since: str | None = None, until: str | None = None, limit: int = 50) -> list[RunSummary]:
        """Newest first. `test` and `fingerprint` match substrings; `metric` an exact name."""
        import sqlalchemy as sa

        from pytest_nvme_ai.history import schema as s

        q = sa.select(s.runs).order_by(s.runs.c.started.desc(), s.runs.c.run_id.desc()).limit(limit)
        if since:
            q = q.where(s.runs.c.started >= since)
        if until:
            q = q.where(s.runs.c.started < until)
        if metric:   # runs that measured this metric (in the matching test, when one is given)
            sub = sa.select(s.metrics.c.run_id).where(s.metrics.c.name == metric)
            if test:
                sub = sub.where(s.metrics.c.test_key.contains(test, autoescape=True))
            q = q.where(s.runs.c.run_id.in_(sub))
        elif test:   # from the tests table: a skipped or failed test without metrics counts too
            q = q.where(s.runs.c.run_id.in_(
                sa.select(s.tests.c.run_id).where(s.tests.c.test_key.contains(test, autoescape=True))))
        if fingerprint:
            q = q.where(s.runs.c.run_id.in_(sa.select(s.targets.c.run_id).where(
                s.targets.c.fingerprint.contains(fingerprint.lower(), autoescape=True))))
        with self.engine.connect() as c:
            rows = c.execute(q).mappings().all()
            ids = [r["run_id"] for r in rows]
            n_tests: dict[str, int] = {}
            n_failed: dict[str, int] = {}
            fps: dict[str, set[str]] = {}
            t = s.tests
            bad = sa.or_(t.c.outcome.in_(FAILED_OUTCOMES), t.c.verdict.in_(FAILED_VERDICTS))
            for chunk in _chunks(ids, 500):
                for rid, n, nf in c.execute(sa.select(t.c.run_id, sa.func.count(),
                                                      sa.func.sum(sa.case((bad, 1), else_=0)))
                                            .where(t.c.run_id.in_(chunk)).group_by(t.c.run_id)):
                    n_tests[rid], n_failed[rid] = n, int(nf or 0)
                for rid, fp in c.execute(sa.select(s.targets.c.run_id, s.targets.c.fingerprint).where(
                        s.targets.c.run_id.in_(chunk))):
                    fps.setdefault(rid, set()).add(fp)
        return [RunSummary(r["run_id"], r["started"], r["status"], r["runner"], r["commit_id"], r["profile"],
                           n_tests.get(r["run_id"], 0), tuple(sorted(fps.get(r["run_id"], ()))),
                           n_failed.get(r["run_id"], 0), r["exitstatus"],
                           run_verdict(r["status"], r["exitstatus"], n_failed.get(r["run_id"], 0))) for r in rows]

    def metric_rows(self, *, test: str | None = None, metric: str | None = None, fingerprint: str | None = None,
                    since: str | None = None, until: str | None = None, limit: int = 200) -> list[MetricRow]:
        """Values of matching (run, test, metric), newest first."""
        import sqlalchemy as sa

        from pytest_nvme_ai.history import schema as s

        m, r = s.metrics, s.runs
        q = (sa.select(m.c.run_id, m.c.started, r.c.status, m.c.test_key, m.c.name, m.c.value, m.c.unit,
                       m.c.fingerprint, m.c.runner)
             .join(r, r.c.run_id == m.c.run_id)
             .order_by(m.c.started.desc(), m.c.run_id.desc(), m.c.test_key, m.c.name).limit(limit))
        if test:
            q = q.where(m.c.test_key.contains(test, autoescape=True))
        if metric:
            q = q.where(m.c.name == metric)
        if fingerprint:
            q = q.where(m.c.fingerprint.contains(fingerprint.lower(), autoescape=True))
        if since:
            q = q.where(m.c.started >= since)
        if until:
            q = q.where(m.c.started < until)
        with self.engine.connect() as c:
            return [MetricRow(*row) for row in c.execute(q)]

    def series_keys(self, *, test: str | None = None, metric: str | None = None, drive_model: str | None = None,
                    runner: str | None = None) -> list[tuple[SeriesKey, int]]:
        """Every (test key, metric, drive model, runner) with its number of points."""
        import sqlalchemy as sa

        from pytest_nvme_ai.history import schema as s

        m = s.metrics
        cols = (m.c.test_key, m.c.name, m.c.drive_model, m.c.runner)
        q = sa.select(*cols, sa.func.count()).where(m.c.value.is_not(None)).group_by(*cols).order_by(*cols)
        if test:
            q = q.where(m.c.test_key.contains(test, autoescape=True))
        if metric:
            q = q.where(m.c.name == metric)
        if drive_model:
            q = q.where(m.c.drive_model.contains(drive_model, autoescape=True))
        if runner:
            q = q.where(m.c.runner == runner)
        with self.engine.connect() as c:
            return [(SeriesKey(*row[:4]), int(row[4])) for row in c.execute(q)]

    def series(self, key: SeriesKey, *, fingerprint: str | None = None, last: int | None = None,
               complete_only: bool = True) -> list[SeriesPoint]:
        """One series, oldest first; `fingerprint` narrows it to one exact device fingerprint (the report's
        trend); `last` keeps the newest N points. Interrupted runs are left out unless asked for."""
        import sqlalchemy as sa

        from pytest_nvme_ai.history import schema as s

        m, r = s.metrics, s.runs
        q = (sa.select(m.c.run_id, m.c.started, m.c.value, m.c.samples_json, r.c.status, r.c.commit_id,
                       m.c.fingerprint)
             .join(r, r.c.run_id == m.c.run_id)
             .where(m.c.test_key == key.test_key, m.c.name == key.metric, m.c.runner == key.runner,
                    m.c.value.is_not(None))
             .order_by(m.c.started.desc(), m.c.run_id.desc()))
        q = q.where(m.c.fingerprint == fingerprint) if fingerprint is not None else q.where(
            m.c.drive_model == key.drive_model)
        if complete_only:
            q = q.where(r.c.status == "complete")
        if last:
            q = q.limit(last)
        with self.engine.connect() as c:
            rows = c.execute(q).all()
        return [SeriesPoint(run_id=row[0], started=row[1], value=float(row[2]),
                            samples=tuple(json.loads(row[3] or "[]")), status=row[4], commit=row[5],
                            fingerprint=row[6]) for row in reversed(rows)]

    def unit_of(self, key: SeriesKey) -> tuple[str, str]:
        """(unit, better) of a series, from its newest point."""
        import sqlalchemy as sa

        from pytest_nvme_ai.history import schema as s

        m = s.metrics
        q = (sa.select(m.c.unit, m.c.better).where(m.c.test_key == key.test_key, m.c.name == key.metric)
             .order_by(m.c.started.desc()).limit(1))
        with self.engine.connect() as c:
            row = c.execute(q).first()
        return (str(row[0] or ""), str(row[1] or "higher")) if row else ("", "higher")

    def run_context(self, run_id: str, test_key: str) -> dict[str, Any]:
        """What a change-point report compares between two runs: commit, versions, kernel and the device
        of the target the test ran on."""
        import sqlalchemy as sa

        from pytest_nvme_ai.history import schema as s

        with self.engine.connect() as c:
            run = c.execute(sa.select(s.runs).where(s.runs.c.run_id == run_id)).mappings().first()
            label = c.execute(sa.select(s.tests.c.target_label).where(
                s.tests.c.run_id == run_id, s.tests.c.test_key == test_key).limit(1)).scalar()
            tgt = c.execute(sa.select(s.targets).where(s.targets.c.run_id == run_id, s.targets.c.label == label)
                            ).mappings().first() if label is not None else None
        if run is None:
            return {}
        versions = json.loads(run["versions_json"] or "{}")
        out: dict[str, Any] = {"run": run_id, "started": run["started"], "commit": run["commit_id"],
                               "kernel": run["kernel"], "status": run["status"]}
        for pkg in ("deepspeed", "torch", "fio", "transformers", "python"):
            out[pkg] = versions.get(pkg)
        if tgt is not None:
            out.update(firmware=tgt["firmware"], pcie_link=tgt["pcie_link"], drive=tgt["drive_model"],
                       fingerprint=tgt["fingerprint"])
        return out

    def count_runs(self) -> int:
        import sqlalchemy as sa

        from pytest_nvme_ai.history import schema as s

        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(s.runs)).scalar() or 0)


def _chunks(items: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def open_store(raw_url: str, *, create: bool = True, notify: Callable[[str], None] | None = None) -> Store:
    """Connect, refuse a newer schema, create or migrate an older one. Raises HistoryError with what to do.
    `notify` (default: a line on stderr) hears when the store is locked and opening has to wait."""
    import sqlalchemy as sa

    url = normalise_url(raw_url)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists() and not create:
            raise HistoryError(f"no history store at {path}: run the suite once, or pass --history URL")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(f"cannot create the directory of the history store {path}: {exc}") from None
    engine, busy = make_engine(url)
    try:
        ensure_waiting(engine, url, busy, notify, _ensure_schema)
    except HistoryError:
        engine.dispose()
        raise
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        cause = getattr(exc, "orig", None) or exc   # the driver's own error says what went wrong
        first = redact_text((str(cause).strip().splitlines() or [""])[0])  # drivers may quote the URL
        raise HistoryError(f"history store {redact(url)} is not reachable or not usable: "
                           f"{type(cause).__name__}: {first}") from None
    busy.wait_full()   # appends wait the full time for another session's append
    return Store(engine, url)


def _ensure_schema(engine: Any) -> None:
    import sqlalchemy as sa

    from pytest_nvme_ai.history import schema as s

    with engine.begin() as c:
        if engine.dialect.name == "postgresql":
            # Forty runners configuring at once: one creates or migrates, the others wait and then see it done.
            c.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_ID})
        insp = sa.inspect(c)
        if not insp.has_table(s.meta.name):
            if insp.has_table(s.runs.name):
                raise HistoryError("the history store has run tables but no nvme_ai_meta version row: "
                                   "it was not written by pytest-nvme-ai; point --nvme-ai-history at another store")
            s.metadata.create_all(c)
            c.execute(s.meta.insert(), [{"key": "schema_version", "value": str(s.STORE_SCHEMA_VERSION)}])
            return
        raw = c.execute(sa.select(s.meta.c.value).where(s.meta.c.key == "schema_version")).scalar()
        try:
            version = int(raw)
        except (TypeError, ValueError):
            raise HistoryError(f"the history store's schema_version is {raw!r}, not a number: "
                               "it is damaged; point --nvme-ai-history at another store") from None
        check_version(version, engine.url)
        while version < s.STORE_SCHEMA_VERSION:
            s.MIGRATIONS[version](c)
            version += 1
            c.execute(s.meta.update().where(s.meta.c.key == "schema_version").values(value=str(version)))
        s.metadata.create_all(c)  # tables a migration added are created here; existing ones are left alone


def check_version(version: int, url: Any) -> None:
    from pytest_nvme_ai.history.schema import STORE_SCHEMA_VERSION

    if version > STORE_SCHEMA_VERSION:
        raise HistoryError(
            f"the history store {redact(str(url))} has schema version {version}, newer than this pytest-nvme-ai "
            f"understands ({STORE_SCHEMA_VERSION}): a newer pytest-nvme-ai wrote to it. Upgrade pytest-nvme-ai "
            "(pip install -U pytest-nvme-ai) on this runner, or point --nvme-ai-history at another store "
            "(or 'none')")


def iter_results(paths: Iterable[str]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Read results.json files for import; a bad file raises ValueError naming it."""
    for raw in paths:
        p = results_path(raw)
        data = load_results(p)   # core.results: the one reader (schema checked there)
        if "run" not in data:
            raise ValueError(f"{p} is not a pytest-nvme-ai results.json (no 'run' object)")
        yield p, data
