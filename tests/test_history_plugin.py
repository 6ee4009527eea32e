"""The history store through pytest (pytester subprocesses): the default embedded store, the setting in
its three forms, configure-time refusal, a write that fails at the end, and the report's trend section."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pytest_nvme_ai.cli import main

TEST_FILE = """
import os, sqlite3

def test_measured(nvme_ai, offload_target):
    nvme_ai.record_samples("bw", [100e6, 101e6, 99e6])
    nvme_ai.record_samples("iops", [10, 11, 9])
    broken = os.environ.get("BREAK_HISTORY")
    if broken:  # the store goes bad while the run measures: the append at the end must fail visibly
        c = sqlite3.connect(broken)
        c.execute("DROP TABLE nvme_ai_metrics")
        c.commit()
        c.close()
"""


@pytest.fixture
def demo(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_demo=TEST_FILE)
    return pytester


def run(p: pytest.Pytester, *args: str) -> pytest.RunResult:
    return p.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_second_run_shows_a_trend_and_history_lists_both(demo: pytest.Pytester,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    r1 = run(demo)
    r1.assert_outcomes(passed=1)
    db = demo.path / "reports" / "history.sqlite"
    r1.stdout.fnmatch_lines([f"nvme-ai history: run * (1 tests) appended to sqlite:///{db}"])
    first = (demo.path / "reports" / "latest" / "index.html").read_text()
    assert "Trends (run history)" not in first   # one run is not a trend
    r2 = run(demo)
    r2.assert_outcomes(passed=1)
    r2.stdout.fnmatch_lines(["nvme-ai history: run * appended to *; report trends: 1 series"])
    page = (demo.path / "reports" / "latest" / "index.html").read_text()
    assert 'id="trends"' in page and "this run" in page and "<script" not in page.lower()
    trends = page.split('id="trends"')[1].split("</section>")[0]
    assert "<svg" in trends and not re.search(r'(src|href)="(https?:)?//', trends)   # inline, nothing fetched
    assert main(["history", "--history", str(db)]) == 0
    out = capsys.readouterr().out
    ids = sorted(p.name for p in (demo.path / "reports").iterdir() if p.is_dir() and not p.is_symlink())
    assert len(ids) == 2 and all(i in out for i in ids)
    # the verdict column (it replaced the status column: an interrupted run shows there as "interrupted")
    assert [ln.split()[3] for ln in out.splitlines() if ln.split()[:1] and ln.split()[0] in ids] == ["passed", "passed"]


def test_none_turns_it_off_and_env_and_ini_choose_the_store(demo: pytest.Pytester) -> None:
    run(demo, "--nvme-ai-history", "none").assert_outcomes(passed=1)
    assert not (demo.path / "reports" / "history.sqlite").exists()
    demo._monkeypatch.setenv("NVME_AI_HISTORY", str(demo.path / "env.sqlite"))
    run(demo).assert_outcomes(passed=1)
    assert (demo.path / "env.sqlite").is_file()
    demo._monkeypatch.delenv("NVME_AI_HISTORY")
    demo.makeini("[pytest]\nnvme_ai_history = ini-store.sqlite\n")
    r = run(demo)
    r.assert_outcomes(passed=1)
    assert (demo.path / "ini-store.sqlite").is_file()
    assert not (demo.path / "reports" / "history.sqlite").exists()


def test_newer_schema_store_stops_the_run_before_measuring(demo: pytest.Pytester) -> None:
    import sqlalchemy as sa

    from pytest_nvme_ai.history import open_store
    from pytest_nvme_ai.history.schema import STORE_SCHEMA_VERSION as now

    db = demo.path / "newer.sqlite"
    open_store(str(db)).close()
    eng = sa.create_engine(f"sqlite:///{db}")
    with eng.begin() as c:
        c.execute(sa.text(f"UPDATE nvme_ai_meta SET value='{now + 1}' WHERE key='schema_version'"))
    eng.dispose()
    r = run(demo, "--nvme-ai-history", str(db))
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines([(f"*history store (--nvme-ai-history): the history store * has schema version {now + 1}, "
                             f"newer than this pytest-nvme-ai understands ({now})*")])
    assert not (demo.path / "reports").exists()   # nothing was measured


def test_unreachable_store_stops_the_run_before_measuring(demo: pytest.Pytester, tmp_path: Path) -> None:
    r = run(demo, "--nvme-ai-history", f"postgresql://postgres@/fleet?host={tmp_path}/no-server-here")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines([("*history store (--nvme-ai-history): history store postgresql+psycopg://postgres@/fleet"
                             "* is not reachable or not usable: OperationalError*")])
    assert not (demo.path / "reports").exists()


def test_a_failing_write_is_reported_exits_1_and_keeps_results(demo: pytest.Pytester) -> None:
    db = demo.path / "h.sqlite"
    demo._monkeypatch.setenv("BREAK_HISTORY", str(db))
    r = run(demo, "--nvme-ai-history", str(db))
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["nvme-ai history NOT written to sqlite:///*h.sqlite: OperationalError*",
                            "  results.json is intact at *results.json; add it later with:",
                            "  nvme-ai history import *results.json --history 'sqlite:///*h.sqlite'"])
    results = next((demo.path / "reports").glob("*/results.json"))
    assert json.loads(results.read_text())["tests"][0]["outcome"] == "passed"


def test_an_interrupted_run_is_stored_as_interrupted_and_kept_out_of_trends(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_i="""
def test_a(nvme_ai, offload_target):
    nvme_ai.record_samples("bw", [1e8, 1e8, 1e8])

def test_b(nvme_ai, offload_target):
    raise KeyboardInterrupt
""")
    r = run(pytester)
    assert r.ret == pytest.ExitCode.INTERRUPTED
    from pytest_nvme_ai.history import open_store

    store = open_store(str(pytester.path / "reports" / "history.sqlite"), create=False)
    try:
        [summary] = store.list_runs()
        assert summary.status == "interrupted" and summary.tests == 2
        key = store.series_keys(metric="bw")[0][0]
        assert store.series(key) == [] and len(store.series(key, complete_only=False)) == 1
    finally:
        store.close()
