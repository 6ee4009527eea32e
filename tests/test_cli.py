"""The `nvme-ai` commands a CI script acts on: compare (text/json/html, --exit-code), report -o into a new
directory, history verdicts and too-short series, baseline show/drop/diff, devices without a path."""
from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from history_data import run_doc

from pytest_nvme_ai.cli import main
from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.gate import baseline

GOLDEN = Path(__file__).parent / "golden" / "results_full.json"
SEQ_BW_TESTS = 7    # seq_read tests of the golden run with a bw measured (the compare page test counts the same)


def write(dir_: Path, data: dict[str, Any]) -> Path:
    dir_.mkdir(parents=True, exist_ok=True)
    (dir_ / "results.json").write_text(json.dumps(data), encoding="utf-8")
    return dir_ / "results.json"


def changed(factor: float, metric: str = "bw", suite: str = "seq_read") -> dict[str, Any]:
    """The golden run again, with `metric` of every `suite` test scaled by `factor` (samples too)."""
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    data["run"]["id"] = "20261127-090000-d4e5f6"
    for t in data["tests"]:
        m = t["metrics"].get(metric)
        if m and t["suite"] == suite:
            m["value"] *= factor
            m["samples"] = [x * factor for x in m["samples"]]
    return data


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    same = copy.deepcopy(golden)
    same["run"]["id"] = "20261127-080000-000000"
    return {"a": write(tmp_path / "a", golden), "same": write(tmp_path / "same", same),
            "worse": write(tmp_path / "worse", changed(0.8)), "better": write(tmp_path / "better", changed(1.25)),
            "noise": write(tmp_path / "noise", changed(0.95))}


# ---- compare ---------------------------------------------------------------------------------------
def test_compare_exit_code_is_1_on_a_worse_run_and_0_on_an_unchanged_one(
        runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(runs["a"]), str(runs["worse"]), "--exit-code"]) == 1
    out, err = capsys.readouterr()
    assert f"gated metrics: 0 better, {SEQ_BW_TESTS} worse" in out
    assert "WORSE (gated, beyond ±10%):" in out and "×0.80 (higher is better)" in out
    assert f"{SEQ_BW_TESTS} gated metric(s) worse beyond ±10%: exit 1" in err
    assert main(["compare", str(runs["a"]), str(runs["same"]), "--exit-code"]) == 0
    out, err = capsys.readouterr()
    assert "0 better, 0 worse" in out and "WORSE" not in out and err == ""
    # Faster, or slower within the tolerance: no failure.
    assert main(["compare", str(runs["a"]), str(runs["better"]), "--exit-code"]) == 0
    assert f"{SEQ_BW_TESTS} better" in capsys.readouterr().out
    assert main(["compare", str(runs["a"]), str(runs["noise"]), "--exit-code"]) == 0
    # Without --exit-code the status says only whether the comparison could be made.
    assert main(["compare", str(runs["a"]), str(runs["worse"])]) == 0


def test_compare_ignores_report_only_metrics_for_the_exit_code(tmp_path: Path, runs: dict[str, Path],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    slower_iops = write(tmp_path / "iops", changed(0.5, "iops"))   # iops is report-only (gated: false)
    assert main(["compare", str(runs["a"]), str(slower_iops), "--exit-code"]) == 0
    out = capsys.readouterr().out
    assert "0 better, 0 worse" in out and "report-only metrics (never counted by --exit-code): 7 worse" in out


def test_compare_json_and_html_formats(tmp_path: Path, runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(runs["a"]), str(runs["worse"]), "--format", "json", "--exit-code"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["worse"] == SEQ_BW_TESTS and doc["tolerance_pct"] == 10.0 and doc["matched"] == 31
    worst = [c for c in doc["changes"] if c["change"] == "worse"]
    assert {c["metric"] for c in worst} == {"bw"} and all(abs(c["ratio"] - 0.8) < 1e-9 for c in worst)
    # -o alone keeps writing the HTML page (as before this option existed), and says so.
    page = tmp_path / "out" / "cmp.html"
    assert main(["compare", str(runs["a"]), str(runs["worse"]), "-o", str(page)]) == 0
    out = capsys.readouterr().out
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>") and f"compare: {page}" in out
    assert f"created the directory {page.parent}" in out
    # --format json -o FILE writes the JSON there, nothing on stdout.
    js = tmp_path / "cmp.json"
    assert main(["compare", str(runs["a"]), str(runs["same"]), "--format", "json", "-o", str(js)]) == 0
    assert json.loads(js.read_text())["worse"] == 0 and capsys.readouterr().out == ""


def test_compare_bad_input_is_status_2_not_1(tmp_path: Path, runs: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(runs["a"]), str(tmp_path / "nothing"), "--exit-code"]) == 2
    assert "nvme-ai compare: error:" in capsys.readouterr().err


# ---- report -o -------------------------------------------------------------------------------------
def test_report_says_when_it_creates_the_output_directory(tmp_path: Path, runs: dict[str, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mail" / "june" / "report.html"
    assert main(["report", str(runs["a"]), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and f"created the directory {tmp_path / 'mail'} (it did not exist)" in printed
    assert main(["report", str(runs["a"]), "-o", str(out)]) == 0
    assert "created" not in capsys.readouterr().out     # it exists now: nothing to say
    # A failed render creates nothing and claims nothing.
    assert main(["report", str(tmp_path / "none.json"), "-o", str(tmp_path / "new" / "r.html")]) == 2
    assert not (tmp_path / "new").exists() and "created" not in capsys.readouterr().out


# ---- history ---------------------------------------------------------------------------------------
def test_history_list_shows_verdict_and_failed_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "h.sqlite")
    files = []
    for i, exitstatus in enumerate((0, 1)):
        f = tmp_path / f"r{i}.json"
        f.write_text(json.dumps(run_doc(f"run-{i}", i, n_tests=2, exitstatus=exitstatus)))
        files.append(str(f))
    assert main(["history", "import", "--history", db, *files, str(GOLDEN)]) == 0
    capsys.readouterr()
    assert main(["history", "--history", db]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:7] == ["run", "started", "(UTC)", "verdict", "failed", "tests", "runner"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
    # The golden run: 2 regressions, a failed and an errored test of 31.
    assert rows["20261126-154500-a1b2c3"][3:6] == ["failed", "4", "31"]
    assert rows["run-0"][3:6] == ["passed", "0", "2"]
    assert rows["run-1"][3:7] == ["failed", "(exit", "1)", "0"]
    assert main(["history", "--history", db, "--json"]) == 0
    doc = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert doc["20261126-154500-a1b2c3"]["failed"] == 4 and doc["run-0"]["verdict"] == "passed"


def test_history_changes_says_when_series_are_too_short(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "h.sqlite")
    for i in range(4):
        f = tmp_path / f"r{i}.json"
        f.write_text(json.dumps(run_doc(f"run-{i}", i)))
        assert main(["history", "import", "--history", db, str(f)]) == 0
    capsys.readouterr()
    assert main(["history", "changes", "--history", db]) == 0
    out = capsys.readouterr().out
    assert "no change points" not in out
    assert ("none of the 4 series has enough runs to look for change points: a change needs 3 complete runs on "
            "each side (6 in a series), the longest of these has 4") in out
    for i in range(4, 8):   # long enough now: searched, and a flat series has no change point
        f = tmp_path / f"r{i}.json"
        f.write_text(json.dumps(run_doc(f"run-{i}", i)))
        assert main(["history", "import", "--history", db, str(f)]) == 0
    capsys.readouterr()
    assert main(["history", "changes", "--history", db]) == 0
    out = capsys.readouterr().out
    assert "no change points (at least 5% and p < 0.001) in 4 series" in out and "enough runs" not in out


# ---- baseline --------------------------------------------------------------------------------------
FP = {"kind": "nvme", "model": "Micron 7450", "firmware": "E2MU200", "pcie_gen": 4, "pcie_width": 4, "fs_type": "ext4"}


def _save(path: Path, run_id: str, values: dict[str, float], fp: dict[str, Any] = FP) -> None:
    sessions = [baseline.NewSession(k, f"{k}[@t]", {"bs": "1M"}, {"bw": Metric.of("bw", [v, v * 1.01, v * 0.99])})
                for k, v in values.items()]
    baseline.save_sessions(path, name=path.stem, fingerprint=fp, sessions=sessions,
                           run={"id": run_id, "started": f"2026-12-0{run_id[-1]}T10:00:00+00:00"})


@pytest.fixture
def bdir(tmp_path: Path) -> Path:
    d = tmp_path / "baselines"
    for i in range(1, 4):
        _save(d / "ref.json", f"run{i}", {"t.py::test_a": 1e9 * (1 + i / 100), "t.py::test_b": 2e9})
    return d


def test_baseline_show_is_a_table_not_a_dict(bdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baseline", "show", "ref", "--baseline-dir", str(bdir)]) == 0
    out = capsys.readouterr().out
    assert "{" not in out and "'kind'" not in out
    assert "device: nvme Micron 7450, firmware E2MU200, PCIe Gen4 x4, ext4  (slug nvme-micron_7450-e2mu200-gen4x4-ext4)" in out
    assert "t.py::test_a  (3 sessions, profile -)" in out
    header = next(ln for ln in out.splitlines() if ln.strip().startswith("run "))
    assert header.split() == ["run", "started", "(UTC)", "commit", "source", "firmware", "link", "versions"]
    assert any(ln.split()[:3] == ["run2", "2026-12-02", "10:00:00"] for ln in out.splitlines())
    assert "unknown (<5 sessions)" in out and "1.01 GB/s  1.02 GB/s  1.03 GB/s" in out
    assert main(["baseline", "show", "--baseline-dir", str(bdir)]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:3] == ["baseline", "entries", "sessions"]
    assert listing[1].split()[:5] == ["ref", "2", "up", "to", "3"] and "Micron 7450" in listing[1]
    assert main(["baseline", "show", "ref", "--baseline-dir", str(bdir), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["entries"]["t.py::test_a"]["sessions"]) == 3


def test_baseline_drop_a_session_then_an_entry(bdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = bdir / "ref.json"
    os.chmod(path, 0o640)
    before = path.read_bytes()
    assert main(["baseline", "drop", "ref", "--run", "run2", "--baseline-dir", str(bdir), "--dry-run"]) == 0
    assert "(dry run) dropped run run2 from t.py::test_a (2 session(s) left)" in capsys.readouterr().out
    assert path.read_bytes() == before
    assert main(["baseline", "drop", "ref", "--run", "run2", "--entry", "test_a", "--baseline-dir", str(bdir)]) == 0
    out = capsys.readouterr().out
    assert "dropped run run2 from t.py::test_a (2 session(s) left)" in out and "t.py::test_b" not in out
    bf = baseline.load(path)
    assert bf is not None
    assert [s.run_id for s in bf.entries["t.py::test_a"].sessions] == ["run1", "run3"]
    assert [s.run_id for s in bf.entries["t.py::test_b"].sessions] == ["run1", "run2", "run3"]   # untouched
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640   # the rewrite keeps the file's mode
    assert not list(bdir.glob(".ref.json.*.tmp"))         # atomic: no temp file left
    after_first = path.read_bytes()
    assert main(["baseline", "drop", "ref", "--entry", "test_b", "--baseline-dir", str(bdir)]) == 0
    out = capsys.readouterr().out
    assert "deleted entry t.py::test_b (3 session(s))" in out
    bf = baseline.load(path)
    assert bf is not None and set(bf.entries) == {"t.py::test_a"} and bf.fingerprint == FP
    # Nothing lost: the file as it was before this drop is kept beside it (not a *.json baseline), named.
    kept = baseline.previous_path(path)
    assert kept.read_bytes() == after_first and f"kept as {kept}" in out
    assert [f.name for f in bdir.glob("*.json")] == ["ref.json"]


def test_baseline_drop_refuses_with_what_to_do_and_writes_nothing(bdir: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = bdir / "ref.json"
    before = path.read_bytes()
    for argv, message in (
            (["--run", "run9"], "no session of run 'run9' in 2 matching entries"),
            (["--entry", "nothing"], "no entry of"),
            ([], "say what to drop: --run RUN_ID"),
    ):
        assert main(["baseline", "drop", "ref", "--baseline-dir", str(bdir), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err, err
    assert main(["baseline", "drop", "nope", "--run", "run1", "--baseline-dir", str(bdir)]) == 2
    assert "no baseline 'nope'" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_baseline_drop_of_the_only_session_deletes_the_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "b" / "one.json"
    _save(path, "run1", {"t.py::test_a": 1e9})
    assert main(["baseline", "drop", "one", "--run", "run1", "--baseline-dir", str(path.parent)]) == 0
    assert "it was the only session, so the entry is deleted" in capsys.readouterr().out
    bf = baseline.load(path)
    assert bf is not None and bf.entries == {}


def test_baseline_diff_two_files(bdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen3 = {**FP, "pcie_gen": 3}
    _save(bdir / "gen3.json", "run1", {"t.py::test_a": 0.5e9, "t.py::test_c": 1e9}, gen3)
    assert main(["baseline", "diff", "ref", str(bdir / "gen3.json"), "--baseline-dir", str(bdir)]) == 0
    out = capsys.readouterr().out
    assert "device differs: pcie_gen 4 -> 3" in out
    rows = {tuple(ln.split()[:2]): ln.split() for ln in out.splitlines() if ln.startswith("t.py::")}
    assert rows[("t.py::test_a", "bw")][-2:] == ["x0.490", "3/1"]     # window median 1.02 GB/s -> 0.5 GB/s
    assert rows[("t.py::test_b", "-")][2:4] == ["present", "absent"]
    assert rows[("t.py::test_c", "-")][2:4] == ["absent", "present"]
    assert main(["baseline", "diff", "ref", "gen3", "--baseline-dir", str(bdir), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    a_row = next(r for r in doc["rows"] if r["entry"] == "t.py::test_a")
    assert a_row["a"] == pytest.approx(1.02e9) and a_row["b"] == pytest.approx(0.5e9)


# ---- devices ---------------------------------------------------------------------------------------
def test_devices_without_a_path_lists_the_hosts_drives(tmp_path: Path) -> None:
    from test_device import Link, make_nvme, make_virtio

    from pytest_nvme_ai.measure.host_drives import describe, list_drives

    sysfs, data = tmp_path / "sys", tmp_path / "data"
    data.mkdir()
    part = make_nvme(sysfs, data, Link(cur="8.0 GT/s PCIe"), partition=True, register_dev=False)
    (part / "dev").write_text("259:1\n")
    (part.parent / "dev").write_text("259:0\n")
    vda = make_virtio(sysfs, data)
    (vda / "dev").write_text("254:0\n")
    loop = sysfs / "devices/virtual/block/loop0"
    loop.mkdir(parents=True)
    (loop / "dev").write_text("7:0\n")
    (sysfs / "block").mkdir()
    for disk in (part.parent, vda, loop):
        (sysfs / "block" / disk.name).symlink_to(os.path.relpath(disk, sysfs / "block"))
    mi = tmp_path / "mountinfo"
    mi.write_text("29 1 259:1 / /mnt/nvme0 rw - ext4 /dev/nvme0n1p1 rw\n"
                  "30 1 254:0 / / rw - ext4 /dev/vda rw\n")
    drives = list_drives(sysfs, mi)
    assert [d.identity.name for d in drives] == ["nvme0n1", "vda"]      # the loop device is no drive
    nvme = drives[0].identity
    assert nvme.kind == "nvme" and nvme.firmware == "E2MU200" and nvme.pcie is not None and nvme.pcie.downtrained
    assert [m.mount_point for m in drives[0].mounts] == ["/mnt/nvme0"]
    text = "\n".join(describe(drives))
    assert "nvme0n1: NVMe Micron_7450_MTFDKCB960TFR fw E2MU200, PCIe Gen3 x4 (max Gen4 x4) DOWNTRAINED, ext4" in text
    assert "mounted at /mnt/nvme0 (ext4, nvme0n1p1)" in text and "vda: virtio disk vda (not NVMe), ext4" in text


def test_devices_without_a_path_on_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "drive(s) in /sys/block (loop, RAM, zram, device-mapper and md devices are left out)" in out
    assert main(["devices", "--json"]) == 0
    names = [d["name"] for d in json.loads(capsys.readouterr().out)]
    expected = [n for n in sorted(os.listdir("/sys/block"))
                if "/devices/virtual/" not in os.path.realpath(f"/sys/block/{n}")]
    assert names == expected
