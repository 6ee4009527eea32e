"""The third fault sweep's unclear cases that live in fio, the history store and the space checks
(issue 22, docs/reliability.md): each ends quickly and says what happened.

- fio killed by someone else (`kill -9`): its job processes, orphans in sessions of their own, used to
  keep the output pipe open until the test's timeout (900 s on quick); now the test fails within seconds
  with "fio was killed by SIGKILL" and no fio is left.
- A locked SQLite history store: opening it says that it waits, for what and how long, then refuses
  with what to do.
- A full report directory: fio's JSON output cut short names the full file system.
- The space skip names its margin.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from pytest_nvme_ai.measure.fio.runner import FioError, FioJob, find_fio, run_fio

needs_fio = pytest.mark.skipif(find_fio() is None, reason="fio not installed: apt-get install fio")


def _fio_processes_in(directory: str) -> list[str]:
    found = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")[0]
            cwd = os.readlink(d / "cwd")
        except OSError:
            continue
        if cmd.endswith(b"fio") and cwd.startswith(directory):
            found.append(d.name)
    return found


# ---- fio killed: no hang -------------------------------------------------------------------------
@needs_fio
def test_fio_killed_by_someone_else_fails_the_test_within_seconds(pytester: pytest.Pytester) -> None:
    target = pytester.mkdir("fio-drive")
    pytester.makepyfile(test_f="""
import os, signal, threading, time, pathlib
from pytest_nvme_ai.measure.fio import FioJob

def _kill_fio_leader():
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for d in pathlib.Path("/proc").iterdir():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\\0")
                stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # fio's main process is pytest's child; its job processes are fio's children
            if cmd[0].endswith(b"fio") and int(stat[1]) == os.getpid() and b"longread" in b" ".join(cmd):
                time.sleep(1.0)   # let the job processes start
                os.kill(int(d.name), signal.SIGKILL)
                return
        time.sleep(0.05)

def test_long_read(fio, offload_target):
    fio.run(FioJob(name="layout0", bs="1M", iodepth=4, size="16M", runtime=1, direct=False), repeat=1)
    threading.Thread(target=_kill_fio_leader, daemon=True).start()
    fio.run(FioJob(name="longread", bs="4K", iodepth=4, numjobs=2, size="16M", runtime=600, time_based=True,
                   rate="1M", direct=False), repeat=1)

def test_after(nvme_ai, offload_target):
    nvme_ai.record_samples("bw", [1, 1, 1])
""")
    t0 = time.monotonic()
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--nvme-ai-target", str(target))
    took = time.monotonic() - t0
    assert took < 60, f"the run took {took:.0f} s: it waited for fio's orphaned job processes"
    r.assert_outcomes(passed=1, failed=1)
    r.stdout.fnmatch_lines(["*fio was killed by SIGKILL (signal 9) running job file*longread*the suite did not stop it*"])
    assert _fio_processes_in(str(target)) == []
    assert list(target.iterdir()) == []


# ---- a locked SQLite store -----------------------------------------------------------------------
LOCKER = """
import sqlite3, sys, time, pathlib
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN EXCLUSIVE")
pathlib.Path(sys.argv[2]).write_text("locked")
time.sleep(float(sys.argv[3]))
c.execute("COMMIT")
"""


@pytest.fixture
def locked_store(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes], Path]]:
    db = tmp_path / "history.sqlite"
    sqlite3.connect(db).close()
    ready = tmp_path / "ready"
    procs: list[subprocess.Popen[bytes]] = []

    def start(hold_s: float) -> subprocess.Popen[bytes]:
        p = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), str(ready), str(hold_s)])
        procs.append(p)
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the locking process did not start"
        return p

    yield db, start, ready  # type: ignore[misc]
    for p in procs:
        p.kill()
        p.wait()


def test_locked_sqlite_store_says_it_waits_then_what_to_do(locked_store: tuple, monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from pytest_nvme_ai.history import HistoryError, open_store
    from pytest_nvme_ai.history import engine as store_mod

    db, start, _ = locked_store
    monkeypatch.setattr(store_mod, "SQLITE_BUSY_TIMEOUT_S", 2)
    monkeypatch.setattr(store_mod, "SQLITE_QUIET_WAIT_S", 0.3)
    start(60)
    heard: list[str] = []
    t0 = time.monotonic()
    with pytest.raises(HistoryError) as exc:
        open_store(str(db), notify=heard.append)
    assert time.monotonic() - t0 < 20
    assert len(heard) == 1 and "is locked by another process" in heard[0] and "waiting up to 2 s" in heard[0]
    assert str(db) in heard[0]
    msg = str(exc.value)
    assert "stayed locked for 2.3 s" in msg and "--nvme-ai-history none" in msg and f"fuser {db}" in msg


def test_a_lock_released_during_the_wait_opens_the_store(locked_store: tuple, monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    from pytest_nvme_ai.history import open_store
    from pytest_nvme_ai.history import engine as store_mod

    db, start, _ = locked_store
    monkeypatch.setattr(store_mod, "SQLITE_BUSY_TIMEOUT_S", 30)
    monkeypatch.setattr(store_mod, "SQLITE_QUIET_WAIT_S", 0.3)
    start(2)
    heard: list[str] = []
    store = open_store(str(db), notify=heard.append)
    try:
        assert store.count_runs() == 0
    finally:
        store.close()
    assert len(heard) == 1 and "waiting up to 30 s" in heard[0]


def test_locked_store_at_configure_is_announced(pytester: pytest.Pytester, locked_store: tuple) -> None:
    """The real 120 s wait is too long for a test: the announcement is checked, then the lock released."""
    db, start, _ = locked_store
    proc = start(15)   # outlasts pytest's start-up, so configure meets the lock
    pytester.makepyfile(test_demo="def test_m(nvme_ai, offload_target):\n    nvme_ai.record_samples('bw', [1, 1, 1])\n")
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--nvme-ai-history", str(db))
    proc.wait()
    r.assert_outcomes(passed=1)
    r.stderr.fnmatch_lines([f"*the history store sqlite:///{db} is locked by another process*waiting up to 120 s*"])


# ---- a full report directory -----------------------------------------------------------------------
@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (root with CAP_SYS_ADMIN), unmounted afterwards."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@needs_fio
def test_full_report_directory_is_named_when_fio_output_is_cut(tmp_path: Path, tiny_fs: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(4 << 20))
    # 15 of the 16 pages: the job file still fits in the last one, fio's JSON output does not.
    (tiny_fs / "filler").write_bytes(b"\0" * (60 << 10))
    job = FioJob(name="cut", bs="1M", iodepth=1, size="4M", direct=False, filename=str(data))
    with pytest.raises(FioError) as exc:
        run_fio(job, tmp_path, tiny_fs, timeout=60)
    msg = str(exc.value)
    assert f"the file system holding {tiny_fs} is full" in msg and "--nvme-ai-report-dir" in msg, msg


# ---- the space skip names its margin ------------------------------------------------------------
def test_space_skip_names_the_margin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from pytest_nvme_ai.core.targets import Target
    from pytest_nvme_ai.measure.fio.runner import FioRunner

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 30, 1 << 30, 300 << 20))
    rec = SimpleNamespace(profile=SimpleNamespace(name="quick"))
    runner = FioRunner(Target(path=tmp_path, label="t", run_id="r"), recorder=rec)  # type: ignore[arg-type]
    with pytest.raises(pytest.skip.Exception) as exc:
        runner._check_space(256 << 20)
    msg = str(exc.value)
    assert "lays out a 0.25 GiB file plus a margin of 64 MiB (needs 0.31 GiB)" in msg and "0.29 GiB free" in msg
