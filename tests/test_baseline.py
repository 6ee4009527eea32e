"""Baseline store: atomic merge under a lock, refusal of bad files, slugs."""
from __future__ import annotations

import json
import multiprocessing as mp
import re
from pathlib import Path

import pytest

from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.gate import baseline, manage

FP = {"kind": "nvme", "model": "Micron 7450", "firmware": "E2MU200", "pcie_gen": 4, "pcie_width": 4, "fs_type": "ext4"}


def entry(v: float, key: str = "k") -> baseline.NewSession:
    return baseline.NewSession(key, "x", {}, {"bw": Metric.of("bw", [v])})


def _saver(path: str, worker: int, n: int) -> None:
    for i in range(n):
        baseline.save_sessions(Path(path), name="b", fingerprint=FP, sessions=[entry(i + 1, f"w{worker}::t{i}")],
                               run={"id": f"r{worker}"})


def test_concurrent_sessions_lose_no_entries(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_saver, args=(str(path), w, 15)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    bf = baseline.load(path)
    assert bf is not None and len(bf.entries) == 45
    assert not list(tmp_path.glob(".b.json.*.tmp"))  # no temp files left behind


def test_save_refuses_other_device_and_keeps_file(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    baseline.save_sessions(path, name="b", fingerprint=FP, sessions=[entry(1)], run={"id": "r"})
    before = path.read_text()
    with pytest.raises(baseline.BaselineError, match="recorded on device"):
        baseline.save_sessions(path, name="b", fingerprint={**FP, "firmware": "NEW"}, sessions=[entry(2)],
                               run={"id": "r"})
    assert path.read_text() == before


@pytest.mark.parametrize("text,match", [
    ("not json", "invalid JSON"),
    ("[]", "top level is not an object"),
    ('{"entries": {}}', "no integer schema_version"),
    ('{"schema_version": 1, "name": "b", "entries": {"k": {"metrics": {"bw": {"unit": "B/s"}}}}}', "corrupt"),
    ('{"schema_version": 2, "name": "b", "entries": {"k": {"metrics": {}}}}', "KeyError"),
    ('{"schema_version": 2, "name": "b", "entries": {"k": {"sessions": []}}}', "no sessions"),
    ('{"schema_version": 0, "name": "b", "entries": {}}', "never written"),
])
def test_corrupt_files_are_refused_with_what_to_do(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "b.json"
    path.write_text(text)
    with pytest.raises(baseline.BaselineError, match=match) as ei:
        baseline.load(path)
    assert "Nothing was overwritten" in str(ei.value)


def test_missing_file_is_none(tmp_path: Path) -> None:
    assert baseline.load(tmp_path / "absent.json") is None


def test_promote_refuses_non_results(tmp_path: Path) -> None:
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a pytest-nvme-ai results.json"):
        manage.promote(f, tmp_path)
    f.write_text(json.dumps({"schema_version": 7}))
    with pytest.raises(ValueError, match="newer than this pytest-nvme-ai reads"):
        manage.promote(f, tmp_path)
    with pytest.raises(FileNotFoundError, match="reports/latest/results.json"):
        manage.promote(tmp_path / "nope.json", tmp_path)


def test_save_appends_sessions_and_trims_the_window(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    env = {"versions": {"fio": "fio-3.33", "torch": "2.13.0", "other": "x"}, "kernel": "Linux 6.1"}
    for i in range(5):
        baseline.save_sessions(path, name="b", fingerprint=FP, sessions=[entry(100 + i)], window=3,
                               run={"id": f"r{i}", "started": f"2026-12-01T09:0{i}:00", "profile": "quick",
                                    "commit": {"id": f"c{i}"}}, environment=env)
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == baseline.FORMAT_VERSION == 2
    sessions = raw["entries"]["k"]["sessions"]
    assert [s["run_id"] for s in sessions] == ["r2", "r3", "r4"]            # oldest dropped, order kept
    s = sessions[-1]
    assert s["commit"] == "c4" and s["time"] == "2026-12-01T09:04:00" and s["firmware"] == "E2MU200"
    assert s["link"] == "Gen4 x4" and s["versions"] == {"fio": "fio-3.33", "torch": "2.13.0", "kernel": "Linux 6.1"}
    assert s["metrics"]["bw"]["samples"] == [104.0]


def test_other_settings_restart_the_window(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    for i in range(3):
        baseline.save_sessions(path, name="b", fingerprint=FP, sessions=[entry(1)], run={"id": f"r{i}"})
    changed = baseline.NewSession("k", "x", {"bs": "2M"}, {"bw": Metric.of("bw", [2.0])})
    baseline.save_sessions(path, name="b", fingerprint=FP, sessions=[changed], run={"id": "new"})
    bf = baseline.load(path)
    assert bf is not None and [s.run_id for s in bf.entries["k"].sessions] == ["new"]


def test_real_v1_file_migrates_to_a_one_session_window(tmp_path: Path) -> None:
    """tests/golden/baseline_v1/ holds a file written by the v1 code (commit 29dd5c4) on the build VM."""
    src = Path(__file__).parent / "golden" / "baseline_v1" / "virtio-vda-ext4.json"
    path = tmp_path / src.name
    path.write_text(src.read_text())
    bf = baseline.load(path)
    assert bf is not None and bf.schema_version == 1
    e = bf.entries["test_v1demo.py::test_seq"]
    (only,) = e.sessions
    assert only.source == "v1" and only.profile == "quick" and only.run_id == "20261201-090141-d25dc5"
    assert e.metrics["bw"].samples == (67041822.0, 67041822.0, 67041822.0) and e.params["rate"] == "emulated drive"
    # the next save appends a session and writes version 2, keeping the migrated one
    new = baseline.NewSession(e.key, e.nodeid, e.params, {"bw": Metric.of("bw", [6.7e7, 6.7e7, 6.7e7])})
    baseline.save_sessions(path, name=bf.name, fingerprint=bf.fingerprint, sessions=[new],
                           run={"id": "v2run", "profile": "quick"})
    again = baseline.load(path)
    assert again is not None and again.schema_version == 2
    assert [s.source for s in again.entries[e.key].sessions] == ["v1", "save"]
    assert set(again.entries) == set(bf.entries)       # untouched entries survive the migration
    assert again.created == bf.created


def test_newer_baseline_refused_and_untouched_on_save(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"schema_version": 3, "name": "b", "entries": {}}))
    before = path.read_text()
    with pytest.raises(baseline.BaselineError, match=r"schema_version 3, newer than this pytest-nvme-ai reads \(2\)"):
        baseline.save_sessions(path, name="b", fingerprint=FP, sessions=[entry(1)], run={"id": "r"})
    assert path.read_text() == before


def _results(run_id: str, bw: float) -> dict:
    return {"schema_version": 1, "run": {"id": run_id, "started": f"2026-12-01T10:{run_id[-1]}0:00", "profile": "quick",
                                         "commit": {"id": "abc123"}},
            "environment": {"versions": {"fio": "fio-3.33"}, "kernel": "Linux 6.1"},
            "targets": [{"label": "default", "device": {"fingerprint": FP}}],
            "tests": [{"key": "t.py::test_bw", "nodeid": "t.py::test_bw[@default]", "params": {}, "target_label": "default",
                       "outcome": "passed", "verdict": "pass",
                       "metrics": {"bw": {"value": bw, "unit": "B/s", "better": "higher", "samples": [bw, bw, bw],
                                          "gated": True}}}]}


def test_promote_adds_reviewed_sessions_and_show_lists_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_nvme_ai.cli import main

    for i, bw in enumerate((100.0, 102.0, 98.0, 101.0, 99.0, 100.5)):
        f = tmp_path / f"r{i}.json"
        f.write_text(json.dumps(_results(f"run{i}", bw)))
        assert main(["baseline", "promote", str(f), "--baseline-dir", str(tmp_path / "b"), "--name", "ref",
                     "--window", "5"]) == 0
    raw = json.loads((tmp_path / "b" / "ref.json").read_text())
    sessions = raw["entries"]["t.py::test_bw"]["sessions"]
    assert [s["run_id"] for s in sessions] == ["run1", "run2", "run3", "run4", "run5"]
    assert {s["source"] for s in sessions} == {"promote"} and sessions[0]["commit"] == "abc123"
    capsys.readouterr()
    assert main(["baseline", "show", "ref", "--baseline-dir", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "t.py::test_bw  (5 sessions, profile quick)" in out
    # one table row per session: run, start, commit, source, firmware, link, versions
    row = next(ln.split() for ln in out.splitlines() if ln.split()[:1] == ["run3"])
    assert row[1:5] == ["2026-12-01", "10:30:00", "abc123", "promote"] and "fio fio-3.33" in " ".join(row)
    assert "drift between sessions" in out          # 5 sessions: the drift is known
    assert re.search(r"^\s+bw\s+B/s\s+higher\s+.*\s±\d+\.\d%$", out, re.M), out
    assert main(["baseline", "show", "--baseline-dir", str(tmp_path / "b")]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[:6] == ["ref", "1", "up", "to", "5", "2"]   # name, entries, up to 5 sessions each, format 2
