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
