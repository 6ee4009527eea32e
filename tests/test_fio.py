"""fio wrapper: job validation, golden json+ outputs, real fio runs, the runner, and the plugin around it."""
from __future__ import annotations

import configparser
import errno
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.core.cache import SessionCache
from pytest_nvme_ai.measure.fio import runner as fio_mod
from pytest_nvme_ai.measure.device import identify
from pytest_nvme_ai.measure.fio.runner import (BEST_FIO_BW, FIO_BW, MISSING_REASON, DirectIOUnsupported, FioError, FioJob, FioRunner,
                                check_direct_io, combine_results, fio_missing_reason, format_size, format_time,
                                parse_fio_json, parse_size, run_fio)
from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.core.profiles import PROFILES
from pytest_nvme_ai.core.targets import Target

GOLDEN = Path(__file__).parent / "golden" / "fio"
SUITE = Path(__file__).parent.parent / "suites" / "test_seq_read.py"
needs_fio = pytest.mark.skipif(shutil.which("fio") is None, reason=MISSING_REASON)


def golden(name: str) -> str:
    return (GOLDEN / name).read_text()


def golden_obj(name: str) -> dict[str, Any]:
    text = golden(name)
    return json.loads(text[re.search(r"^\{", text, re.M).start():])  # type: ignore[union-attr]


# ---- sizes, times, job validation -----------------------------------------------------------
@pytest.mark.parametrize("text,n", [("512", 512), ("128K", 128 << 10), ("1M", 1 << 20), ("1m", 1 << 20),
                                    ("16M", 16 << 20), ("2G", 2 << 30), ("4KiB", 4096), (4096, 4096)])
def test_parse_size(text: str | int, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("bad", ["", "1.5M", "M", "-1M", "1X", 0, True])
def test_parse_size_rejects(bad: Any) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)


def test_format_size_and_time() -> None:
    sizes = (2 << 20, 16 << 20, 128 << 10, 1536, 3 << 30)
    assert [format_size(n) for n in sizes] == ["2M", "16M", "128K", "1536", "3G"]
    assert [format_time(t) for t in (2, 2.0, 0.5, 1.25)] == ["2", "2", "500ms", "1250ms"]


@pytest.mark.parametrize("kwargs,message", [
    ({"bs": "1000"}, "multiple of 512"),
    ({"bs": "1.5M"}, "bs='1.5M' is not a size"),
    ({"rw": "seqread"}, "not a fio rw mode"),
    ({"iodepth": 0}, "iodepth=0"),
    ({"numjobs": 1.5}, "numjobs"),
    ({"size": "4K", "bs": "1M"}, "smaller than one block"),
    ({"time_based": True}, "needs runtime"),
    ({"runtime": -1}, "runtime"),
    ({"ss": "bw_slope:0.3%"}, "needs ss_dur"),
    ({"ss": "fast", "ss_dur": 2}, "steady-state criterion"),
    ({"filename": "/dev/nvme0n1"}, "is a device"),
    ({"name": "my job"}, "job name"),
])
def test_job_validation_errors_say_what_is_wrong(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        FioJob(**kwargs)


def test_buffered_io_allows_odd_block_sizes() -> None:
    assert FioJob(bs=1000, direct=False).bs == "1000"


def test_sizes_are_normalised() -> None:
    job = FioJob(bs=2 << 20, size="16m", rate=100 << 20)
    assert (job.bs, job.size, job.rate, job.bs_bytes, job.size_bytes) == ("2M", "16M", "100M", 2 << 20, 16 << 20)


def test_jobfile_is_ini_and_matches_argv() -> None:
    job = FioJob(name="seq", bs="1M", iodepth=16, numjobs=4, size="64M", offset_increment="64M", runtime=2.5,
                 ramp_time=1, time_based=True, ss="bw_slope:0.3%", ss_dur=2, ss_ramp=1, filename="/data/f.bin")
    text = job.to_jobfile()
    ini = configparser.ConfigParser(comment_prefixes=(";", "#"), interpolation=None)
    ini.read_string(text)
    opts = dict(ini["seq"])
    assert opts == {"filename": "/data/f.bin", "rw": "read", "bs": "1M", "ioengine": "libaio", "iodepth": "16",
                    "direct": "1", "numjobs": "4", "size": "64M", "offset_increment": "64M", "runtime": "2500ms",
                    "ramp_time": "1", "time_based": "1", "group_reporting": "1", "ss": "bw_slope:0.3%",
                    "ss_dur": "2", "ss_ramp": "1"}
    argv = job.to_argv("/out/r.json", exe="/usr/bin/fio")
    assert argv[:4] == ["/usr/bin/fio", "--output-format=json+", "--output=/out/r.json", "--name=seq"]
    assert argv[4:] == [f"--{k}={v}" for k, v in opts.items()]


@needs_fio
def test_fio_accepts_the_jobfile(tmp_path: Path) -> None:
    jf = tmp_path / "j.fio"
    jf.write_text(FioJob(size="1M", runtime=1, time_based=True, ss="iops:10%", ss_dur=1,
                         filename=str(tmp_path / "x")).to_jobfile())
    r = subprocess.run(["fio", "--parse-only", str(jf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ---- golden json+ ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["seqread_bs1M_qd16_j1.json", "seqread_bs2M_qd8_j4_grouped.json",
                                  "steadystate_attained.json", "steadystate_slope_not_attained.json"])
def test_golden_single_group(name: str) -> None:
    raw = golden_obj(name)["jobs"][0]["read"]
    res = parse_fio_json(golden(name))
    pct = raw["clat_ns"]["percentile"]
    assert (res.bw_bytes, res.iops, res.io_bytes, res.runtime_ms) == (raw["bw_bytes"], raw["iops"], raw["io_bytes"],
                                                                     raw["runtime"])
    assert (res.clat_p50, res.clat_p99, res.clat_p999) == (pct["50.000000"], pct["99.000000"], pct["99.900000"])
    assert res.clat_mean == raw["clat_ns"]["mean"] and res.fio_version == "fio-3.33" and res.error == 0
    assert res.clat_p50 <= res.clat_p99 <= res.clat_p999  # type: ignore[operator]
    # fio's own figures agree with each other: bandwidth = bytes / time (within the ms rounding).
    assert res.bw_bytes == pytest.approx(res.io_bytes / (res.runtime_ms / 1000), rel=0.01)


def test_golden_dict_input_is_accepted() -> None:
    name = "seqread_bs1M_qd16_j1.json"
    assert parse_fio_json(golden_obj(name)) == parse_fio_json(golden(name))


def test_golden_steady_state() -> None:
    ok = parse_fio_json(golden("steadystate_attained.json")).steadystate
    no = parse_fio_json(golden("steadystate_slope_not_attained.json")).steadystate
    assert ok is not None and ok["attained"] is True and ok["ss"].startswith("bw:20")
    assert no is not None and no["attained"] is False and no["ss"].startswith("bw_slope:0.3")
    # The window's per-second bandwidth stays (SNIA's range criterion is judged on it), not its iops copy.
    assert set(ok["data"]) == {"bw_mean", "bw"} and len(ok["data"]["bw"]) == 2
    assert parse_fio_json(golden("seqread_bs1M_qd16_j1.json")).steadystate is None


def test_golden_separate_jobs_add_up_and_take_the_worst_latency() -> None:
    jobs = [j["read"] for j in golden_obj("seqread_bs128K_j2_separate.json")["jobs"]]
    res = parse_fio_json(golden("seqread_bs128K_j2_separate.json"))
    assert res.bw_bytes == sum(j["bw_bytes"] for j in jobs) and res.io_bytes == sum(j["io_bytes"] for j in jobs)
    assert res.clat_p99 == max(j["clat_ns"]["percentile"]["99.000000"] for j in jobs)


def test_golden_junk_before_json() -> None:
    text = golden("junk_prefix_note.out")
    assert text.startswith("note: both iodepth")  # recorded as fio printed it
    assert parse_fio_json(text).io_bytes > 0


def test_golden_error_output_with_fio_messages_in_the_file() -> None:
    text = golden("error_no_size.json")
    assert text.startswith("nosize: you need to specify size=")
    res = parse_fio_json(text)
    assert res.error == errno.EINVAL and res.io_bytes == 0 and res.clat_p50 is None


@pytest.mark.parametrize("text,message", [("fio: engine libaio not loadable\n", "no JSON in fio output"),
                                          ('{\n  "fio version" : "fio-3.33",\n  "jobs" : [', "not valid JSON"),
                                          ('{"jobs": []}', "no jobs")])
def test_bad_output_raises_fio_error(text: str, message: str) -> None:
    with pytest.raises(FioError, match=message):
        parse_fio_json(text)


def test_combine_repetitions_takes_medians_and_keeps_samples() -> None:
    base = parse_fio_json(golden("seqread_bs1M_qd16_j1.json"))
    reps = [replace(base, bw_bytes=b, clat_p99=p) for b, p in ((3.0, 30.0), (1.0, 10.0), (2.0, 20.0))]
    c = combine_results(reps)
    assert (c.bw_bytes, c.clat_p99, c.samples("bw_bytes")) == (2.0, 20.0, (3.0, 1.0, 2.0))
    assert Metric.of("bw", c.samples("bw_bytes")).value == c.bw_bytes


# ---- real fio -------------------------------------------------------------------------------
@pytest.fixture
def datafile(tmp_path: Path) -> Path:
    p = tmp_path / "data.bin"
    p.write_bytes(os.urandom(8 << 20))
    return p


@needs_fio
def test_real_fio_run_on_a_temp_file(tmp_path: Path, datafile: Path) -> None:
    job = FioJob(name="seq", bs="1M", iodepth=4, size="8M", runtime=0.5, time_based=True, filename=str(datafile))
    res = run_fio(job, tmp_path, tmp_path, timeout=60)
    assert res.error == 0 and res.io_bytes >= 1 << 20 and res.bw_bytes > 0 and res.fio_version
    assert (tmp_path / "seq.fio").read_text() == job.to_jobfile()
    assert parse_fio_json((tmp_path / "seq.json").read_text()) == res


@needs_fio
def test_jobfile_and_argv_run_the_same_job(tmp_path: Path, datafile: Path) -> None:
    job = FioJob(name="same", bs="128K", iodepth=2, size="4M", filename=str(datafile))
    subprocess.run(job.to_argv(tmp_path / "argv.json"), check=True, capture_output=True)
    run_fio(job, tmp_path, tmp_path, timeout=60)
    opts_argv = json.loads((tmp_path / "argv.json").read_text())["jobs"][0]["job options"]
    opts_file = json.loads((tmp_path / "same.json").read_text())["jobs"][0]["job options"]
    assert opts_argv.pop("name") == "same"  # argv names the job with --name=, the file with [same]
    assert opts_argv == opts_file


@needs_fio
def test_fio_failure_names_the_job_file_and_fio_words(tmp_path: Path) -> None:
    job = FioJob(name="nosize", filename=str(tmp_path / "absent.bin"))
    with pytest.raises(FioError) as exc:
        run_fio(job, tmp_path, tmp_path, timeout=60)
    assert str(tmp_path / "nosize.fio") in str(exc.value)
    assert "you need to specify size=" in str(exc.value)


@needs_fio
def test_timeout_kills_fio_and_says_so(tmp_path: Path, datafile: Path) -> None:
    job = FioJob(name="slow", bs="4K", size="8M", runtime=30, time_based=True, rate="1M", numjobs=2,
                 filename=str(datafile))
    t0 = time.monotonic()
    with pytest.raises(FioError, match=r"timed out after 1 s running .*slow\.fio"):
        run_fio(job, tmp_path, tmp_path, timeout=1)
    assert time.monotonic() - t0 < 10  # nothing waited for the 30 s runtime
    # fio's job processes setsid() away from the group: make sure none is left reading the file.
    jobfile = str(tmp_path / "slow.fio").encode()
    left = [c for c in Path("/proc").glob("[0-9]*/cmdline") if _cmdline(c) and jobfile in _cmdline(c)]
    assert left == []


def _cmdline(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_direct_io_probe_passes_here_and_cleans_up(tmp_path: Path) -> None:
    check_direct_io(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["open", "write"])
def test_direct_io_unsupported_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    real_open, real_write = os.open, os.write

    def fake_open(path: Any, flags: int, *a: Any) -> int:
        if where == "open" and flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *a)

    def fake_write(fd: int, data: Any) -> int:
        if where == "write":
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(fio_mod.os, "open", fake_open)
    monkeypatch.setattr(fio_mod.os, "write", fake_write)
    with pytest.raises(DirectIOUnsupported) as exc:
        run_fio(FioJob(size="1M", filename=str(tmp_path / "f")), tmp_path, tmp_path, timeout=10)
    assert str(exc.value) == (f"filesystem at {tmp_path} does not support O_DIRECT (tmpfs?) — "
                              "use a directory on the drive under test")


def test_fio_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert fio_missing_reason() == "fio not found: apt-get install fio"
    with pytest.raises(FioError, match="fio not found"):
        run_fio(FioJob(size="1M", filename=str(tmp_path / "f")), tmp_path, tmp_path, timeout=10)


# ---- FioRunner with a stand-in recorder ------------------------------------------------------
class FakeRecorder:
    """The parts of session.Recorder that FioRunner uses."""

    def __init__(self, tmp: Path, repeat: int = 2) -> None:
        self.repeat, self.timeout = repeat, 60
        self.profile = replace(PROFILES["quick"], fio_runtime_s=0.3, fio_file_bytes=8 << 20)
        self.session_cache = SessionCache()
        self.artifact_dir = tmp / "artifacts"
        self.artifact_dir.mkdir()
        self.metrics: dict[str, Metric] = {}
        self.params: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        self.artifacts: dict[str, Path] = {}

    def record_samples(self, name: str, samples: tuple[float, ...]) -> None:
        m = Metric.of(name, samples)
        self.metrics[name] = self.metrics[name].merged(m) if name in self.metrics else m

    def set_params(self, **kw: Any) -> None:
        self.params.update(kw)

    def set_extra(self, key: str, value: Any) -> None:
        self.extra[key] = value

    def add_artifact(self, label: str, path: Path) -> None:
        assert Path(path).exists(), path
        self.artifacts[label] = Path(path)


@pytest.fixture
def runner(tmp_path: Path) -> FioRunner:
    target_dir = tmp_path / "target"
    target_dir.mkdir()
    return FioRunner(Target(path=target_dir, label="t", run_id="r1"), FakeRecorder(tmp_path))  # type: ignore[arg-type]


@needs_fio
def test_runner_records_one_sample_per_repetition(runner: FioRunner) -> None:
    res = runner.run(FioJob(bs="1M", iodepth=4))
    rec: FakeRecorder = runner.recorder  # type: ignore[assignment]
    assert len(res.repetitions) == 2
    assert {n: m.n for n, m in rec.metrics.items()} == {"bw": 2, "iops": 2, "clat_p50": 2, "clat_p99": 2,
                                                         "clat_p999": 2}
    assert rec.metrics["bw"].samples == res.samples("bw_bytes") and rec.metrics["bw"].unit == "B/s"
    assert rec.params["bs"] == "1M" and rec.params["iodepth"] == 4 and rec.params["runtime_s"] == 0.3
    assert set(rec.artifacts) == {"fio job file", "fio json+ seqread-1", "fio json+ seqread-2"}
    assert runner.cache.get(FIO_BW, "t", 1 << 20) == res.bw_bytes == runner.cache.get(BEST_FIO_BW, "t")
    # The same job again in the same test: samples accumulate, the first run's files are kept.
    runner.run(FioJob(bs="1M", iodepth=4), repeat=1)
    assert rec.metrics["bw"].n == 3 and rec.artifacts["fio json+ seqread-3"].exists()
    assert sorted(p.name for p in rec.artifact_dir.glob("seqread-*.json")) == [
        "seqread-1.json", "seqread-2.json", "seqread-3.json"]


@needs_fio
def test_runner_lays_out_the_data_file_once_inside_the_workdir(runner: FioRunner) -> None:
    a = runner.complete(FioJob(bs="128K"))
    b = runner.complete(FioJob(bs="1M"))
    assert a.filename == b.filename and Path(a.filename).parent == runner.target.workdir  # type: ignore[arg-type]
    assert Path(a.filename).stat().st_size == 8 << 20  # type: ignore[arg-type]
    layouts = list(runner.recorder.artifact_dir.glob("layout-*.fio"))
    assert [p.name for p in layouts] == ["layout-8M.fio"]
    assert a.time_based and a.runtime == 0.3 and a.size == "8M"


@needs_fio
def test_runner_gives_parallel_jobs_their_own_slice(runner: FioRunner) -> None:
    job = runner.complete(FioJob(bs="1M", numjobs=4))
    assert (job.size, job.offset_increment) == ("2M", "2M")
    res = runner.run(job, repeat=1)
    assert res.io_bytes > 0


def test_runner_refuses_files_outside_the_workdir(runner: FioRunner, tmp_path: Path) -> None:
    with pytest.raises(PermissionError, match="outside the target directory"):
        runner.complete(FioJob(size="1M", filename=str(tmp_path / "elsewhere.bin")))


def test_runner_skips_when_direct_io_is_refused(runner: FioRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(directory: Path) -> None:
        raise DirectIOUnsupported(f"filesystem at {directory} does not support O_DIRECT (tmpfs?) — use ...")

    monkeypatch.setattr(fio_mod, "check_direct_io", refuse)
    with pytest.raises(pytest.skip.Exception, match="does not support O_DIRECT"):
        runner.run(FioJob())


# ---- the plugin around it (pytester) --------------------------------------------------------
FIO_PROBE = """
def test_uses_fio(fio):
    pass
"""


def test_fio_missing_skips_with_the_install_hint(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_probe=FIO_PROBE)
    empty_bin = pytester.mkdir("empty-bin")
    monkeypatch.setenv("PATH", str(empty_bin))
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    r.assert_outcomes(skipped=1)
    r.stdout.fnmatch_lines(["*SKIPPED*fio not found: apt-get install fio*"])
    r.stdout.fnmatch_lines(["nvme-ai: profile quick*fio not found (apt-get install fio)*"])


def test_two_targets_parametrize_the_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_seq_read=SUITE.read_text())
    a, b = pytester.mkdir("a"), pytester.mkdir("b")
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only", "-q",
                                      "--nvme-ai-target", str(a), "--nvme-ai-target", str(b))
    ids = [line.split("[", 1)[1].rstrip("]") for line in r.stdout.lines if "::test_seq_read[" in line]
    assert len(ids) == 8
    for label in ("@a", "@b"):
        got = sorted(re.sub(r"-?@[ab]-?", "", i) for i in ids if label in i.split("-"))
        assert got == sorted(["bs128K-qd16-j1", "bs1M-qd16-j1", "bs2M-qd16-j1", "bs16M-qd16-j1"])


def test_standard_grid_has_the_seed_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_seq_read=SUITE.read_text())
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only", "-q", "--nvme-ai-profile",
                                      "standard")
    # 17 points, plus one test each for the concurrent and remote modes, which skip when not asked for.
    r.stdout.fnmatch_lines(["*test_seq_read*bs2M-qd8-j16*", "*test_seq_read_concurrent[[]off[]]*",
                            "*test_seq_read_remote[[]off[]]*", "*19 tests collected*"])


def test_header_names_target_device_and_fio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_probe=FIO_PROBE)
    t = pytester.mkdir("drive")
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only", "--nvme-ai-target", str(t))
    version = fio_mod.subprocess.run(["fio", "--version"], capture_output=True, text=True).stdout.strip() \
        if shutil.which("fio") else None
    fio_text = version.removeprefix("fio-") if version else "not found (apt-get install fio)"
    r.stdout.fnmatch_lines([f"nvme-ai: profile quick*fio {fio_text}*",
                            f"nvme-ai target @drive: {t.resolve()} -> {identify(t).summary()}"])


@needs_fio
def test_suite_end_to_end_records_results(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_seq_read=SUITE.read_text())
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "bs1M", "--nvme-ai-repeat", "2")
    r.assert_outcomes(passed=1, deselected=5)
    data = json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())
    (test,) = data["tests"]
    assert test["metrics"]["bw"]["unit"] == "B/s" and len(test["metrics"]["bw"]["samples"]) == 2
    assert test["params"]["bs"] == "1M" and "fio job file" in test["artifacts"]
    job = (pytester.path / "reports" / "latest" / test["artifacts"]["fio job file"]).read_text()
    assert "rw=read" in job and "direct=1" in job
    assert not any(p.name.startswith(".nvme-ai-") for p in (pytester.path).rglob(".nvme-ai-*"))  # workdir removed
