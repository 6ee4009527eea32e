"""A/B end to end on real fio (pytester): a capped arm B reads as worse, an A/A run never as worse/better;
settings errors name their source; overrides that do not apply to fio are said, not silently dropped."""
from __future__ import annotations

import json
import shutil

import pytest

from pytest_nvme_ai.measure.io_cgroup import cgroup_missing_reason

pytestmark = pytest.mark.skipif(shutil.which("fio") is None, reason="fio not found: apt-get install fio")

TEST_FILE = """
from pytest_nvme_ai.measure.fio.runner import FioJob

def test_read(fio, nvme_ai):
    res = fio.run(FioJob(name="rd", bs="1M", iodepth=4, size="64M", runtime=1, time_based=True))
    assert res.io_bytes > 0
"""


def run(p: pytest.Pytester, *args: str) -> pytest.RunResult:
    return p.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *args)


def latest_test(p: pytest.Pytester) -> dict:
    return json.loads((p.path / "reports" / "latest" / "results.json").read_text())["tests"][0]


def need_cgroup() -> None:
    reason = cgroup_missing_reason()
    if reason:
        pytest.skip(f"the read cap needs a cgroup block throttle: {reason}")


def test_capped_arm_b_is_worse_and_fails_the_test(pytester: pytest.Pytester) -> None:
    need_cgroup()
    pytester.makepyfile(test_ab=TEST_FILE)
    r = run(pytester, "--nvme-ai-ab", "same", "--nvme-ai-read-cap", "0.5", "--nvme-ai-ab-budget", "40",
            "--junitxml=junit.xml")
    t = latest_test(pytester)
    ab = t["ab"]
    bw = ab["metrics"]["bw"]
    # Never same or better: B reads at half the bandwidth measured just before each of its runs.
    assert ab["verdict"] in ("worse", "unknown") and bw["ratio"] < 0.8, bw
    if ab["verdict"] == "unknown":
        # Only when the shared VM's pair noise is far beyond a drive's (neighbours' I/O; 25-65% seen with
        # 5 helpers' tests on 2 cores): then the interval cannot clear the band in 40 s, and saying so is right.
        assert bw["noise_pct"] > 25 and bw["interval"][0] < 0.9, bw
        r.assert_outcomes(passed=1)
        r.stdout.fnmatch_lines(["*A/B check(s) unknown*"])
        pytest.skip(f"pair noise {bw['noise_pct']:.0f}% on this busy machine: unknown after {bw['pairs']} pairs "
                    f"(B/A {bw['ratio']:.2f}); the worse path was not reached")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*A/B bw [[]rd[]] WORSE: B/A 0.*interval [[]*tolerance ±10%, * pairs*",
                            "*A/B (A = B (same: an A/A run); arm B as configured, reads capped at 0.5)*",
                            "*test_read*bw*worse*"])
    assert t["verdict"] == "regression"
    assert ab["series"] == "A:same|B:read_cap=0.5" and ab["arms"]["B"]["read_cap"] == 0.5
    assert ab["arms"]["A"]["read_cap"] is None and ab["arms"]["A"]["fio_version"]
    assert bw["interval"][1] < 0.9 and bw["pairs"] == ab["pairs_used"] >= 5
    assert len(ab["pairs"]) == ab["pairs_used"] and ab["wall_s"] > 0
    assert {p["order"] for p in ab["pairs"]} <= {"AB", "BA"}
    cap = t["extra"]["read_cap"]
    assert len(cap["references"]) == ab["pairs_used"]      # re-measured before each of arm B's runs
    assert all(h["cap_bps"] == pytest.approx(0.5 * h["reference_bw"], rel=0.01) for h in cap["references"])
    assert t["metrics"]["bw"]["samples"] == [p["values"]["B"]["bw"] for p in ab["pairs"]]   # arm B's
    xml = (pytester.path / "junit.xml").read_text()
    assert 'name="nvme_ai.ab.bw.verdict" value="worse"' in xml and 'name="nvme_ai.ab.bw.ratio"' in xml
    page = (pytester.path / "reports" / "latest" / "index.html").read_text()
    assert "A/B: two arms in one session" in page and 'aria-label="A/B forest plot"' in page


def test_a_a_run_is_never_worse_or_better(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ab=TEST_FILE)
    r = run(pytester, "--nvme-ai-ab", "same", "--nvme-ai-ab-budget", "25", "--nvme-ai-ab-order", "abba")
    r.assert_outcomes(passed=1)
    ab = latest_test(pytester)["ab"]
    assert ab["verdict"] in ("same", "unknown"), ab["metrics"]
    assert [p["order"] for p in ab["pairs"]][:2] == ["AB", "BA"]
    if ab["verdict"] == "unknown":
        r.stdout.fnmatch_lines(["*A/B check(s) unknown*"])
    # strict turns an unknown into a failure, never a same
    if ab["verdict"] == "unknown":
        run(pytester, "--nvme-ai-ab", "same", "--nvme-ai-ab-budget", "6", "--nvme-ai-strict").assert_outcomes(failed=1)


def test_overrides_that_do_not_apply_to_fio_are_said(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ab=TEST_FILE)
    pytester._monkeypatch.setenv("NVME_AI_AB", "env:NVME_AI_PROBE=1 'aio={\"block_size\": 1048576}'")
    r = run(pytester, "--nvme-ai-ab-budget", "4")
    r.assert_outcomes(passed=1)
    t = latest_test(pytester)
    assert t["ab"]["arm_a"]["env"] == {"NVME_AI_PROBE": "1"} and t["ab"]["arm_a"]["aio"] == {"block_size": 1048576}
    assert any("aio= does not apply to fio" in n for n in t["notes"])
    assert t["ab"]["arms"]["A"]["not_applied"] and t["ab"]["verdict"] == "unknown"   # 4 s: fewer than 5 pairs


@pytest.mark.parametrize("args,env,message", [
    (["--nvme-ai-ab", "targte=/x"], None, "*command line --nvme-ai-ab*unknown key 'targte' (did you mean 'target'?)*"),
    ([], "same 'fio=", "*environment variable NVME_AI_AB*cannot split*"),
    (["--nvme-ai-ab", "same", "--nvme-ai-ab", "fio=/usr/bin/fio"], None, "*'same' (an A/A run) cannot be combined*"),
    (["--nvme-ai-ab", "fio=/nonexistent/fio"], None, "*--nvme-ai-ab fio=/nonexistent/fio: not an executable file*"),
    (["--nvme-ai-ab", "target=/nonexistent/dir"], None, "*--nvme-ai-ab target=/nonexistent/dir*does not exist*"),
    (["--nvme-ai-read-cap", "70"], None, "*read_cap from command line --nvme-ai-read-cap*at most 1*"),
    (["--nvme-ai-ab", "same", "--nvme-ai-save-baseline"], None, "*--nvme-ai-save-baseline with --nvme-ai-ab*"),
])
def test_bad_settings_stop_the_run_naming_their_source(pytester: pytest.Pytester, args: list[str], env: str | None,
                                                        message: str) -> None:
    pytester.makepyfile(test_ab=TEST_FILE)
    if env is not None:
        pytester._monkeypatch.setenv("NVME_AI_AB", env)
    r = run(pytester, *args)
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines([message])


def test_arm_a_on_another_directory_gets_its_own_data_file(pytester: pytest.Pytester) -> None:
    golden = pytester.mkdir("golden")
    pytester.makepyfile(test_ab=TEST_FILE)
    r = run(pytester, "--nvme-ai-ab", f"target={golden}", "--nvme-ai-ab-budget", "4")
    r.assert_outcomes(passed=1)
    ab = latest_test(pytester)["ab"]
    assert ab["arms"]["A"]["target"] == str(golden) and ab["arms"]["A"]["data_file"].startswith(str(golden))
    assert ab["arms"]["B"]["data_file"] != ab["arms"]["A"]["data_file"]
    assert list(golden.iterdir()) == []   # arm A's private directory is removed at the end
