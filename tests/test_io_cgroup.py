"""measure/io_cgroup.py: block-layer bytes per child, counted for real on this machine (root, cgroup v1 blkio).

Sizes are compared with the device's counters within a few percent; no bandwidth is asserted (the cap
test checks only that a capped read took at least most of size / cap).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_nvme_ai.core.devtruth import page_cache_leak, unflushed_writes
from pytest_nvme_ai.measure import io_cgroup
from pytest_nvme_ai.measure.io_cgroup import (PREFIX, DiskstatsAccounting, Hierarchy, IoCgroup, IoCgroupError,
                                              account, cgroup_missing_reason, disk_of, find_hierarchy, leftovers,
                                              parse_diskstats, parse_v1_bytes, parse_v2_bytes, remove_leftovers)

SIZE = 32 << 20
MIB = 1 << 20

# ---- parsers and discovery on recorded / fake files -----------------------------------------------------

V1_TEXT = """254:0 Read 67145728
254:0 Write 4096
254:0 Sync 67149824
254:0 Async 0
254:0 Discard 0
254:0 Total 67149824
259:0 Read 7
Total 67149831
"""
V2_TEXT = "259:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n254:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n"
DISKSTATS = ("  11       0 sr0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
             " 254       0 vda 5000 10 4515232 900 7000 20 5300112 8000 0 4000 9000 0 0 0 0 0 0\n")


def test_parsers() -> None:
    assert parse_v1_bytes(V1_TEXT, "254:0") == (67145728, 4096)
    assert parse_v1_bytes("Total 0\n", "254:0") == (0, 0)        # a disk with no line has moved nothing
    assert parse_v2_bytes(V2_TEXT, "254:0") == (4096, 8192)
    assert parse_v2_bytes(V2_TEXT, "8:0") == (0, 0)
    assert parse_diskstats(DISKSTATS, "254:0") == (4515232 * 512, 5300112 * 512)
    with pytest.raises(IoCgroupError, match="8:0 is not in /proc/diskstats"):
        parse_diskstats(DISKSTATS, "8:0")


def test_v2_hierarchy_used_only_where_io_is_enabled(tmp_path: Path) -> None:
    own = tmp_path / "user.slice" / "me"
    own.mkdir(parents=True)
    (tmp_path / "cgroup.controllers").write_text("cpu io memory\n")
    (own / "cgroup.subtree_control").write_text("cpu memory\n")
    with pytest.raises(IoCgroupError, match="io is not enabled.*subtree_control: cpu memory"):
        find_hierarchy("0::/user.slice/me\n", root=tmp_path)
    (own / "cgroup.subtree_control").write_text("cpu io memory\n")
    h = find_hierarchy("0::/user.slice/me\n", root=tmp_path)
    assert h == Hierarchy(2, own) and h.stat_file == "io.stat" and h.cap_file == "io.max"


def test_cap_lines_v1_and_v2() -> None:
    """0 = no limit in v1 (the write still starts the disk's counters); v2 spells no limit `max`."""
    disk = io_cgroup.Disk(259, 0, "nvme0n1")
    assert Hierarchy(1, Path("/x")).cap_line(disk, 0) == "259:0 0"
    assert Hierarchy(1, Path("/x")).cap_line(disk, 1 << 20) == "259:0 1048576"
    assert Hierarchy(2, Path("/x")).cap_line(disk, 0) == "259:0 rbps=max"
    assert Hierarchy(2, Path("/x")).cap_line(disk, 1 << 20) == "259:0 rbps=1048576"


def test_partition_resolves_to_its_disk_and_tmpfs_has_none(tmp_path: Path) -> None:
    disk = disk_of(Path.cwd())
    assert disk.dev == f"{disk.major}:{disk.minor}" and (Path("/sys/dev/block") / disk.dev).exists()
    if Path("/dev/shm").is_dir() and os.major(os.stat("/dev/shm").st_dev) == 0:
        with pytest.raises(IoCgroupError, match="no block device.*nothing written there reaches a drive"):
            disk_of("/dev/shm")


# ---- the real thing --------------------------------------------------------------------------------------

@pytest.fixture
def real(tmp_path: Path) -> Path:
    reason = cgroup_missing_reason()
    if reason:
        pytest.skip(f"no accounting cgroup here: {reason}")
    try:
        disk_of(tmp_path)
    except IoCgroupError as exc:
        pytest.skip(str(exc))
    return tmp_path


def _uncached_file(path: Path, size: int = SIZE) -> Path:
    """A file of `size` bytes on disk and not in the page cache (written, fsynced, then dropped)."""
    chunk = os.urandom(MIB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(size // MIB):
            os.write(fd, chunk)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return path


def _direct_read(wrap: list[str], data: Path) -> int:
    """Read `data` with O_DIRECT (fio if present, else dd); the bytes the application read."""
    if shutil.which("fio"):
        out = subprocess.run([*wrap, "fio", "--name=r", "--rw=read", "--bs=1M", "--direct=1", "--ioengine=psync",
                              f"--filename={data}", f"--size={data.stat().st_size}", "--output-format=json"],
                             check=True, capture_output=True, text=True).stdout
        return int(json.loads(out)["jobs"][0]["read"]["io_bytes"])
    subprocess.run([*wrap, "dd", f"if={data}", "of=/dev/null", "bs=1M", "iflag=direct", "status=none"], check=True)
    return data.stat().st_size


def _dd(wrap: list[str], *args: str) -> None:
    subprocess.run([*wrap, "dd", *args, "status=none"], check=True)


def test_direct_read_counts_the_file_and_a_cached_read_is_a_leak(real: Path) -> None:
    data = _uncached_file(real / "data")
    with account(real) as cg:
        assert isinstance(cg, IoCgroup) and cg.path.is_dir()
        app = _direct_read(cg.wrap(), data)
    direct = cg.result
    assert direct is not None and direct.isolated and direct.device == cg.disk.dev
    assert app == SIZE and direct.read_bytes == pytest.approx(SIZE, rel=0.03)
    assert page_cache_leak(app, direct) is None

    data.read_bytes()    # now it is in the page cache
    with account(real) as cg:
        _dd(cg.wrap(), f"if={data}", "of=/dev/null", "bs=1M")
    cached = cg.result
    assert cached is not None and cached.read_bytes < 0.01 * SIZE
    flag = page_cache_leak(SIZE, cached)
    assert flag is not None and not flag.fails and "page-cache leak" in flag.message


def test_buffered_read_of_an_uncached_file_counts_in_the_reader(real: Path) -> None:
    data = _uncached_file(real / "data")
    with account(real) as cg:
        subprocess.run(["dd", f"if={data}", "of=/dev/null", "bs=1M", "status=none"], check=True,
                       preexec_fn=cg.preexec)   # noqa: PLW1509 - the documented way in for a subprocess child
    assert cg.result is not None and cg.result.read_bytes == pytest.approx(SIZE, rel=0.03)


def test_writes_direct_fsynced_buffered_and_flushed(real: Path) -> None:
    mib = SIZE // MIB
    with account(real) as cg:
        _dd(cg.wrap(), "if=/dev/zero", f"of={real / 'direct'}", "bs=1M", f"count={mib}", "oflag=direct")
    assert cg.result is not None and cg.result.write_bytes == pytest.approx(SIZE, rel=0.03)

    with account(real) as cg:
        _dd(cg.wrap(), "if=/dev/zero", f"of={real / 'fsynced'}", "bs=1M", f"count={mib}", "conv=fsync")
    assert cg.result is not None and cg.result.write_bytes == pytest.approx(SIZE, rel=0.03)

    with account(real) as cg:
        _dd(cg.wrap(), "if=/dev/zero", f"of={real / 'buffered'}", "bs=1M", f"count={mib}")
        dirty = cg.read()
        cg.flush([real / "buffered"])     # fsync from inside: what is still dirty is written by us
    assert not dirty.writeback_counted and dirty.write_bytes < 0.1 * SIZE   # dirty pages, nothing written yet
    note = unflushed_writes(SIZE, dirty)
    assert note is not None and "root cgroup" in note.message
    # The kernel's flusher may have taken some pages between the write and the flush (counted to root).
    assert cg.result is not None and cg.result.write_bytes >= 0.9 * SIZE


def test_read_cap_in_the_same_cgroup(real: Path) -> None:
    data = _uncached_file(real / "data", 16 << 20)
    cap = 32 << 20
    with account(real, read_cap_bps=cap) as cg:
        assert isinstance(cg, IoCgroup) and str(cap) in (cg.path / cg.hierarchy.cap_file).read_text()
        t0 = time.monotonic()
        _dd(cg.wrap(), f"if={data}", "of=/dev/null", "bs=1M", "iflag=direct")
        took = time.monotonic() - t0
    assert took >= 0.8 * (16 << 20) / cap        # the cap held (a lower bound on time, not a bandwidth)
    assert cg.result is not None and cg.result.read_bytes == pytest.approx(16 << 20, rel=0.03)
    assert "capped" in cg.result.how


def test_diskstats_fallback_says_it_is_not_isolated(real: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _uncached_file(real / "data")
    monkeypatch.setattr(io_cgroup, "cgroup_missing_reason", lambda root=None: "no controller (test)")
    with pytest.raises(IoCgroupError, match="cannot cap reads.*no controller"):
        account(real, read_cap_bps=1 << 20)
    with account(real) as acct:
        assert isinstance(acct, DiskstatsAccounting) and acct.wrap(["x"]) == ["x"]
        _direct_read(acct.wrap(), data)
    got = acct.result
    assert got is not None and not got.isolated and "every process" in got.how and "no controller (test)" in got.how
    assert got.read_bytes >= 0.97 * SIZE          # other processes' reads can only add


def test_cleanup_on_exception_and_with_a_process_still_inside(real: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with account(real) as cg:
            path = cg.path
            raise RuntimeError("boom")
    assert not path.exists()

    with account(real) as cg:
        sleeper = subprocess.Popen(cg.wrap(["sleep", "30"]))
        for _ in range(100):
            if str(sleeper.pid) in cg.procs.read_text().split():
                break
            time.sleep(0.02)
        assert str(sleeper.pid) in cg.procs.read_text().split()
    try:
        assert not cg.path.exists()             # moved back to our cgroup, then removed
    finally:
        sleeper.kill()
        sleeper.wait()


def test_leftovers_of_a_dead_owner_are_listed_and_removed(real: Path) -> None:
    h = find_hierarchy()
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = h.parent / f"{PREFIX}{gone.pid}-deadbeef"
    stale.mkdir()
    try:
        with account(real) as cg:
            found = {lo.path: lo for lo in leftovers(h)}
            assert found[stale].owner_pid == gone.pid and not found[stale].owner_alive
            assert found[cg.path].owner_alive                 # ours: listed, never removed
            assert stale in remove_leftovers(h)
            assert not stale.exists() and cg.path.exists()
    finally:
        if stale.exists():
            stale.rmdir()


def test_kernel_writeback_is_counted_outside_the_child_under_v1(real: Path) -> None:
    """syncfs hands dirty pages to the kernel's flusher threads: under v1 the child's cgroup does not get them,
    though /proc/diskstats shows they reached the device."""
    h = find_hierarchy()
    if h.version != 1:
        pytest.skip("cgroup v2 charges writeback to the cgroup that dirtied the pages")
    data = real / "buffered"
    with DiskstatsAccounting(real, "whole-device witness") as whole:
        with account(real, hierarchy=h) as cg:
            subprocess.run(cg.wrap(["sh", "-c", f"dd if=/dev/zero of={data} bs=1M count={SIZE // MIB} status=none"
                                                f" && sync -f {data}"]), check=True)
    assert cg.result is not None and whole.result is not None
    assert cg.result.write_bytes < 0.5 * SIZE                  # journal and metadata at most
    assert whole.result.write_bytes >= 0.97 * SIZE             # the data did reach the device, counted elsewhere


def test_sigterm_removes_the_cgroup(real: Path) -> None:
    ready = real / "ready"
    code = ("import pathlib, time\nfrom pytest_nvme_ai.measure.io_cgroup import account\n"
            f"with account({str(real)!r}) as cg:\n"
            f"    pathlib.Path({str(ready)!r}).write_text(str(cg.path))\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(400):
        if ready.exists() and ready.read_text():
            break
        time.sleep(0.05)
    path = Path(ready.read_text())
    assert path.is_dir()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert not path.exists()
