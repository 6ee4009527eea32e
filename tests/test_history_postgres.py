"""The history store on a real PostgreSQL server: a throwaway cluster started for this module as the
`postgres` user (tests/pg_cluster.py), one fresh database per test. Skips, with what is missing, only
when the server binaries are not installed (scripts/setup.sh installs Debian's postgresql)."""
from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pg_cluster
import pytest
from history_data import run_doc
from test_history_store import GOLDEN, KEY, concurrent_appends

from pytest_nvme_ai.cli import main
from pytest_nvme_ai.core.history_types import SeriesKey
from pytest_nvme_ai.history import HistoryError, open_store

pytestmark = pytest.mark.skipif(pg_cluster.missing_reason() is not None, reason=str(pg_cluster.missing_reason()))


@pytest.fixture(scope="module")
def cluster() -> Iterator[pg_cluster.PgCluster]:
    c = pg_cluster.new_cluster().start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def pg_url(cluster: pg_cluster.PgCluster) -> str:
    return cluster.createdb("h_" + secrets.token_hex(4))


def test_import_list_series_and_changes(pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = []
    for i in range(24):
        f = tmp_path / f"r{i}.json"
        f.write_text(json.dumps(run_doc(f"run-{i:02d}", i, gen=3 if i >= 16 else 4,
                                        value=lambda i, _t: 0.5e9 if i >= 16 else 1.0e9)))
        files.append(str(f))
    assert main(["history", "import", "--history", pg_url, *files, str(GOLDEN)]) == 0
    assert "25 run(s) imported, 0 already there" in capsys.readouterr().out
    assert main(["history", "import", "--history", pg_url, *files[:3]]) == 0
    assert "0 run(s) imported, 3 already there" in capsys.readouterr().out
    store = open_store(pg_url)
    assert store.count_runs() == 25
    assert len(store.series(KEY)) == 24
    assert [r.run_id for r in store.list_runs(fingerprint="micron_7450-e2mu200-gen3x4", limit=3)] == ["run-23", "run-22", "run-21"]
    store.close()
    assert main(["history", "changes", "--history", pg_url]) == 0
    out = capsys.readouterr().out
    # The link trained at Gen3 from run 16 on: inside the series (same model, same runner) as a change point.
    assert "change at run run-16" in out and "PCIe link Gen4 x4 -> Gen3 x4" in out


def test_two_processes_appending_at_once_lose_nothing(pg_url: str, tmp_path: Path) -> None:
    # No store yet: both writers also race to create the schema (SQLite: BEGIN IMMEDIATE; PostgreSQL: advisory lock).
    concurrent_appends(pg_url, tmp_path / "go")
    store = open_store(pg_url)
    assert store.count_runs() == 30
    assert len(store.series(SeriesKey(KEY.test_key, "bw", "Micron 7450", "runner-a"))) == 30
    store.close()


def test_newer_schema_is_refused(pg_url: str) -> None:
    import sqlalchemy as sa

    store = open_store(pg_url)
    with store.engine.begin() as c:
        c.execute(sa.text("UPDATE nvme_ai_meta SET value='7' WHERE key='schema_version'"))
    store.close()
    with pytest.raises(HistoryError, match=r"schema version 7, newer than this pytest-nvme-ai understands"):
        open_store(pg_url)


def test_a_suite_run_appends_to_the_fleet_database(pytester: pytest.Pytester, pg_url: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    pytester.makepyfile(test_demo="def test_m(nvme_ai, offload_target):\n    nvme_ai.record_samples('bw', [1e8, 1e8, 1e8])\n")
    pytester._monkeypatch.setenv("NVME_AI_HISTORY", pg_url)
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["nvme-ai history: run * (1 tests) appended to postgresql+psycopg://postgres@/*"])
    assert not (pytester.path / "reports" / "history.sqlite").exists()
    assert main(["history", "--history", pg_url, "--metric", "bw"]) == 0
    assert "test_demo.py::test_m" in capsys.readouterr().out


def _create_version_1(url: str, docs: list[dict]) -> None:
    """A store exactly as version 1 wrote it: every time and JSON column text, schema_version 1."""
    import sqlalchemy as sa

    from pytest_nvme_ai.history import schema
    from pytest_nvme_ai.history.engine import normalise_url
    from pytest_nvme_ai.history.flatten import flatten

    md = sa.MetaData()
    old: dict[str, sa.Table] = {}
    for t in schema.TABLES:
        cols = [sa.Column(c.name, sa.Text() if isinstance(c.type, (schema.UtcTime, schema.JsonText)) else c.type,
                          primary_key=c.primary_key, nullable=c.nullable) for c in t.columns]
        old[t.name] = sa.Table(t.name, md, *cols)
    sa.Index("ix_v1_runs_started", old["nvme_ai_runs"].c.started)
    sa.Index("ix_v1_metrics_series", old["nvme_ai_metrics"].c.test_key, old["nvme_ai_metrics"].c.started)
    eng = sa.create_engine(normalise_url(url))
    with eng.begin() as c:
        md.create_all(c)
        c.execute(old["nvme_ai_meta"].insert(), [{"key": "schema_version", "value": "1"}])
        for doc in docs:
            r = flatten(doc)
            c.execute(old["nvme_ai_runs"].insert(), [r.run])
            for name, rows in (("nvme_ai_targets", r.targets), ("nvme_ai_tests", r.tests),
                               ("nvme_ai_metrics", r.metrics)):
                c.execute(old[name].insert(), rows)
    eng.dispose()


def _column_types(url: str) -> dict[str, str]:
    import sqlalchemy as sa

    from pytest_nvme_ai.history.engine import normalise_url

    eng = sa.create_engine(normalise_url(url))
    with eng.connect() as c:
        rows = c.execute(sa.text("SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name LIKE 'nvme_ai_%'")).all()
    eng.dispose()
    return dict(rows)


def _psql_queries(url: str) -> tuple[int, str, int]:
    """The queries docs/history.md gives for psql, as written there: no casts."""
    import sqlalchemy as sa

    from pytest_nvme_ai.history.engine import normalise_url

    eng = sa.create_engine(normalise_url(url))
    with eng.connect() as c:
        recent = c.execute(sa.text("SELECT count(*) FROM nvme_ai_runs WHERE started > now() - interval '7 days'")).scalar()
        bs = c.execute(sa.text("SELECT params_json->>'bs' FROM nvme_ai_tests LIMIT 1")).scalar()
        old = c.execute(sa.text("SELECT count(*) FROM nvme_ai_runs "
                                "WHERE started < timestamptz '2026-01-01 05:30+00'")).scalar()
    eng.dispose()
    return int(recent or 0), str(bs), int(old or 0)


def test_columns_are_typed_and_a_version_1_store_migrates(pg_url: str, cluster: pg_cluster.PgCluster) -> None:
    from datetime import datetime, timezone

    from pytest_nvme_ai.history.schema import STORE_SCHEMA_VERSION

    now = datetime.now(timezone.utc).isoformat()
    docs = [run_doc(f"run-{i}", i) for i in range(8)]
    recent = run_doc("recent", 0)
    recent["run"]["started"] = recent["run"]["finished"] = now
    docs.append(recent)
    # A fresh store is typed from the start.
    store = open_store(pg_url)
    for d in docs:
        assert store.append(d)
    before = [(r.run_id, r.started, r.verdict, r.failed) for r in store.list_runs()]
    pts = store.series(KEY)
    store.close()
    types = _column_types(pg_url)
    assert types["nvme_ai_runs.started"] == types["nvme_ai_metrics.started"] == "timestamp with time zone"
    assert types["nvme_ai_tests.params_json"] == types["nvme_ai_metrics.samples_json"] == "jsonb"
    assert _psql_queries(pg_url) == (1, "1M", 6)
    # The strings the store hands back keep the shape flatten wrote (ISO 8601 UTC, microseconds).
    assert pts[0].started == "2026-01-01T00:00:00.000000+00:00" and len(pts[0].samples) == 3
    # A version-1 store (text columns) holding the same runs: opened, it is migrated in place, nothing lost.
    v1 = cluster.createdb("h_v1_" + secrets.token_hex(4))
    _create_version_1(v1, docs)
    assert _column_types(v1)["nvme_ai_runs.started"] == "text"
    store = open_store(v1)
    assert [(r.run_id, r.started, r.verdict, r.failed) for r in store.list_runs()] == before
    assert [(p.run_id, p.started, p.value, p.samples) for p in store.series(KEY)] == \
        [(p.run_id, p.started, p.value, p.samples) for p in pts]
    assert store.append(run_doc("after-migration", 9))
    with store.engine.connect() as c:
        import sqlalchemy as sa

        assert c.execute(sa.text("SELECT value FROM nvme_ai_meta WHERE key='schema_version'")).scalar() == \
            str(STORE_SCHEMA_VERSION)
    store.close()
    types = _column_types(v1)
    assert types["nvme_ai_runs.finished"] == types["nvme_ai_runs.recorded_at"] == "timestamp with time zone"
    assert types["nvme_ai_runs.argv_json"] == types["nvme_ai_targets.device_json"] == "jsonb"
    assert _psql_queries(v1) == (1, "1M", 6)


def test_the_documented_psql_queries_run_without_casts(pg_url: str) -> None:
    from datetime import datetime, timezone

    from test_history_store import doc_sql

    store = open_store(pg_url)
    for i in range(3):
        doc = run_doc(f"run-{i}", i)
        if i == 2:
            doc["run"]["started"] = doc["run"]["finished"] = datetime.now(timezone.utc).isoformat()
        assert store.append(doc)
    results = []
    with store.engine.connect() as c:
        for st in doc_sql("PostgreSQL"):
            results.append(c.exec_driver_sql(st).all())
    store.close()
    recent, bw, versions, samples = results
    assert [r[0] for r in recent] == ["run-2"] and recent[0][4] == 0
    assert [r[1] for r in bw] == ["run-0", "run-1", "run-2"] and all(0.9 < float(r[3]) < 1.1 for r in bw)
    assert {r[2] for r in versions} == {"0.19.8"}
    assert [r[0] for r in samples] == ["run-2"] * 3
