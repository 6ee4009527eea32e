"""Fault injection: the plugin under each class of fault, as a new user meets them (docs/reliability.md).

Each test asserts what the user sees (exit status and message), what results.json says, and the file
system afterwards: the target's private dirs, the baselines, and leftover processes. Runs go through
pytester in a subprocess (real signals, real flock, real fio where fio is involved).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from pytest_nvme_ai.core.names import check_name, path_in

MEASURED = """
import os, pathlib, signal, time, pytest

def test_a(nvme_ai, offload_target):
    pathlib.Path("ran_a").write_text("x")
    (offload_target.workdir / "scratch.bin").write_bytes(b"x" * 4096)
    nvme_ai.record_samples("bw", [100, 101, 99])

def test_b(nvme_ai, offload_target):
    nvme_ai.record_samples("bw", [100, 101, 99])
    sig = os.environ.get("FAULT_SIGNAL")
    if sig:
        os.kill(os.getpid(), getattr(signal, sig))
        time.sleep(5)   # the signal lands here, mid-test
    mode = os.environ.get("FAULT_LATE")
    if mode:            # something changes under the run after configure checked it
        import subprocess
        subprocess.run(["chattr", "+i", mode], check=True)

def test_c(nvme_ai, offload_target):
    nvme_ai.record_samples("bw", [100, 101, 99])
"""

HOLDER = """
import os, pathlib, time

def test_hold(nvme_ai, offload_target):
    pathlib.Path(os.environ["READY"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not pathlib.Path(os.environ["GO"]).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    nvme_ai.record_samples("bw", [1.0, 1.0, 1.0])
"""


# ---- helpers ------------------------------------------------------------------------------------
def run(p: pytest.Pytester, *args: str) -> pytest.RunResult:
    return p.runpytest_subprocess("-p", "no:cacheprovider", *args)


def results(p: pytest.Pytester, report_dir: str = "reports") -> dict:
    return json.loads((p.path / report_dir / "latest" / "results.json").read_text())


def outcomes(data: dict) -> dict[str, str]:
    return {t["nodeid"].split("::")[1].split("[")[0]: t["outcome"] for t in data["tests"]}


def private_dirs(target: Path) -> list[str]:
    return sorted(p.name for p in target.glob(".nvme-ai-*"))


def chattr(flag: str, path: Path) -> None:
    r = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"chattr {flag} not possible here (needs root on ext4/xfs/btrfs): {r.stderr.strip()}")


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Paths made immutable by a test; always made mutable again, so tmp cleanup works."""
    paths: list[Path] = []
    yield paths
    for p in paths:
        subprocess.run(["chattr", "-i", str(p)], capture_output=True)


@pytest.fixture
def ro_mount(tmp_path: Path) -> Iterator[list[Path]]:
    """Read-only bind mounts made by a test (root with CAP_SYS_ADMIN); unmounted afterwards."""
    mounts: list[Path] = []
    yield mounts
    for m in reversed(mounts):
        subprocess.run(["umount", str(m)], capture_output=True)


def bind_ro(mounts: list[Path], path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "--bind", "-o", "ro", str(path), str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"no read-only bind mount here (needs root with CAP_SYS_ADMIN): {r.stderr.strip()}")
    mounts.append(path)


def processes_mentioning(text: str) -> list[str]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                cwd = os.readlink(d / "cwd")
            except OSError:
                continue
            if text in cmd or cwd.startswith(text):   # fio runs with its cwd in the target's private dir
                found.append(f"{d.name}: {cmd} (cwd {cwd})")
    return found


@pytest.fixture
def measured(pytester: pytest.Pytester) -> tuple[pytest.Pytester, Path]:
    pytester.makepyfile(test_m=MEASURED)
    target = pytester.mkdir("drive")
    (target / "user-data.txt").write_text("keep me")
    return pytester, target


# ---- an interrupted run never looks green ----------------------------------------------------------
@pytest.mark.parametrize("sig,why", [("SIGINT", "Ctrl-C (SIGINT)"), ("SIGTERM", "SIGTERM")])
def test_interrupted_run_says_so_everywhere_and_saves_no_baseline(measured: tuple[pytest.Pytester, Path],
                                                                  sig: str, why: str) -> None:
    p, target = measured
    p._monkeypatch.setenv("FAULT_SIGNAL", sig)
    r = run(p, "--nvme-ai-target", str(target), "--nvme-ai-save-baseline")
    assert r.ret == pytest.ExitCode.INTERRUPTED
    r.stdout.fnmatch_lines([f"*nvme-ai run INTERRUPTED: {why}; 2 of 3 measured test(s) not run*",
                            "*baseline NOT saved: the run was interrupted*"])
    data = results(p)
    assert data["run"]["status"] == "interrupted" and why in data["run"]["status_detail"]
    assert outcomes(data) == {"test_a": "passed", "test_b": "interrupted", "test_c": "not run"}
    html = (p.path / "reports" / "latest" / "index.html").read_text()
    assert ">INTERRUPTED<" in html and ">PASS<" not in html
    assert not list((p.path / "baselines").glob("*.json")) if (p.path / "baselines").exists() else True
    assert sorted(x.name for x in target.iterdir()) == ["user-data.txt"]


def test_complete_run_is_complete(measured: tuple[pytest.Pytester, Path]) -> None:
    p, target = measured
    r = run(p, "--nvme-ai-target", str(target), "--nvme-ai-save-baseline")
    assert r.ret == 0
    data = results(p)
    assert data["run"]["status"] == "complete" and set(outcomes(data).values()) == {"passed"}
    assert len(list((p.path / "baselines").glob("*.json"))) == 1
    assert "INTERRUPTED" not in r.stdout.str()


def test_stopped_early_is_incomplete_and_lists_what_did_not_run(measured: tuple[pytest.Pytester, Path]) -> None:
    p, target = measured
    p.makepyfile(test_0first="def test_fails(nvme_ai, offload_target):\n    assert False\n")
    r = run(p, "--nvme-ai-target", str(target), "-x")
    assert r.ret == 1
    data = results(p)
    assert data["run"]["status"] == "incomplete"
    assert [t["outcome"] for t in data["tests"]].count("not run") == 3
    r.stdout.fnmatch_lines(["*nvme-ai run INCOMPLETE: 3 of 4 measured test(s) not run*"])
    assert ">INCOMPLETE<" in (p.path / "reports" / "latest" / "index.html").read_text()


def test_sigterm_during_real_fio_leaves_no_fio_and_no_private_dir(pytester: pytest.Pytester) -> None:
    target = pytester.mkdir("fio-drive")
    pytester.makepyfile(test_f=f"""
import os, signal, threading, time, pathlib
from pytest_nvme_ai.measure.fio import FioJob

def _term_when_fio_runs():
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for d in pathlib.Path("/proc").iterdir():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\\0")[0]
                cwd = os.readlink(d / "cwd")
            except OSError:
                continue
            if cmd.endswith(b"fio") and cwd.startswith({str(target)!r}):
                time.sleep(0.5)
                os.kill(os.getpid(), signal.SIGTERM)
                return
        time.sleep(0.05)

def test_long_read(fio, offload_target):
    threading.Thread(target=_term_when_fio_runs, daemon=True).start()
    fio.run(FioJob(name="longread", bs="1M", iodepth=4, numjobs=1, size="32M", runtime=60, time_based=True),
            repeat=1)

def test_after(nvme_ai, offload_target):
    nvme_ai.record_samples("bw", [1, 1, 1])
""")
    t0 = time.monotonic()
    r = run(pytester, "--nvme-ai-target", str(target))
    assert r.ret == pytest.ExitCode.INTERRUPTED and time.monotonic() - t0 < 50
    r.stdout.fnmatch_lines(["*nvme-ai run INTERRUPTED: SIGTERM*"])
    data = results(pytester)
    assert data["run"]["status"] == "interrupted"
    assert outcomes(data) == {"test_long_read": "interrupted", "test_after": "not run"}
    assert private_dirs(target) == [] and processes_mentioning(str(target)) == []


# ---- names stay names ------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["cli", "env", "ini"])
def test_baseline_name_that_is_a_path_is_refused_before_anything_runs(measured: tuple[pytest.Pytester, Path],
                                                                      how: str) -> None:
    p, target = measured
    bad = {"cli": "../outside", "env": str(p.path / "abs"), "ini": "sub/name"}[how]
    args = ["--nvme-ai-target", str(target), "--nvme-ai-save-baseline"]
    if how == "cli":
        args += ["--nvme-ai-baseline-name", bad]
    elif how == "env":
        p._monkeypatch.setenv("NVME_AI_BASELINE_NAME", bad)
    else:
        p.makeini(f"[pytest]\nnvme_ai_baseline_name = {bad}\n")
    r = run(p, *args)
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines([f"*baseline name {bad!r} is a path, not a name*--nvme-ai-baseline-dir*"])
    assert not (p.path / "ran_a").exists()            # refused before any test ran
    assert not (p.path.parent / "outside.json").exists() and not (p.path / "abs.json").exists()
    assert not (p.path / "baselines").exists() and private_dirs(target) == []


def test_baseline_name_with_json_suffix_says_to_drop_it(measured: tuple[pytest.Pytester, Path]) -> None:
    p, target = measured
    r = run(p, "--nvme-ai-target", str(target), "--nvme-ai-baseline-name", "mine.json")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*baseline name 'mine.json' ends in .json: give the name alone*"])


def test_promote_and_show_refuse_a_path_as_name(measured: tuple[pytest.Pytester, Path]) -> None:
    p, target = measured
    assert run(p, "--nvme-ai-target", str(target)).ret == 0
    res = str(p.path / "reports" / "latest" / "results.json")
    for argv in (["baseline", "promote", res, "--name", "../escaped", "--baseline-dir", str(p.path / "b")],
                 ["baseline", "show", "../../etc/passwd", "--baseline-dir", str(p.path / "b")]):
        r = subprocess.run([sys.executable, "-m", "pytest_nvme_ai.cli", *argv], capture_output=True, text=True,
                           cwd=p.path)
        assert r.returncode == 2 and "is a path, not a name" in r.stderr and "Traceback" not in r.stderr
    assert not (p.path / "escaped.json").exists() and not (p.path / "b").exists()


def test_name_rules() -> None:
    for ok in ("virtio-vda-ext4", "nvme-micron_7450-e2mu200-gen4x4-ext4", "lab2.run+1"):
        assert check_name(ok) == ok
    for bad in ("../x", "/etc/x", "a/b", ".hidden", "..", "", "a\\b", "x" * 200, "a..b", "bad name", "nul\0"):
        with pytest.raises(ValueError):
            check_name(bad)
    with pytest.raises(ValueError):
        path_in(Path("/tmp"), "../x", ".json")
    assert path_in(Path("/tmp"), "x", ".json") == Path("/tmp").resolve() / "x.json"


# ---- output locations checked at configure ----------------------------------------------------------
def test_report_dir_that_is_a_file_is_refused_before_measuring(measured: tuple[pytest.Pytester, Path]) -> None:
    p, target = measured
    (p.path / "rep").write_text("not a dir")
    r = run(p, "--nvme-ai-target", str(target), "--nvme-ai-report-dir", "rep")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*nothing was measured: report directory */rep is a file*--nvme-ai-report-dir DIR*"])
    assert not (p.path / "ran_a").exists() and private_dirs(target) == []
    assert (p.path / "rep").read_text() == "not a dir"


def test_immutable_report_dir_is_refused_before_measuring(measured: tuple[pytest.Pytester, Path],
                                                          immutable: list[Path]) -> None:
    p, target = measured
    rep = p.mkdir("rep")
    chattr("+i", rep)
    immutable.append(rep)
    r = run(p, "--nvme-ai-target", str(target), "--nvme-ai-report-dir", "rep")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*report directory */rep is not writable: operation not permitted (an immutable*"])
    assert not (p.path / "ran_a").exists() and list(rep.iterdir()) == [] and private_dirs(target) == []


def test_read_only_report_and_baseline_dirs_are_refused(measured: tuple[pytest.Pytester, Path],
                                                        ro_mount: list[Path]) -> None:
    p, target = measured
    bind_ro(ro_mount, p.path / "ro")
    r = run(p, "--nvme-ai-target", str(target), "--nvme-ai-report-dir", "ro/reports")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*report directory */ro/reports is not writable (creating it needs a file in */ro):"
                            " the filesystem is mounted read-only*"])
    r = run(p, "--nvme-ai-target", str(target), "--nvme-ai-baseline-dir", "ro", "--nvme-ai-save-baseline")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*baseline directory */ro is not writable: the filesystem is mounted read-only*"])
    # comparing against a read-only baseline dir needs no write: allowed
    assert run(p, "--nvme-ai-target", str(target), "--nvme-ai-baseline-dir", "ro").ret == 0
    assert private_dirs(target) == []


def test_immutable_baseline_file_is_refused_at_configure_and_kept(measured: tuple[pytest.Pytester, Path],
                                                                   immutable: list[Path]) -> None:
    p, target = measured
    assert run(p, "--nvme-ai-target", str(target), "--nvme-ai-save-baseline").ret == 0
    (bf,) = (p.path / "baselines").glob("*.json")
    before = bf.read_bytes()
    chattr("+i", bf)
    immutable.append(bf)
    (p.path / "ran_a").unlink()
    r = run(p, "--nvme-ai-target", str(target), "--nvme-ai-save-baseline")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*baseline file *.json cannot be replaced: operation not permitted*chattr -i*"])
    assert not (p.path / "ran_a").exists() and bf.read_bytes() == before and private_dirs(target) == []


@pytest.mark.parametrize("how", ["immutable", "read-only mount"])
def test_unwritable_target_says_why(measured: tuple[pytest.Pytester, Path], immutable: list[Path],
                                    ro_mount: list[Path], how: str) -> None:
    p, _ = measured
    target = p.mkdir("locked")
    if how == "immutable":
        chattr("+i", target)
        immutable.append(target)
        why = "operation not permitted (an immutable"
    else:
        bind_ro(ro_mount, target)
        why = "the filesystem is mounted read-only"
    r = run(p, "--nvme-ai-target", str(target))
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines([f"*target {target} is not writable: {why}*"])
    assert not (p.path / "ran_a").exists() and list(target.iterdir()) == []


def test_report_dir_failing_late_keeps_results_elsewhere_and_says_where(measured: tuple[pytest.Pytester, Path],
                                                                        immutable: list[Path]) -> None:
    p, target = measured
    rep = p.mkdir("rep")
    chattr("+i", rep)        # probe that chattr works here, then let the test body do it mid-run
    chattr("-i", rep)
    immutable.append(rep)
    p._monkeypatch.setenv("FAULT_LATE", str(rep))
    r = run(p, "--nvme-ai-target", str(target), "--nvme-ai-report-dir", "rep")
    assert r.ret == pytest.ExitCode.TESTS_FAILED   # the tests passed, but the results are not where asked
    line = next(x for x in r.stdout.lines if "could not write the results to" in x)
    kept = Path(line.rsplit("kept in ", 1)[1].split(" instead")[0])
    try:
        data = json.loads((kept / "results.json").read_text())
        assert data["run"]["status"] == "complete" and set(outcomes(data).values()) == {"passed"}
        assert (kept / "index.html").is_file()
        r.stdout.fnmatch_lines([f"*results: {kept / 'results.json'}*"])
    finally:
        subprocess.run(["rm", "-rf", str(kept)])
    assert private_dirs(target) == []


def test_baseline_failing_late_is_not_saved_and_says_how_to_save_it(measured: tuple[pytest.Pytester, Path],
                                                                     immutable: list[Path]) -> None:
    p, target = measured
    assert run(p, "--nvme-ai-target", str(target), "--nvme-ai-save-baseline").ret == 0
    (bf,) = (p.path / "baselines").glob("*.json")
    chattr("+i", bf)
    chattr("-i", bf)
    immutable.append(bf)
    before = bf.read_bytes()
    p._monkeypatch.setenv("FAULT_LATE", str(bf))
    r = run(p, "--nvme-ai-target", str(target), "--nvme-ai-save-baseline")
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    r.stdout.fnmatch_lines(["*baseline NOT saved: *.json: *Operation not permitted*nvme-ai baseline promote */results.json*"])
    assert bf.read_bytes() == before and results(p)["run"]["status"] == "complete"


# ---- two sessions on one target ---------------------------------------------------------------------
def _start_holder(p: pytest.Pytester, target: Path) -> tuple[subprocess.Popen, Path, Path]:
    p.makepyfile(test_hold=HOLDER)
    ready, go = p.path / "ready", p.path / "go"
    env = {**os.environ, "READY": str(ready), "GO": str(go)}
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_hold.py",
                             "--nvme-ai-target", str(target), "--basetemp", str(p.path / "bg-tmp"),
                             "--nvme-ai-report-dir", "bg-reports"],
                            cwd=p.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.1)
    return proc, ready, go


def test_second_session_on_a_live_target_is_refused(pytester: pytest.Pytester) -> None:
    target = pytester.mkdir("shared")
    proc, ready, go = _start_holder(pytester, target)
    try:
        (first_dir,) = private_dirs(target)
        pytester.makepyfile(test_m=MEASURED)
        r = run(pytester, "test_m.py", "--nvme-ai-target", str(target))
        assert r.ret == pytest.ExitCode.USAGE_ERROR
        r.stderr.fnmatch_lines([f"*target {target} is in use by another pytest-nvme-ai session "
                                f"(run {first_dir.removeprefix('.nvme-ai-')}, pid {proc.pid} on *"
                                "*would read as a regression*"])
        assert private_dirs(target) == [first_dir] and not (pytester.path / "ran_a").exists()
    finally:
        go.write_text("go")
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert private_dirs(target) == []


def test_dead_sessions_dir_is_a_leftover_named_under_q_and_in_the_report(pytester: pytest.Pytester) -> None:
    target = pytester.mkdir("crashed")
    proc, ready, go = _start_holder(pytester, target)
    (dead,) = private_dirs(target)
    os.kill(proc.pid, signal.SIGKILL)          # the kernel drops its flock: it is a leftover now
    proc.communicate(timeout=30)
    pytester.makepyfile(test_m=MEASURED)
    r = run(pytester, "test_m.py", "-q", "--nvme-ai-target", str(target))
    assert r.ret == 0
    r.stdout.fnmatch_lines([f"*nvme-ai WARNING @crashed: leftover private directories of runs that died without "
                            f"cleaning up: {dead} in {target}*"])
    data = results(pytester)
    assert data["targets"][0]["leftovers"] == [dead]
    assert dead in (pytester.path / "reports" / "latest" / "index.html").read_text()
    assert private_dirs(target) == [dead]      # never removed for the user: they decide


# ---- device nodes described as themselves ------------------------------------------------------------
def _node_of_root() -> Path:
    st = os.stat("/")
    real = Path(os.path.realpath(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"))
    node = Path("/dev") / real.name
    if not real.exists() or not node.exists():
        pytest.skip(f"no block device node behind / here ({real})")
    return node


def test_devices_describes_a_device_node_itself() -> None:
    from pytest_nvme_ai.measure.device import identify

    node = _node_of_root()
    r = subprocess.run([sys.executable, "-m", "pytest_nvme_ai.cli", "devices", "--json", str(node)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (entry,) = json.loads(r.stdout)
    root = identify("/")
    assert entry["device"]["kind"] == root.kind != "virtual" and entry["device"]["node"] == "block"
    whole = root.partition or root.name
    assert entry["device"]["name"] == root.name and (entry["device"]["partition"] or entry["device"]["name"]) == whole
    text = subprocess.run([sys.executable, "-m", "pytest_nvme_ai.cli", "devices", str(node)],
                          capture_output=True, text=True).stdout
    assert "devtmpfs" not in text and "no block device" not in text and root.summary().split(",")[0] in text


def test_devices_on_a_missing_path_is_one_line() -> None:
    r = subprocess.run([sys.executable, "-m", "pytest_nvme_ai.cli", "devices", "/nonexistent/x"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


# ---- tracebacks where a message belongs ---------------------------------------------------------------
@pytest.mark.parametrize("cfg,expect", [
    ({"model_type": "opt", "hidden_size": "big", "vocab_size": 50272, "num_hidden_layers": 2}, "'hidden_size' is 'big'"),
    ({"model_type": "opt", "hidden_size": 256, "vocab_size": 1.5, "num_hidden_layers": 2}, "'vocab_size' is 1.5"),
    ({"model_type": "opt", "vocab_size": 50272, "num_hidden_layers": 2}, "no 'hidden_size' / 'n_embd' / 'd_model'"),
    ("{not json", "is not valid JSON"),
    ([1, 2], "is not a JSON object"),
])
def test_bad_model_config_is_a_message(tmp_path: Path, cfg: object, expect: str) -> None:
    from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec, SpecError

    (tmp_path / "config.json").write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    with pytest.raises(SpecError, match="config.json") as exc:
        InferenceSpec(model=str(tmp_path), batch_size=1, offload="nvme").validate("cpu")
    assert expect in str(exc.value)


def test_fio_filename_with_colon_is_escaped() -> None:
    from pytest_nvme_ai.measure.fio import FioJob

    job = FioJob(name="x", bs="1M", iodepth=1, numjobs=1, size="4M", filename="/mnt/a:b/c:d.bin")
    assert ("filename", "/mnt/a\\:b/c\\:d.bin") in job.options()
    assert "filename=/mnt/a\\:b/c\\:d.bin" in job.to_jobfile()


def test_target_with_colon_runs_real_fio(pytester: pytest.Pytester) -> None:
    target = pytester.mkdir("dr:ive")
    pytester.makepyfile(test_f="""
from pytest_nvme_ai.measure.fio import FioJob

def test_read(fio, offload_target):
    res = fio.run(FioJob(name="seq", bs="1M", iodepth=4, numjobs=1, size="8M", runtime=1), repeat=1)
    assert res.io_bytes > 0
""")
    r = run(pytester, "--nvme-ai-target", str(target))
    r.assert_outcomes(passed=1)
    data = results(pytester)
    assert data["tests"][0]["metrics"]["bw"]["value"] > 0
    assert sorted(x.name for x in target.iterdir()) == [] and not list(pytester.path.glob("dr"))


def test_space_shortfall_message_names_the_margin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from pytest_nvme_ai.measure.zero_inference.runner import ZeroInferenceRunner
    from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec
    from pytest_nvme_ai.core.targets import Target

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
    runner = ZeroInferenceRunner(Target(path=tmp_path, label="t", run_id="r"), recorder=None)  # type: ignore[arg-type]
    msg = runner.space_shortfall(InferenceSpec(model="opt-1.3b", batch_size=1, offload="nvme"))
    assert msg is not None and "GiB of 16-bit swap files plus a margin of 10% + 64 MiB" in msg


def test_ctrl_c_during_tune_is_a_message_and_removes_its_file(tmp_path: Path) -> None:
    target = tmp_path / "tune-target"
    target.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "pytest_nvme_ai.cli", "tune", str(target), "--budget", "60",
                             "--file-size", "256M"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(target.glob(".nvme-ai-tune-*/tune.bin")):
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.skip(f"nvme-ai tune ended before writing its file (no aio op here?): {err.strip()[-300:]}")
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "nvme-ai tune: interrupted" in err and "Traceback" not in err
    assert list(target.iterdir()) == []


# ---- SMART: every released nvme-cli JSON format --------------------------------------------------------
RELEASES = Path(__file__).parent / "golden" / "nvme" / "releases"


@pytest.mark.parametrize("name", sorted(p.name for p in RELEASES.glob("smart-log_*.json")))
def test_smart_log_of_every_nvme_cli_release(name: str) -> None:
    from pytest_nvme_ai.measure.device import parse_smart_log

    smart = parse_smart_log(json.loads((RELEASES / name).read_text()))
    assert smart == {"temperature_c": 40, "percent_used": 1, "media_errors": 0, "critical_warning": 0,
                     "warning_temp_time": 0, "critical_comp_time": 0, "data_units_read_bytes": 48213355 * 512_000}


def test_smart_counters_in_every_spelling() -> None:
    from pytest_nvme_ai.measure.device import parse_smart_log

    big = 2**100 + 1   # beyond a double: a string keeps it exact
    for v in (7, 7.0, "7", "7.000000", " 7 ", {"value": 7}, {"Value": 7}):
        assert parse_smart_log({"media_errors": v})["media_errors"] == 7
    assert parse_smart_log({"data_units_read": str(big)})["data_units_read_bytes"] == big * 512_000
    for junk in ("n/a", 7.5, "inf", None, [], {"bits": 1}):
        assert parse_smart_log({"media_errors": junk})["media_errors"] is None
