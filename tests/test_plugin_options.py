"""Options, precedence, target validation and the write fence (pytester)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

CONTRACT_OPTIONS = ["--nvme-ai-target", "--nvme-ai-profile", "--nvme-ai-report-dir", "--nvme-ai-baseline-dir",
                    "--nvme-ai-baseline-name", "--nvme-ai-save-baseline", "--nvme-ai-tolerance", "--nvme-ai-repeat"]

PROFILE_PROBE = """
def test_probe(nvme_ai, offload_target):
    import json, pathlib
    pathlib.Path("probe.json").write_text(json.dumps({"profile": nvme_ai.profile.name, "repeat": nvme_ai.repeat,
                                                       "tolerance": nvme_ai.tolerance}))
    (offload_target.workdir / "scratch.bin").write_bytes(b"x" * 4096)
    nvme_ai.record_samples("bw", [1.0, 1.0, 1.0])
"""


def probe(p: pytest.Pytester, *args: str) -> dict:
    r = p.runpytest_subprocess("-p", "no:cacheprovider", *args)
    r.assert_outcomes(passed=1)
    return json.loads((p.path / "probe.json").read_text())


def test_help_lists_the_option_group_and_ini_keys(pytester: pytest.Pytester) -> None:
    r = pytester.runpytest_subprocess("--help")
    r.stdout.fnmatch_lines(["*NVMe offload qualification (pytest-nvme-ai)*"])
    out = r.stdout.str()
    for opt in CONTRACT_OPTIONS:
        assert opt in out, opt
        assert opt.removeprefix("--").replace("-", "_") in out  # ini key nvme_ai_*


def test_precedence_cli_over_env_over_ini(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_probe=PROFILE_PROBE)
    pytester.makeini("[pytest]\nnvme_ai_repeat = 2\nnvme_ai_tolerance = 7\n")
    assert probe(pytester) == {"profile": "quick", "repeat": 2, "tolerance": 7.0}
    monkeypatch.setenv("NVME_AI_REPEAT", "4")
    assert probe(pytester)["repeat"] == 4
    assert probe(pytester, "--nvme-ai-repeat", "5")["repeat"] == 5


def test_marker_overrides_cli(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_probe="import pytest\npytestmark = pytest.mark.nvme_ai(repeat=9, tolerance=33)\n"
                        + PROFILE_PROBE)
    assert probe(pytester, "--nvme-ai-repeat", "5", "--nvme-ai-tolerance", "1") == {
        "profile": "quick", "repeat": 9, "tolerance": 33.0}


def test_bad_values_name_their_source(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_probe=PROFILE_PROBE)
    r = pytester.runpytest_subprocess("--nvme-ai-profile", "huge")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*bad value 'huge' for profile from command line --nvme-ai-profile*quick, standard, full*"])
    monkeypatch.setenv("NVME_AI_TOLERANCE", "-3")
    r = pytester.runpytest_subprocess()
    r.stderr.fnmatch_lines(["*bad value '-3' for tolerance from environment variable NVME_AI_TOLERANCE*"])
    monkeypatch.delenv("NVME_AI_TOLERANCE")
    pytester.makeini("[pytest]\nnvme_ai_repeat = zero\n")
    r = pytester.runpytest_subprocess()
    r.stderr.fnmatch_lines(["*bad value 'zero' for repeat from ini key nvme_ai_repeat*"])


def test_raw_block_device_is_refused(pytester: pytest.Pytester) -> None:
    dev = next((d for d in ("/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/loop0") if Path(d).exists()), None)
    if dev is None:
        pytest.skip("no block device node on this machine to try")
    pytester.makepyfile(test_probe=PROFILE_PROBE)
    r = pytester.runpytest_subprocess("--nvme-ai-target", dev)
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines([f"*{dev} is a block device. pytest-nvme-ai never writes to raw devices*mount*"])


def test_missing_or_file_target_says_what_to_do(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_probe=PROFILE_PROBE)
    r = pytester.runpytest_subprocess("--nvme-ai-target", str(pytester.path / "nope"))
    r.stderr.fnmatch_lines(["*does not exist: create the directory on the drive under test first*"])
    f = pytester.makefile(".txt", afile="x")
    r = pytester.runpytest_subprocess("--nvme-ai-target", str(f))
    r.stderr.fnmatch_lines(["*is not a directory*"])


def test_writes_stay_in_target_and_are_cleaned_up(pytester: pytest.Pytester) -> None:
    target = pytester.mkdir("drive")
    (target / "user-data.txt").write_text("keep me")
    pytester.makepyfile(test_probe=PROFILE_PROBE)
    probe(pytester, "--nvme-ai-target", str(target), "--nvme-ai-report-dir", "out")
    # only the user's file remains: the private workdir (and scratch.bin in it) was removed
    assert sorted(p.name for p in target.iterdir()) == ["user-data.txt"]
    assert (target / "user-data.txt").read_text() == "keep me"
    latest = pytester.path / "out" / "latest"
    assert latest.is_symlink() and (latest / "results.json").is_file()


def test_results_json_schema(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_probe=PROFILE_PROBE)
    probe(pytester)
    data = json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())
    assert data["schema_version"] == 1
    assert set(data["run"]) >= {"id", "started", "finished", "profile", "commit", "argv"}
    assert set(data["environment"]) >= {"kernel", "cpu", "memory", "gpu", "versions"}
    assert set(data["environment"]["versions"]) >= {"fio", "deepspeed", "torch", "transformers", "python"}
    (t,) = data["targets"]
    assert t["embedded"] is True and t["device"]["kind"]
    assert "smart_before" in t["device"] and "smart_after" in t["device"]
    (test,) = data["tests"]
    assert test["outcome"] == "passed" and test["verdict"] == "new"
    assert test["metrics"]["bw"] == {"value": 1.0, "unit": "B/s", "better": "higher", "samples": [1.0, 1.0, 1.0],
                                     "gated": True}


def test_two_runs_keep_separate_run_dirs_and_latest_moves(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_probe=PROFILE_PROBE)
    probe(pytester)
    first = os.readlink(pytester.path / "reports" / "latest")
    probe(pytester)
    second = os.readlink(pytester.path / "reports" / "latest")
    assert first != second
    assert (pytester.path / "reports" / first / "results.json").is_file()


def test_bad_aio_json_stops_the_run_at_configure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_probe=PROFILE_PROBE)
    r = pytester.runpytest_subprocess("--nvme-ai-aio", '{"block_size": 1048576, "thread_cnt": 8}')
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*bad value*for aio from command line --nvme-ai-aio*thread_cnt*"])
    r = pytester.runpytest_subprocess("--nvme-ai-aio", "fast")
    r.stderr.fnmatch_lines(["*neither 'default', 'auto' nor valid JSON*"])
    probe(pytester, "--nvme-ai-aio", '{"block_size": 2097152, "queue_depth": 32, "intra_op_parallelism": 8}')


def test_cli_paths_are_relative_to_where_pytest_was_started(pytester: pytest.Pytester,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini("[pytest]\n")
    sub = pytester.mkdir("sub")
    (sub / "test_probe.py").write_text(PROFILE_PROBE)
    monkeypatch.chdir(sub)
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--nvme-ai-report-dir", "out", "test_probe.py")
    r.assert_outcomes(passed=1)
    assert (sub / "out" / "latest" / "results.json").is_file()
    assert not (pytester.path / "out").exists()
    # with no option, the default reports/ sits next to the ini file
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_probe.py")
    assert (pytester.path / "reports" / "latest" / "results.json").is_file()
