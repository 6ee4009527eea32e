"""The gate end to end through pytest (pytester): each verdict, the message, and configure errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

# Deterministic metrics so each verdict is reproducible; real measurements are tested in the suites.
TEST_FILE = """
import json, os, pytest

VALUES = json.loads(os.environ.get("DEMO_VALUES", '{"bw": [100, 101, 99], "total_latency": [1.0, 1.01, 0.99]}'))

def test_measured(nvme_ai, offload_target):
    for name, samples in VALUES.items():
        nvme_ai.record_samples(name, samples)
    assert offload_target.workdir.is_dir()

def test_other(nvme_ai, offload_target):
    nvme_ai.record_samples("bw", [10, 10, 10])
"""


@pytest.fixture
def demo(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_demo=TEST_FILE)
    return pytester


def run(p: pytest.Pytester, *args: str, values: dict | None = None) -> pytest.RunResult:
    if values is not None:
        p._monkeypatch.setenv("DEMO_VALUES", json.dumps(values))  # pytester owns a monkeypatch for this run
    return p.runpytest_subprocess("-p", "no:cacheprovider", *args)


def baseline_file(p: pytest.Pytester) -> Path:
    files = [f for f in (p.path / "baselines").glob("*.json")]
    assert len(files) == 1, files
    return files[0]


def edit_metric(path: Path, key_part: str, name: str, samples: list[float]) -> None:
    """Rewrite the samples of the latest session of matching entries (format 2)."""
    d = json.loads(path.read_text())
    for key, e in d["entries"].items():
        if key_part in key:
            m = e["sessions"][-1]["metrics"][name]
            m["samples"] = samples
            m["value"] = sorted(samples)[len(samples) // 2]
    path.write_text(json.dumps(d))


def test_save_then_unchanged_rerun_passes(demo: pytest.Pytester) -> None:
    r = run(demo, "--nvme-ai-save-baseline")
    r.assert_outcomes(passed=2)
    r.stdout.fnmatch_lines(["*baseline saved: *baselines*.json"])
    data = json.loads(baseline_file(demo).read_text())
    assert data["schema_version"] == 2 and len(data["entries"]) == 2
    assert "test_demo.py::test_measured" in data["entries"]  # key has no target component
    r2 = run(demo)
    r2.assert_outcomes(passed=2)
    # issue 23: a one-session window cannot know the drift, so an unchanged rerun reads unknown (passes, yellow)
    r2.stdout.fnmatch_lines(["*test_measured*bw*unknown*"])


def test_baseline_twice_as_good_fails_exactly_that_test(demo: pytest.Pytester) -> None:
    run(demo, "--nvme-ai-save-baseline").assert_outcomes(passed=2)
    bf = baseline_file(demo)
    edit_metric(bf, "test_measured", "bw", [200, 202, 198])
    r = run(demo)
    r.assert_outcomes(passed=1, failed=1)
    assert r.ret == 1
    r.stdout.fnmatch_lines([
        "*bw REGRESSION: baseline 200 B/s, now 100 B/s, delta -50.0%*tolerance ±10%*Mann-Whitney U*p=0.05*",
        f"*baseline file: {bf}*",
        "*test_measured*bw*200 B/s*100 B/s*-50.0%*regression*",
        "*FAILED test_demo.py::test_measured*",
    ])
    res = json.loads((demo.path / "reports" / "latest" / "results.json").read_text())
    verdicts = {t["nodeid"].split("::")[1]: t["verdict"] for t in res["tests"]}
    assert verdicts == {"test_measured[@default]": "regression", "test_other[@default]": "unknown"}


def test_worse_baseline_is_an_improvement_notice(demo: pytest.Pytester) -> None:
    run(demo, "--nvme-ai-save-baseline").assert_outcomes(passed=2)
    edit_metric(baseline_file(demo), "test_measured", "bw", [50, 51, 49])
    r = run(demo)
    r.assert_outcomes(passed=2)
    r.stdout.fnmatch_lines(["*bw improvement*refresh the baseline*", "*improved beyond tolerance*"])


def test_latency_is_lower_is_better(demo: pytest.Pytester) -> None:
    run(demo, "--nvme-ai-save-baseline").assert_outcomes(passed=2)
    r = run(demo, values={"bw": [100, 101, 99], "total_latency": [2.0, 2.02, 1.98]})
    r.assert_outcomes(passed=1, failed=1)
    r.stdout.fnmatch_lines(["*total_latency REGRESSION*+100.0%*lower is better*"])


def test_marker_tolerance_overrides_cli(demo: pytest.Pytester) -> None:
    demo.makepyfile(test_marked="""
import pytest
@pytest.mark.nvme_ai(tolerance=60)
def test_m(nvme_ai, offload_target):
    import os
    nvme_ai.record_samples("bw", [float(os.environ.get("BW", "100"))] * 3)
""")
    run(demo, "test_marked.py", "--nvme-ai-save-baseline").assert_outcomes(passed=1)
    demo._monkeypatch.setenv("BW", "50")
    run(demo, "test_marked.py", "--nvme-ai-tolerance", "5").assert_outcomes(passed=1)  # 50% drop < 60%


def test_single_repetition_says_tolerance_alone(demo: pytest.Pytester) -> None:
    run(demo, "--nvme-ai-save-baseline", values={"bw": [100]}).assert_outcomes(passed=2)
    r = run(demo, values={"bw": [40]})   # beyond the short window's 48% limit (a 20% drop now reads unknown)
    r.assert_outcomes(passed=1, failed=1)
    r.stdout.fnmatch_lines(["*single sample*tolerance alone decides*"])


def test_different_fingerprint_is_incomparable_or_strict_error(demo: pytest.Pytester) -> None:
    run(demo, "--nvme-ai-save-baseline", "--nvme-ai-baseline-name", "refdrive").assert_outcomes(passed=2)
    bf = demo.path / "baselines" / "refdrive.json"
    d = json.loads(bf.read_text())
    d["fingerprint"] = {**d["fingerprint"], "model": "Other Drive 9000", "firmware": "X1"}
    bf.write_text(json.dumps(d))
    edit_metric(bf, "test_measured", "bw", [500, 500, 500])  # would be a regression if compared
    r = run(demo, "--nvme-ai-baseline-name", "refdrive")
    r.assert_outcomes(passed=2)
    r.stdout.fnmatch_lines(["*incomparable*"])
    res = json.loads((demo.path / "reports" / "latest" / "results.json").read_text())
    assert {t["verdict"] for t in res["tests"]} == {"incomparable"}
    r2 = run(demo, "--nvme-ai-baseline-name", "refdrive", "--nvme-ai-strict")
    r2.assert_outcomes(failed=2)
    r2.stdout.fnmatch_lines(["*different device*Other Drive 9000*--nvme-ai-strict*"])


def test_corrupt_baseline_stops_at_configure_and_is_not_overwritten(demo: pytest.Pytester) -> None:
    run(demo, "--nvme-ai-save-baseline").assert_outcomes(passed=2)
    bf = baseline_file(demo)
    bf.write_text('{"schema_version": 1, "entries": {')
    r = run(demo, "--nvme-ai-save-baseline")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines([f"*baseline file {bf} is corrupt (invalid JSON*Nothing was overwritten*"])
    assert bf.read_text() == '{"schema_version": 1, "entries": {'


def test_newer_schema_baseline_is_refused(demo: pytest.Pytester) -> None:
    run(demo, "--nvme-ai-save-baseline").assert_outcomes(passed=2)
    bf = baseline_file(demo)
    d = json.loads(bf.read_text())
    d["schema_version"] = 99
    bf.write_text(json.dumps(d))
    before = bf.read_text()
    r = run(demo, "--nvme-ai-save-baseline")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*schema_version 99, newer than this pytest-nvme-ai reads (2)*Upgrade pytest-nvme-ai*"])
    assert bf.read_text() == before


def test_resave_updates_only_tests_that_ran(demo: pytest.Pytester) -> None:
    run(demo, "--nvme-ai-save-baseline").assert_outcomes(passed=2)
    bf = baseline_file(demo)
    edit_metric(bf, "test_other", "bw", [7, 7, 7])
    run(demo, "--nvme-ai-save-baseline", "-k", "test_measured", values={"bw": [300, 300, 300]}).assert_outcomes(
        passed=1, deselected=1)
    d = json.loads(bf.read_text())
    assert d["entries"]["test_demo.py::test_other"]["sessions"][-1]["metrics"]["bw"]["samples"] == [7, 7, 7]
    measured = d["entries"]["test_demo.py::test_measured"]["sessions"]
    assert len(measured) == 2 and measured[-1]["metrics"]["bw"]["samples"] == [300, 300, 300]


def test_junit_properties_carry_verdict_and_metrics(demo: pytest.Pytester) -> None:
    run(demo, "--nvme-ai-save-baseline").assert_outcomes(passed=2)
    run(demo, "--junitxml=junit.xml").assert_outcomes(passed=2)
    xml = (demo.path / "junit.xml").read_text()
    assert 'name="nvme_ai.verdict" value="unknown"' in xml   # one-session window: the drift is unknown
    assert 'name="nvme_ai.bw"' in xml
    assert 'name="nvme_ai.bw.baseline"' in xml and 'name="nvme_ai.bw.delta_pct"' in xml
    assert 'name="nvme_ai.bw.tolerance_pct"' in xml


def test_promote_and_show(demo: pytest.Pytester) -> None:
    from pytest_nvme_ai.cli import main

    run(demo).assert_outcomes(passed=2)
    results = demo.path / "reports" / "latest" / "results.json"
    bdir = demo.path / "promoted"
    assert main(["baseline", "promote", str(results), "--baseline-dir", str(bdir), "--name", "vendor-ref"]) == 0
    bf = bdir / "vendor-ref.json"
    d = json.loads(bf.read_text())
    assert set(d["entries"]) == {"test_demo.py::test_measured", "test_demo.py::test_other"}
    assert main(["baseline", "show", "vendor-ref", "--baseline-dir", str(bdir)]) == 0
    assert main(["baseline", "show", "nope", "--baseline-dir", str(bdir)]) == 2
    # the promoted baseline gates the next run
    r = run(demo, "--nvme-ai-baseline-dir", str(bdir), "--nvme-ai-baseline-name", "vendor-ref")
    r.assert_outcomes(passed=2)
    r.stdout.fnmatch_lines(["*test_measured*bw*unknown*"])


def test_benchmark_json_loads_in_pytest_benchmark(demo: pytest.Pytester) -> None:
    run(demo, "--nvme-ai-benchmark-json", "bench.json").assert_outcomes(passed=2)
    data = json.loads((demo.path / "bench.json").read_text())
    names = {b["fullname"] for b in data["benchmarks"]}
    assert names == {"test_demo.py::test_measured::total_latency"}  # only time-valued metrics
    stats = data["benchmarks"][0]["stats"]
    assert stats["rounds"] == 3 and stats["median"] == pytest.approx(1.0)
    # pytest-benchmark's own compare tool reads it
    import sys

    r = demo.run(sys.executable, "-m", "pytest_benchmark", "compare", str(demo.path / "bench.json"))
    assert r.ret == 0, r.stderr.str()
    r.stdout.fnmatch_lines(["*test_measured::total_latency*"])


def test_baseline_of_another_profile_is_incomparable(demo: pytest.Pytester) -> None:
    run(demo, "--nvme-ai-save-baseline").assert_outcomes(passed=2)
    edit_metric(baseline_file(demo), "test_measured", "bw", [500, 500, 500])
    r = run(demo, "--nvme-ai-profile", "standard", "-k", "test_measured")
    r.assert_outcomes(passed=1, deselected=1)
    r.stdout.fnmatch_lines(["*test_measured*incomparable*"])


def test_same_model_other_firmware_is_incomparable_not_new(demo: pytest.Pytester) -> None:
    run(demo, "--nvme-ai-save-baseline").assert_outcomes(passed=2)
    bf = baseline_file(demo)
    d = json.loads(bf.read_text())
    d["fingerprint"]["firmware"] = "OLDFW1"   # as if recorded before a firmware update
    bf.rename(bf.with_name("before-update.json"))
    (demo.path / "baselines" / "before-update.json").write_text(json.dumps(d))
    r = run(demo)
    r.assert_outcomes(passed=2)
    r.stdout.fnmatch_lines(["*none for this exact device; comparing with*before-update.json*same model*"])
    res = json.loads((demo.path / "reports" / "latest" / "results.json").read_text())
    assert {t["verdict"] for t in res["tests"]} == {"incomparable"}
    run(demo, "--nvme-ai-strict").assert_outcomes(failed=2)


def test_unsavable_baseline_is_reported_not_a_crash(demo: pytest.Pytester) -> None:
    run(demo, "--nvme-ai-save-baseline", "--nvme-ai-baseline-name", "ref").assert_outcomes(passed=2)
    bf = demo.path / "baselines" / "ref.json"
    d = json.loads(bf.read_text())
    d["fingerprint"]["model"] = "Another Drive"
    bf.write_text(json.dumps(d))
    before = bf.read_text()
    r = run(demo, "--nvme-ai-save-baseline", "--nvme-ai-baseline-name", "ref")
    r.assert_outcomes(passed=2)
    assert r.ret == 1
    r.stdout.fnmatch_lines(["*baseline NOT saved: baseline*ref.json was recorded on device*Nothing was written*"])
    assert "Traceback" not in r.stdout.str() + r.stderr.str()
    assert bf.read_text() == before


def test_marker_metrics_accepts_one_name_as_a_string(demo: pytest.Pytester) -> None:
    demo.makepyfile(test_one="""
import os, pytest
@pytest.mark.nvme_ai(metrics="clat_p99")
def test_tail(nvme_ai, offload_target):
    nvme_ai.record_samples("clat_p99", [float(os.environ.get("P99", "100"))] * 3)
""")
    run(demo, "test_one.py", "--nvme-ai-save-baseline").assert_outcomes(passed=1)
    demo._monkeypatch.setenv("P99", "300")
    r = run(demo, "test_one.py")
    r.assert_outcomes(failed=1)  # clat_p99 is not gated by default; the marker opted it in
    r.stdout.fnmatch_lines(["*clat_p99 REGRESSION*"])


def test_baseline_with_other_settings_is_incomparable(demo: pytest.Pytester) -> None:
    demo.makepyfile(test_cfg="""
import os
def test_cfg(nvme_ai, offload_target):
    nvme_ai.set_params(aio=os.environ.get("AIO", "deepspeed-default"))
    nvme_ai.record_samples("bw", [float(os.environ.get("BW", "100"))] * 3)
""")
    run(demo, "test_cfg.py", "--nvme-ai-save-baseline").assert_outcomes(passed=1)
    demo._monkeypatch.setenv("AIO", "bs16M-qd64")
    demo._monkeypatch.setenv("BW", "50")
    r = run(demo, "test_cfg.py")
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["*test_cfg*incomparable*"])
    res = json.loads((demo.path / "reports" / "latest" / "results.json").read_text())
    assert "aio 'deepspeed-default' -> 'bs16M-qd64'" in res["tests"][0]["baseline"]["metrics"]["bw"]["message"]


def sessions_of(p: pytest.Pytester, key_part: str) -> int:
    d = json.loads(baseline_file(p).read_text())
    (n,) = [len(e["sessions"]) for k, e in d["entries"].items() if key_part in k]
    return n


def test_save_keeps_a_short_window_regression_but_not_a_full_window_one(demo: pytest.Pytester) -> None:
    """Building the window on a drifting runner: the within-session rule fails a session 55% slower than the
    only saved one (beyond the short window's 48% limit; 30% slower now reads unknown and passes), and
    --nvme-ai-save-baseline still adds it (it is the drift the window must learn). Once
    the window knows its drift, a regression is not saved."""
    run(demo, "--nvme-ai-save-baseline", values={"bw": [100, 101, 99]}).assert_outcomes(passed=2)
    slow = run(demo, "--nvme-ai-save-baseline", values={"bw": [45, 46, 44]})
    slow.assert_outcomes(passed=1, failed=1)
    slow.stdout.fnmatch_lines(["*baseline saved with 1 session(s) that failed only by the within-session rule*"
                               "test_demo.py::test_measured*"])
    assert sessions_of(demo, "test_measured") == 2
    for bw in ([100, 101, 99], [70, 71, 69], [90, 91, 89], [80, 81, 79]):
        run(demo, "--nvme-ai-save-baseline", values={"bw": bw})
    assert sessions_of(demo, "test_measured") == 6
    # six sessions: the session-window rule judges now; far below the window it is a regression, not saved
    low = run(demo, "--nvme-ai-save-baseline", values={"bw": [5, 5.1, 4.9]})
    low.assert_outcomes(passed=1, failed=1)
    low.stdout.fnmatch_lines(["*session-window rule*"])
    assert "failed only by the within-session rule" not in low.stdout.str()
    assert sessions_of(demo, "test_measured") == 6


def test_gate_warnings_reach_results_and_the_terminal_under_q(demo: pytest.Pytester) -> None:
    """CI often runs -q, where pytest prints no header: the gate's warnings (drift hides a change of the
    tolerance's size) still go to results.json and to the terminal before the first test."""
    for bw in ([100, 101, 99], [60, 61, 59], [140, 141, 139], [70, 71, 69], [130, 131, 129]):
        run(demo, "--nvme-ai-save-baseline", values={"bw": bw})
    assert sessions_of(demo, "test_measured") == 5
    quiet = run(demo, "-q", values={"bw": [100, 101, 99]})
    quiet.stdout.fnmatch_lines(["nvme-ai WARNING @default: the gate cannot see a change of the tolerance's size*"
                                "test_demo.py::test_measured bw*"])
    latest = json.loads((demo.path / "reports" / "latest" / "results.json").read_text())
    assert any("test_demo.py::test_measured bw" in w for w in latest["run"]["gate_warnings"])
