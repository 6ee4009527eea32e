"""Baseline store: atomic merge under a lock, refusal of bad files, slugs."""
from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from pytest_nvme_ai.gate import baseline

FP = {"kind": "nvme", "model": "Micron 7450", "firmware": "E2MU200", "pcie_gen": 4, "pcie_width": 4, "fs_type": "ext4"}


def entry(v: float) -> dict:
    return {"nodeid": "x", "params": {}, "metrics": {"bw": {"value": v, "unit": "B/s", "better": "higher",
                                                              "samples": [v]}}}


def _saver(path: str, worker: int, n: int) -> None:
    for i in range(n):
        baseline.save_entries(Path(path), name="b", fingerprint=FP, entries={f"w{worker}::t{i}": entry(i)},
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
    baseline.save_entries(path, name="b", fingerprint=FP, entries={"k": entry(1)}, run={"id": "r"})
    before = path.read_text()
    with pytest.raises(baseline.BaselineError, match="recorded on device"):
        baseline.save_entries(path, name="b", fingerprint={**FP, "firmware": "NEW"}, entries={"k": entry(2)},
                              run={"id": "r"})
    assert path.read_text() == before


@pytest.mark.parametrize("text,match", [
    ("not json", "invalid JSON"),
    ("[]", "top level is not an object"),
    ('{"entries": {}}', "no integer schema_version"),
    ('{"schema_version": 1, "name": "b", "entries": {"k": {"metrics": {"bw": {"unit": "B/s"}}}}}', "corrupt"),
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
        baseline.promote(f, tmp_path)
    f.write_text(json.dumps({"schema_version": 7}))
    with pytest.raises(ValueError, match="newer than this pytest-nvme-ai reads"):
        baseline.promote(f, tmp_path)
    with pytest.raises(FileNotFoundError, match="reports/latest/results.json"):
        baseline.promote(tmp_path / "nope.json", tmp_path)
