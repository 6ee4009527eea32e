"""The session window end to end on real fio (pytester): sessions saved one by one, an unchanged rerun
passes, a rate= cap at half the bandwidth fails exactly the measuring test; a real v1 file migrates."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("fio") is None, reason="fio not found: apt-get install fio")

TEST_FILE = """
import os
from pytest_nvme_ai.measure.fio.runner import FioJob

def test_capped_read(fio, nvme_ai):
    res = fio.run(FioJob(name="capped", bs="1M", iodepth=4, size="16M", runtime=1, time_based=True,
                         rate=os.environ["CAP_RATE"]))
    nvme_ai.set_params(rate="emulated drive")   # the cap stands in for a slower drive, not for another job
    assert res.io_bytes > 0
"""


def run(p: pytest.Pytester, cap: str, *args: str) -> pytest.RunResult:
    p._monkeypatch.setenv("CAP_RATE", cap)
    return p.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *args)


def latest(p: pytest.Pytester) -> dict:
    return json.loads((p.path / "reports" / "latest" / "results.json").read_text())


def test_window_of_sessions_gates_a_real_slowdown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_capped=TEST_FILE)
    # The cap sits far below what this disk sustains, so the measured bandwidth is the cap, steadily.
    for _ in range(3):
        run(pytester, "16M", "--nvme-ai-save-baseline").assert_outcomes(passed=1)
    (bfile,) = (pytester.path / "baselines").glob("*.json")
    sessions = json.loads(bfile.read_text())["entries"]["test_capped.py::test_capped_read"]["sessions"]
    assert len(sessions) == 3 and len({s["run_id"] for s in sessions}) == 3

    three = run(pytester, "16M")
    three.assert_outcomes(passed=1)
    assert any("fewer than 5 sessions" in w for w in latest(pytester)["run"]["gate_warnings"])
    three.stdout.fnmatch_lines(["*nvme-ai WARNING @default: 1 gated check(s) have fewer than 5 sessions in their window: "
                                "the drift between sessions is unknown*",
                                "*test_capped_read*bw*? (3/5 sess.)*unknown*"])   # issue 23: was pass

    for _ in range(2):
        run(pytester, "16M", "--nvme-ai-save-baseline").assert_outcomes(passed=1)
    unchanged = run(pytester, "16M", "--junitxml=junit.xml")
    bw = latest(pytester)["tests"][0]["baseline"]["metrics"]["bw"]
    assert bw["method"] == "session-window" and bw["window_sessions"] == 5
    assert bw["tolerance"] == 10.0 and bw["min_detectable_change"] >= 10.0
    if bw["verdict"] not in ("pass", "unknown"):   # unknown (issue 23): a window whose drift hides a 10% change
        # The shared VM stalled this whole session: then it really read slower than the cap allows, and
        # saying so is the gate's job (a quiet CI machine does not get here).
        assert bw["verdict"] == "regression" and bw["now"] < 0.9 * 16 * 2**20, bw["message"]
    else:
        unchanged.assert_outcomes(passed=1)
    assert 'name="nvme_ai.bw.min_detectable_change_pct"' in (pytester.path / "junit.xml").read_text()
    run_info = latest(pytester)["run"]
    assert run_info["baseline_window"] == 10 and isinstance(run_info["gate_warnings"], list)
    page = (pytester.path / "reports" / "latest" / "index.html").read_text()
    assert "Baseline window" in page and f"detects ≥{bw['min_detectable_change']:.0f}%" in page

    # A quarter of the bandwidth (both caps sit far below what the disk sustains). The shared VM sometimes
    # stalls a whole session; such a session in the window widens it, and then the gate must have said
    # beforehand that it cannot see this change.
    capped = run(pytester, "4M")
    if bw["min_detectable_change"] < 75:
        capped.assert_outcomes(failed=1)
        capped.stdout.fnmatch_lines(["*bw REGRESSION: window 5 sessions (*), drift between sessions ±*, "
                                     "window centre 1*MB/s, now 4*MB/s, delta -7*%*tolerance ±10%; "
                                     "session-window rule: outside*"])
        assert latest(pytester)["tests"][0]["verdict"] == "regression"
    else:
        capped.stdout.fnmatch_lines(["*WARNING*the gate cannot see a change of the tolerance's size*"])


def test_real_v1_baseline_gates_then_migrates_on_save(pytester: pytest.Pytester) -> None:
    golden = Path(__file__).parent / "golden" / "baseline_v1"
    # the test file and baseline file the v1 code (commit 29dd5c4) wrote on the build VM
    pytester.makepyfile(test_v1demo=(golden / "test_v1demo.py.txt").read_text().replace(
        "from pytest_nvme_ai.fio import", "from pytest_nvme_ai.measure.fio.runner import"))
    (pytester.path / "baselines").mkdir()
    shutil.copy(golden / "virtio-vda-ext4.json", pytester.path / "baselines" / "virtio-vda-ext4.json")
    r = run(pytester, "16M", "--nvme-ai-baseline-name", "virtio-vda-ext4")
    r.assert_outcomes(passed=2)
    res = latest(pytester)
    bw = next(t for t in res["tests"] if "test_seq" in t["nodeid"])["baseline"]["metrics"]["bw"]
    assert bw["verdict"] != "new" and bw["window_sessions"] == 1 and "1 of 5 sessions" in bw["message"]
    run(pytester, "16M", "--nvme-ai-baseline-name", "virtio-vda-ext4", "--nvme-ai-save-baseline").assert_outcomes(
        passed=2)
    d = json.loads((pytester.path / "baselines" / "virtio-vda-ext4.json").read_text())
    assert d["schema_version"] == 2
    assert [s["source"] for s in d["entries"]["test_v1demo.py::test_seq"]["sessions"]] == ["v1", "save"]
