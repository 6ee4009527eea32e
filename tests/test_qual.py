"""Qualification rigor: steady state, host-bound flags, SMART health sampling, drives at once, fio client/server."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.measure.fio import hostbound, steady
from pytest_nvme_ai.measure.fio.job import FioJob, parse_fio_jobs, parse_fio_json
from pytest_nvme_ai.measure.fio.multi import ConcurrentResult
from pytest_nvme_ai.measure.fio.remote import parse_remote, remote_jobfile, run_remote
from pytest_nvme_ai.measure.fio.runner import run_fio
from pytest_nvme_ai.measure.health import HealthSampler, throttled, sample_of

GOLDEN = Path(__file__).parent / "golden" / "fio"
SUITE = Path(__file__).parent.parent / "suites" / "test_seq_read.py"
needs_fio = pytest.mark.skipif(shutil.which("fio") is None, reason="fio not found: apt-get install fio")


# ---- steady state ---------------------------------------------------------------------------
def test_fio_stops_on_a_deviation_that_bounds_snia_range() -> None:
    p = steady.SteadyPolicy(budget_s=60, window_s=10, ramp_s=5)
    assert p.fio_ss == "bw:10%"          # every sample within ±10% of the mean: max - min <= 20% of it
    assert "SNIA slope excursion <= 10%" in p.criterion()
    with pytest.raises(ValueError, match="shorter than ss_ramp"):
        steady.SteadyPolicy(budget_s=10, window_s=10, ramp_s=5)


def test_fitted_excursion_and_range() -> None:
    ramp = [100.0, 110.0, 120.0, 130.0, 140.0]      # +10 per sample, mean 120: the line climbs 40 across the window
    assert steady.fitted_excursion_pct(ramp) == pytest.approx(40 / 120 * 100)
    assert steady.range_pct(ramp) == pytest.approx(40 / 120 * 100)
    assert steady.fitted_excursion_pct([5.0] * 4) == 0 and steady.range_pct([5.0]) is None


def _ss(attained: bool, bw: list[float]) -> dict[str, Any]:
    return {"ss": "bw:10%", "attained": attained, "data": {"bw_mean": sum(bw) / len(bw), "bw": bw}}


def test_judge_needs_fio_attained_and_snia_range() -> None:
    p = steady.SteadyPolicy(60, 4, 1)
    ok = steady.judge(_ss(True, [1e9, 1.02e9, 0.99e9, 1.01e9]), p, 7200)
    assert ok.reached and ok.after_s == 7.2 and ok.range_pct is not None and ok.range_pct < 5
    wide = steady.judge(_ss(True, [1e9, 1.4e9, 0.8e9, 1.1e9]), p, 9000)
    assert not wide.reached and wide.fio_attained and "range" in wide.reason
    ramp = steady.judge(_ss(True, [0.92e9, 0.97e9, 1.02e9, 1.07e9]), p, 9000)   # within ±10%, but a 16% climb
    assert not ramp.reached and "slope excursion" in ramp.reason
    never = steady.judge(_ss(False, [1e9, 1.2e9, 1.4e9, 1.6e9]), p, 60000)
    assert not never.reached and never.after_s is None and "60 s budget" in never.reason and "range" in never.reason
    point = steady.combine([ok, never])
    assert point["reached"] is False and point["reason"].startswith("1 of 2 repetitions steady")
    assert steady.combine([ok, ok])["after_s"] == 7.2


def test_fio_bare_nan_parses_and_window_is_kept() -> None:
    r = parse_fio_json((GOLDEN / "null_engine_ss_nan.json").read_text())
    assert r.steadystate is not None and r.steadystate["attained"] is True
    assert r.steadystate["slope"] != r.steadystate["slope"]   # NaN survives as NaN
    assert r.steadystate["data"]["bw"] and r.cpu_usr is not None and r.cpu_sys is not None


@needs_fio
def test_real_fio_steady_state_stops_before_the_budget(tmp_path: Path) -> None:
    policy = steady.SteadyPolicy(budget_s=30, window_s=2, ramp_s=0)
    # null engine: no I/O, a flat bandwidth, so fio's detector stops it as soon as a window is full.
    job = FioJob(name="ss", ioengine="null", direct=False, bs="64k", size="1G", runtime=policy.budget_s,
                 time_based=True, ss=policy.fio_ss, ss_dur=policy.window_s, ss_ramp=policy.ramp_s)
    r = run_fio(job, tmp_path, tmp_path, timeout=60)
    v = steady.judge(r.steadystate, policy, r.runtime_ms)
    assert v.fio_attained and len(v.window_bw) == 2 and r.runtime_ms < policy.budget_s * 1000


# ---- host-bound -----------------------------------------------------------------------------
def test_host_bound_rules() -> None:
    assert hostbound.judge(85.0, 6.0).flagged                          # >= 90% of one core
    assert not hostbound.judge(60.0, 5.0, host_idle_pct=40, busy_pct=70).flagged
    busy = hostbound.judge(45.0, 2.0, host_idle_pct=0, busy_pct=97)   # half a core, queued for the other half
    assert busy.flagged and "waited for a CPU" in busy.reason
    assert not hostbound.judge(5.0, 2.0, host_idle_pct=0, busy_pct=8).flagged   # slept on the drive: the drive's
    a = hostbound.parse_proc_stat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n")
    b = hostbound.parse_proc_stat("cpu  200 0 100 850 50 0 0 0 0 0\n")
    assert a is not None and b is not None and b.idle_pct_since(a) == pytest.approx(50 / 200 * 100)


@needs_fio
def test_null_engine_is_flagged_host_bound_and_a_1m_read_is_not(tmp_path: Path) -> None:
    def flag(job: FioJob) -> hostbound.HostBound:
        before = hostbound.cpu_times()
        with hostbound.BusyProbe(str(tmp_path / f"{job.name}.fio")) as probe:
            r = run_fio(job, tmp_path, tmp_path, timeout=60, stem=job.name)
        after = hostbound.cpu_times()
        return hostbound.judge(r.cpu_usr, r.cpu_sys, after.idle_pct_since(before) if before and after else None,
                               busy_pct=probe.busy_pct())

    # ioengine=null completes every I/O at once: the job is nothing but CPU, whatever the drive and the load.
    null = flag(FioJob(name="null", ioengine="null", direct=False, bs="4k", size="4G", runtime=2, time_based=True))
    assert null.flagged, null.reason
    data = tmp_path / "f.bin"
    run_fio(FioJob(name="lay", rw="write", bs="1M", size="64M", filename=str(data)), tmp_path, tmp_path, 60)
    real = flag(FioJob(name="real", bs="1M", iodepth=16, size="64M", filename=str(data), runtime=2, time_based=True))
    assert not real.flagged, real.reason


# ---- health during the run ------------------------------------------------------------------
class FakeSmart:
    """nvme smart-log readings as measure.device.parse_smart_log returns them, heating up."""

    def __init__(self, readings: list[dict[str, Any]]) -> None:
        self.readings, self.calls = readings, 0

    def __call__(self) -> dict[str, Any]:
        r = self.readings[min(self.calls, len(self.readings) - 1)]
        self.calls += 1
        return r


def _reading(temp: int, wtt: int = 0, cw: int = 0) -> dict[str, Any]:
    return {"temperature_c": temp, "warning_temp_time": wtt, "critical_comp_time": 0, "critical_warning": cw,
            "percent_used": 1, "media_errors": 0, "data_units_read_bytes": 0}


def test_sampler_samples_during_the_block_and_flags_throttling() -> None:
    fake = FakeSmart([_reading(40), _reading(55), _reading(71, wtt=1), _reading(72, wtt=2)])
    with HealthSampler(fake, interval_s=0.05) as h:
        time.sleep(0.3)
    assert fake.calls >= 4 and len(h.samples) == fake.calls
    s = h.summary()
    assert s["throttled"] and "warning temperature grew by 2 min" in s["throttle_reason"]
    assert s["temperature_c_max"] == 72 and s["fields"][1] == "temperature_c"
    # Only the first two readings (before the counter moved) fall in an early window: not throttled.
    early = h.summary(h.samples[0].wall, h.samples[0].wall)
    assert not early["throttled"] or early["samples"][-1][2] > early["samples"][0][2]


def test_sampler_without_smart_starts_no_thread_and_says_why() -> None:
    fake = FakeSmart([{"unavailable": "not an NVMe device (virtio)"}])
    with HealthSampler(fake, interval_s=0.01) as h:
        time.sleep(0.05)
    assert fake.calls == 1 and h.summary() == {"unavailable": "not an NVMe device (virtio)"}


def test_throttle_from_the_critical_warning_bit_and_a_failing_reader() -> None:
    hot = [sample_of(_reading(80, cw=0x02), 1.0), sample_of(_reading(80), 2.0)]
    assert throttled(hot)[0] and not throttled([sample_of(_reading(40), 1.0)])[0]

    def broken() -> dict[str, Any]:
        raise OSError("nvme-cli vanished")

    with HealthSampler(broken, interval_s=0.01) as h:
        pass
    assert "nvme-cli vanished" in h.summary()["unavailable"]


# ---- several drives at once -------------------------------------------------------------------
def test_first_and_last_done() -> None:
    fast = parse_fio_jobs((GOLDEN / "seqread_bs1M_qd16_j1.json").read_text())[0]
    from dataclasses import replace

    a = replace(fast, bw_bytes=1e9, io_bytes=1_000_000_000, runtime_ms=1000)
    b = replace(fast, bw_bytes=0.25e9, io_bytes=1_000_000_000, runtime_ms=4000)
    r = ConcurrentResult((a, b), ("a", "b"))
    assert r.first_done_bw == pytest.approx(1.25e9)           # both at their own rate until the first finished
    assert r.last_done_bw == pytest.approx(2e9 / 4)           # everything / until the slowest finished
    assert (r.first_done_label, r.last_done_label) == ("a", "b")


@needs_fio
def test_concurrent_mode_in_the_suite_and_the_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_seq_read=SUITE.read_text())
    a, b = pytester.mkdir("a"), pytester.mkdir("b")
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--nvme-ai-target", str(a), "--nvme-ai-target",
                                      str(b), "--nvme-ai-concurrent", "-k", "concurrent and bs1M",
                                      "--nvme-ai-repeat", "2")
    r.assert_outcomes(passed=1)
    data = json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())
    (t,) = [t for t in data["tests"] if "concurrent" in t["nodeid"]]
    assert t["nodeid"].endswith("[x2-bs1M-qd16-j1]") and t["params"]["n_drives"] == 2
    m = t["metrics"]
    assert {"bw", "bw_first_done", "bw_drive_a", "bw_drive_b"} <= set(m) and len(m["bw"]["samples"]) == 2
    assert m["bw"]["value"] <= m["bw_first_done"]["value"] * 1.001 and not m["bw_drive_a"]["gated"]
    job = (pytester.path / "reports" / "latest" / t["artifacts"]["fio job file concurrent-1"]).read_text()
    assert job.count("new_group") == 2 and "stonewall" not in job and "time_based" not in job
    page = (pytester.path / "reports" / "latest" / "index.html").read_text()
    assert "All targets at once" in page and "@a" in page and "first-done" in page


# ---- fio client/server -----------------------------------------------------------------------
def test_remote_spec_and_job_file_stay_in_the_private_dir() -> None:
    r = parse_remote("127.0.0.1,18765=/srv/nvme0/")
    assert (r.host, r.port, r.directory) == ("127.0.0.1", 18765, "/srv/nvme0")
    assert parse_remote("storage01=/mnt/x").port == 8765
    for bad, msg in (("/mnt/x", "HOST=DIR"), ("h=relative", "absolute"), ("h=/dev/nvme0n1", "absolute|/dev"),
                     ("h=/mnt/a b", "spaces"), ("h,99999=/mnt", "out of range"), ("h=/", "absolute")):
        with pytest.raises(ValueError, match=msg):
            parse_remote(bad)
    text = remote_jobfile(r, "RUN", FioJob(name="seqread", bs="1M", runtime=1, time_based=True), 64 << 20, 2)
    private = "/srv/nvme0/.nvme-ai-RUN"
    files = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(("filename=", "arguments="))]
    assert files and all(f == private or f.startswith(private + "/") for f in files)
    assert text.index("[cleanup-files]") > text.index("[seqread-2]") and text.rstrip().endswith("std_redirect=0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fio_server(tmp_path: Path):
    """`fio --server` on loopback only, stopped after the test (bounded: it never outlives it)."""
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    # The server's working directory must stay empty: fio's exec engine would drop <job>.stdout/.stderr there.
    cwd = tmp_path / "server-cwd"
    cwd.mkdir()
    proc = subprocess.Popen(["fio", f"--server=ip:127.0.0.1,{port}"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=cwd)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("fio --server did not listen on 127.0.0.1 within 10 s")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@needs_fio
def test_loopback_client_server_reads_and_cleans_up(fio_server: int, tmp_path: Path) -> None:
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    art = tmp_path / "art"
    art.mkdir()
    remote = parse_remote(f"127.0.0.1,{fio_server}={remote_dir}")
    job = FioJob(name="seqread", bs="1M", iodepth=8, runtime=1, time_based=True)
    reps = run_remote(remote, job, "loop", 64 << 20, 2, art, timeout=120)
    assert [r.jobname for r in reps] == ["seqread-1", "seqread-2"]
    assert all(r.bw_bytes > 0 and r.hostname == "127.0.0.1" for r in reps)
    assert list(remote_dir.iterdir()) == []   # the final jobs removed the data file and the private directory
    assert list((tmp_path / "server-cwd").iterdir()) == []   # and wrote nothing beside the server


@needs_fio
def test_loopback_through_the_suite_option(fio_server: int, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_seq_read=SUITE.read_text())
    remote_dir = pytester.mkdir("remote")
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--nvme-ai-fio-client",
                                      f"127.0.0.1,{fio_server}={remote_dir}", "-k", "remote and bs1M",
                                      "--nvme-ai-repeat", "1")
    r.assert_outcomes(passed=1)
    data = json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())
    (t,) = [t for t in data["tests"] if "remote" in t["nodeid"]]
    assert t["params"]["host"] == "127.0.0.1" and t["metrics"]["bw"]["value"] > 0
    assert list(remote_dir.iterdir()) == []
    page = (pytester.path / "reports" / "latest" / "index.html").read_text()
    assert "Remote drives through fio client/server" in page


def test_fio_client_option_refuses_a_bad_spec(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_seq_read=SUITE.read_text())
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only", "--nvme-ai-fio-client", "/mnt/x")
    assert r.ret != 0
    r.stdout.fnmatch_lines(["*bad value*for fio_client from command line --nvme-ai-fio-client*is not HOST=DIR*"])


# ---- a point that is not steady passes ungated, marked in the terminal and the report -------------
NOT_STEADY_FILE = """
import os
from dataclasses import dataclass
from pytest_nvme_ai.measure.fio.runner import FioJob
from pytest_nvme_ai.measure.fio.steady import SteadyPolicy

@dataclass(frozen=True)
class Unreachable(SteadyPolicy):
    @property
    def fio_ss(self):
        return "bw_slope:0%"   # fio stops when |slope| < limit: never below 0, so it runs to the budget

def test_point(fio, nvme_ai):
    kind = Unreachable if os.environ["SS_KIND"] == "unreachable" else SteadyPolicy
    job = FioJob(name="capped", bs="1M", iodepth=4, size="64M", rate=os.environ["CAP_RATE"])
    fio.run(job, steady_state=kind(budget_s=6, window_s=3, ramp_s=1))
    nvme_ai.set_params(rate="emulated drive", ss="sought")   # the cap and criterion stand in for the drive
"""


@needs_fio
def test_not_steady_point_is_not_gated_and_is_marked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_seq_read=NOT_STEADY_FILE)   # the seq-read suite's name: its report section
    mp = pytester._monkeypatch
    mp.setenv("CAP_RATE", "64M")
    mp.setenv("SS_KIND", "reachable")
    saved = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--nvme-ai-save-baseline", "--nvme-ai-repeat", "2")
    saved.assert_outcomes(passed=1)
    saved.stdout.fnmatch_lines(["*steady state: 1 of 1 point(s) steady*"])
    # Half as fast, and never steady: compared as if steady this would be a regression.
    mp.setenv("CAP_RATE", "32M")
    mp.setenv("SS_KIND", "unreachable")
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--nvme-ai-repeat", "2")
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["*NOT STEADY (not gated): test_seq_read.py::test_point*0 of 2 repetitions steady*"])
    data = json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())
    (t,) = data["tests"]
    assert t["verdict"] != "regression" and t["metrics"]["bw"]["gated"] is False
    assert t["baseline"]["metrics"]["bw"]["verdict"] == "regression"   # the figure moved; it just is not gated
    assert any(n.startswith("not steady: not gated") for n in t["notes"])
    ss = t["extra"]["steady_state"]
    assert not ss["reached"] and all(not rep["fio_attained"] and rep["ran_s"] <= 7 for rep in ss["repetitions"])
    page = (pytester.path / "reports" / "latest" / "index.html").read_text()
    assert "NOT steady: not gated" in page and "not attained; slope excursion" in page


@needs_fio
def test_precondition_fills_the_private_dir_first(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_seq_read=SUITE.read_text())
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--nvme-ai-precondition", "-k",
                                      "test_seq_read and bs1M", "--nvme-ai-repeat", "1")
    r.assert_outcomes(passed=1, deselected=5)
    data = json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())
    (t,) = data["tests"]
    pre = t["extra"]["precondition"]
    target = Path(data["targets"][0]["path"])
    if pre["done"]:   # quick: 512 MiB, unless the build disk is nearly full (then the reason says so)
        assert pre["bytes"] == 512 << 20 and pre["write_bw"] > 0
        assert Path(pre["file"]).parent.parent == target and Path(pre["file"]).parent.name.startswith(".nvme-ai-")
    else:
        assert "free" in pre["reason"]
    assert not list(target.glob(".nvme-ai-*"))   # removed with the private directory at the end


# ---- report: temperature next to bandwidth ------------------------------------------------------
def _seq_test(nodeid: str, t0: float, throttled_reps: list[bool]) -> dict[str, Any]:
    samples = [[t0 + i, 40 + 10 * i, 0 if i < 2 else 1, 0, 0] for i in range(4)]
    return {"nodeid": nodeid, "suite": "seq_read", "target_label": "nvme0", "outcome": "passed", "verdict": "new",
            "params": {"bs": "1M", "iodepth": 16, "numjobs": 1},
            "metrics": {"bw": {"value": 3e9, "unit": "B/s", "better": "higher", "samples": [3e9, 3e9]}},
            "extra": {"timeline": [[t0, t0 + 1.5, 3.1e9], [t0 + 1.5, t0 + 3, 2.4e9]],
                      "host_bound": {"flagged": False, "reason": "fio job used 7% of one core", "repetitions": []},
                      "health": {"interval_s": 1, "samples": samples, "throttled": any(throttled_reps),
                                 "throttle_reason": "time above the warning temperature grew by 1 min",
                                 "repetitions_throttled": throttled_reps}}}


def test_report_draws_temperature_next_to_bandwidth_and_flags_throttling(tmp_path: Path) -> None:
    from pytest_nvme_ai.core.schema import SCHEMA_VERSION
    from pytest_nvme_ai.report import render_run

    data = {"schema_version": SCHEMA_VERSION, "run": {"id": "r"}, "environment": {}, "targets": [],
            "tests": [_seq_test("s.py::test_seq_read[@nvme0-bs1M]", 1000.0, [False, True])]}
    out = tmp_path / "index.html"
    render_run(data, out)
    page = out.read_text()
    assert "Drive temperature (SMART)" in page and "Read bandwidth over the run" in page
    assert "Drive health during the run (@nvme0)" in page and "40–70 °C" in page
    assert "throttled" in page and "chart could not be drawn" not in page


def test_busiest_thread_of_a_long_lived_process() -> None:
    """The aio worker's CPU is judged per thread: a spinning thread shows, a sleeping process does not."""
    import os
    import threading

    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    th = threading.Thread(target=spin)
    th.start()
    time.sleep(0.05)
    before, t0 = hostbound.thread_stats(os.getpid()), time.monotonic()   # the spinner exists now
    time.sleep(0.6)
    cpu, busy = hostbound.busiest_thread(before, hostbound.thread_stats(os.getpid()), time.monotonic() - t0)
    stop.set()
    th.join()
    assert cpu is not None and busy is not None
    # The GIL lets the spinner run whenever the main thread sleeps: it ran or queued for a CPU all the time.
    assert hostbound.judge(cpu, None, busy_pct=busy, who="spinner").flagged, (cpu, busy)
    sleeper = subprocess.Popen(["sleep", "2"])
    try:
        a, t = hostbound.thread_stats(sleeper.pid), time.monotonic()
        time.sleep(0.5)
        cpu, busy = hostbound.busiest_thread(a, hostbound.thread_stats(sleeper.pid), time.monotonic() - t)
        assert not hostbound.judge(cpu, None, busy_pct=busy, who="sleeper").flagged
    finally:
        sleeper.kill()
        sleeper.wait()
