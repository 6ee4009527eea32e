"""History store on SQLite: rows from results.json, idempotent import, queries, change points, schema
versions, and two real processes appending at once."""
from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from history_data import run_doc

from pytest_nvme_ai.cli import main
from pytest_nvme_ai.core.history_types import SeriesKey, SeriesPoint
from pytest_nvme_ai.history import HistoryError, open_store
from pytest_nvme_ai.history.changes import differences, find_changes
from pytest_nvme_ai.history.flatten import fingerprint_text, flatten
from pytest_nvme_ai.history.schema import STORE_SCHEMA_VERSION

GOLDEN = Path(__file__).parent / "golden" / "results_full.json"
KEY = SeriesKey("suites/test_seq_read.py::test_seq_read[case0]", "bw", "Micron 7450", "runner-a")


def test_flatten_golden_run() -> None:
    rows = flatten(json.loads(GOLDEN.read_text()))
    assert rows.run["status"] == "complete" and rows.run["runner"] == "qual-rig-07"
    nvme = next(t for t in rows.targets if t["label"] == "nvme0")
    assert nvme["fingerprint"] == "nvme-samsung_ssd_990_pro_2tb-4b2qjxd7-gen3x4-ext4"
    assert nvme["pcie_link"] == "Gen3 x4" and nvme["firmware"] == "4B2QJXD7"
    bw = next(m for m in rows.metrics if m["name"] == "bw" and m["test_key"].endswith("[1M-qd128-p8]"))
    assert bw["drive_model"] == "Samsung SSD 990 PRO 2TB" and bw["runner"] == "qual-rig-07"
    assert len(json.loads(bw["samples_json"])) >= 3


def test_status_from_run_status_or_interrupted_exit() -> None:
    assert flatten(run_doc("a", 0, status="interrupted")).run["status"] == "interrupted"
    assert flatten(run_doc("b", 0, exitstatus=2)).run["status"] == "interrupted"
    assert flatten(run_doc("c", 0, exitstatus=1)).run["status"] == "complete"
    assert fingerprint_text({}) == "unknown"
    with pytest.raises(ValueError, match="no run.id"):
        flatten({"run": {}})


def test_import_is_idempotent_and_list_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "h.sqlite")
    files = []
    for i, fw in enumerate(["E2MU200", "E2MU200", "E2MU300"]):
        f = tmp_path / f"r{i}" / "results.json"
        f.parent.mkdir()
        f.write_text(json.dumps(run_doc(f"run-{i}", i, firmware=fw, n_tests=2)))
        files.append(str(f))
    files.append(str(GOLDEN))
    assert main(["history", "import", "--history", db, *files]) == 0
    assert "4 run(s) imported, 0 already there" in capsys.readouterr().out
    assert main(["history", "import", "--history", db, *files, files[0]]) == 0
    assert "0 run(s) imported, 5 already there" in capsys.readouterr().out
    store = open_store(db)
    assert store.count_runs() == 4
    assert [r.run_id for r in store.list_runs(fingerprint="e2mu300")] == ["run-2"]
    assert [r.run_id for r in store.list_runs(since="2026-01-01T01:00:00+00:00", until="2026-06-01")] == \
        ["run-2", "run-1"]
    assert {r.run_id for r in store.list_runs(test="test_seq_read[case1]")} == {"run-0", "run-1", "run-2"}
    assert {r.run_id for r in store.list_runs(metric="decode_throughput")} == {"20261126-154500-a1b2c3"}
    store.close()
    assert main(["history", "--history", db, "--fingerprint", "E2MU300"]) == 0
    out = capsys.readouterr().out
    assert "run-2" in out and "run-0" not in out and "nvme-micron_7450-e2mu300-gen4x4-ext4" in out
    assert main(["history", "list", "--history", db, "--test", "case1", "--metric", "bw", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["run_id"] for r in rows} == {"run-0", "run-1", "run-2"} and all(r["metric"] == "bw" for r in rows)
    assert main(["history", "--history", db, "--since", "yesterday"]) == 2
    assert "not a date" in capsys.readouterr().err


def test_bad_import_file_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    assert main(["history", "import", "--history", str(tmp_path / "h.sqlite"), str(bad)]) == 2
    assert f"{bad} is not valid JSON" in capsys.readouterr().err
    newer = tmp_path / "n.json"
    newer.write_text(json.dumps({**run_doc("x", 0), "schema_version": 99}))
    assert main(["history", "import", "--history", str(tmp_path / "h.sqlite"), str(newer)]) == 2
    assert "newer than this pytest-nvme-ai" in capsys.readouterr().err


def _points(values: list[float]) -> list[SeriesPoint]:
    return [SeriesPoint(f"r{i}", f"2026-01-01T{i:02d}", v) for i, v in enumerate(values)]


def test_known_step_gives_the_steps_run_back_and_noise_gives_none() -> None:
    rng = random.Random(7)
    values = [100 * (1 + rng.gauss(0, 0.02)) for _ in range(20)] + [85 * (1 + rng.gauss(0, 0.02)) for _ in range(12)]
    changes = find_changes(_points(values))
    assert [(c.index, c.after.run_id, c.before.run_id) for c in changes] == [(20, "r20", "r19")]
    assert changes[0].relative_change == pytest.approx(-0.15, abs=0.03) and changes[0].p_value < 1e-6
    for seed in range(10):
        rng = random.Random(seed)
        assert find_changes(_points([100 * (1 + rng.gauss(0, 0.02)) for _ in range(40)])) == []
    assert find_changes(_points([100.0] * 10)) == [] and find_changes(_points([1.0, 2.0])) == []


def test_changes_command_names_the_run_and_what_differed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "h.sqlite")
    store = open_store(db)
    # A firmware update at run 15 slowed bw by 20%; DeepSpeed was updated at run 25 with no effect.
    for i in range(35):
        store.append(run_doc(f"run-{i:02d}", i, firmware="E2MU300" if i >= 15 else "E2MU200",
                             deepspeed="0.20.0" if i >= 25 else "0.19.8",
                             value=lambda i, _t: 0.8e9 if i >= 15 else 1.0e9))
    pts = store.series(KEY)
    assert len(pts) == 35 and pts[0].run_id == "run-00" and pts[-1].fingerprint.endswith("e2mu300-gen4x4-ext4")
    store.close()
    assert main(["history", "changes", "--history", db]) == 0
    out = capsys.readouterr().out
    assert "change at run run-15" in out and re.search(r"\((-19\.\d|-20\.\d)%\)", out), out
    assert "before:  run-14" in out and "after:   run-15" in out
    assert "firmware E2MU200 -> E2MU300" in out and "deepspeed" not in out.split("differed:")[1]
    assert main(["history", "changes", "--history", db, "--metric", "iops", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []   # iops did not move


def test_differences_lists_only_what_changed() -> None:
    a = {"commit": "a" * 40, "deepspeed": "0.19.8", "kernel": "6.1", "pcie_link": "Gen4 x4", "firmware": "1"}
    b = {**a, "commit": "b" * 40, "pcie_link": "Gen3 x4"}
    assert differences(a, b) == ["commit aaaaaaaaaaaa -> bbbbbbbbbbbb", "PCIe link Gen4 x4 -> Gen3 x4"]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    import sqlalchemy as sa

    db = tmp_path / "h.sqlite"
    open_store(str(db)).close()
    eng = sa.create_engine(f"sqlite:///{db}")
    with eng.begin() as c:
        c.execute(sa.text("UPDATE nvme_ai_meta SET value='99' WHERE key='schema_version'"))
    eng.dispose()
    with pytest.raises(HistoryError, match=rf"schema version 99, newer than this pytest-nvme-ai understands "
                       rf"\({STORE_SCHEMA_VERSION}\)"):
        open_store(str(db))


def test_version_1_sqlite_store_migrates_and_keeps_text(tmp_path: Path) -> None:
    """Version 2 types PostgreSQL's columns; an SQLite store keeps its text, only the version row moves."""
    import sqlalchemy as sa

    db = tmp_path / "h.sqlite"
    store = open_store(str(db))
    assert store.append(run_doc("run-0", 0))
    store.close()
    eng = sa.create_engine(f"sqlite:///{db}")
    with eng.begin() as c:
        c.execute(sa.text("UPDATE nvme_ai_meta SET value='1' WHERE key='schema_version'"))
    store = open_store(str(db))
    assert [r.run_id for r in store.list_runs(since="2025-12-31")] == ["run-0"]
    store.close()
    with eng.connect() as c:
        assert c.execute(sa.text("SELECT value FROM nvme_ai_meta WHERE key='schema_version'")).scalar() == \
            str(STORE_SCHEMA_VERSION)
        started, params = c.execute(sa.text("SELECT r.started, t.params_json FROM nvme_ai_runs r "
                                            "JOIN nvme_ai_tests t USING (run_id)")).one()
        assert started == "2026-01-01T00:00:00.000000+00:00" and json.loads(params)["bs"] == "1M"
        # The SQL docs/history.md gives for sqlite3 works as written.
        assert c.execute(sa.text("SELECT json_extract(params_json, '$.bs') FROM nvme_ai_tests")).scalar() == "1M"
    eng.dispose()


def test_missing_store_is_an_error_for_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "--history", str(tmp_path / "nothing.sqlite")]) == 2
    assert "no history store at" in capsys.readouterr().err


WRITER = """
import os, sys, time
sys.path.insert(0, sys.argv[4])
from history_data import run_doc
from pytest_nvme_ai.history import open_store
store = open_store(sys.argv[1])
while not os.path.exists(sys.argv[5]):  # both writers start appending at the same moment
    time.sleep(0.01)
for i in range(int(sys.argv[3])):
    assert store.append(run_doc(f"{sys.argv[2]}-{i}", i, n_tests=20))
"""


def concurrent_appends(url: str, go: Path, n: int = 15) -> None:
    """Two real processes append n runs each to one store at the same time."""
    here = str(Path(__file__).parent)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, name, str(n), here, str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    import time

    time.sleep(1.5)  # both have imported and (raced to) open the store
    go.touch()
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err


def test_two_processes_appending_at_once_lose_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "h.sqlite")
    # No store yet: both writers also race to create the schema (SQLite: BEGIN IMMEDIATE; PostgreSQL: advisory lock).
    concurrent_appends(db, tmp_path / 'go')
    store = open_store(db)
    assert store.count_runs() == 30
    assert len(store.series(KEY)) == 30   # both writers' runs share one series
    store.close()


def test_an_older_store_is_migrated_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy as sa

    from pytest_nvme_ai.history import schema

    db = str(tmp_path / "h.sqlite")
    store = open_store(db)
    store.append(run_doc("old", 0))
    store.close()
    # Pretend this plugin is one schema version ahead, with the DDL that gets the current store there.
    now = STORE_SCHEMA_VERSION
    monkeypatch.setattr(schema, "STORE_SCHEMA_VERSION", now + 1)
    monkeypatch.setitem(schema.MIGRATIONS, now,
                        lambda c: c.execute(sa.text("ALTER TABLE nvme_ai_runs ADD COLUMN note TEXT")))
    store = open_store(db)
    with store.engine.connect() as c:
        assert c.execute(sa.text("SELECT value FROM nvme_ai_meta")).scalar() == str(now + 1)
        assert c.execute(sa.text("SELECT run_id, note FROM nvme_ai_runs")).all() == [("old", None)]
    store.close()
    open_store(db).close()   # already at the new version: nothing runs twice


def test_report_command_adds_trends_from_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "h.sqlite")
    files = []
    for i in range(3):
        f = tmp_path / f"run-{i}" / "results.json"
        f.parent.mkdir()
        f.write_text(json.dumps(run_doc(f"run-{i}", i)))
        files.append(str(f))
    assert main(["history", "import", "--history", db, *files[:2]]) == 0
    assert main(["report", files[1], "--history", db]) == 0
    assert "(1 trend series)" in capsys.readouterr().out
    assert 'id="trends"' in (tmp_path / "run-1" / "index.html").read_text()
    assert main(["report", files[2], "--history", db]) == 2   # not imported yet: says so
    assert "run run-2 is not in" in capsys.readouterr().err


DOCS = Path(__file__).parent.parent / "docs" / "history.md"


def doc_sql(kind: str) -> list[str]:
    """The statements of docs/history.md's SQL block for `kind` ('PostgreSQL' or 'SQLite'), as a user pastes them."""
    blocks = re.findall(r"```sql\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    [block] = [b for b in blocks if b.startswith(f"-- {kind}:")]
    body = "\n".join(line for line in block.splitlines() if not line.startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def test_the_documented_sqlite_queries_run_in_sqlite3(tmp_path: Path) -> None:
    import shutil
    import sqlite3
    from datetime import datetime, timezone

    db = tmp_path / "h.sqlite"
    store = open_store(str(db))
    for i in range(3):
        doc = run_doc(f"run-{i}", i)
        if i == 2:   # a run of today, so "the last 7 days" holds one
            doc["run"]["started"] = doc["run"]["finished"] = datetime.now(timezone.utc).isoformat()
        assert store.append(doc)
    store.close()
    statements = doc_sql("SQLite")
    assert len(statements) == 4
    results = []
    with sqlite3.connect(db) as c:
        for st in statements:
            results.append(c.execute(st).fetchall())
    recent, bw, versions, samples = results
    assert [r[0] for r in recent] == ["run-2"] and recent[0][4] == 0
    assert [r[1] for r in bw] == ["run-0", "run-1", "run-2"] and all(0.9 < r[3] < 1.1 for r in bw)
    assert {r[2] for r in versions} == {"0.19.8"}
    assert [r[0] for r in samples] == ["run-2"] * 3   # only this month's run, three samples
    if shutil.which("sqlite3"):   # the shell itself, as the docs say
        out = subprocess.run(["sqlite3", str(db), statements[1] + ";"], capture_output=True, text=True, check=True)
        assert out.stdout.count("run-") == 3, out
