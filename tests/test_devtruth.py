"""core/devtruth.py: the record and the flags; a real dead tier (a swap folder served from the page cache)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pytest_nvme_ai.core.devtruth import (DEAD_FLOOR_BYTES, DEAD_MIN_APP_BYTES, DeviceBytes, dead_tier, device_ratio,
                                          page_cache_leak, tier_without_device, unflushed_writes)

MIB = 1 << 20


def dev(read: int = 0, write: int = 0, *, isolated: bool = True, counted: bool = False) -> DeviceBytes:
    return DeviceBytes(read, write, "259:0", isolated, "test record", counted)


def test_record_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="cannot be negative.*counter went backwards"):
        dev(-1)
    with pytest.raises(ValueError, match="not MAJ:MIN"):
        DeviceBytes(0, 0, "nvme0n1", True, "x", True)
    assert dev(1, 2).to_dict() == {"read_bytes": 1, "write_bytes": 2, "device": "259:0", "isolated": True,
                                   "how": "test record", "writeback_counted": False}


def test_ratio() -> None:
    assert device_ratio(100, 50) == 0.5 and device_ratio(0, 10) is None
    with pytest.raises(ValueError, match="negative"):
        device_ratio(-1, 0)


def test_leak_below_ninety_percent_only() -> None:
    assert page_cache_leak(100 * MIB, dev(90 * MIB)) is None
    assert page_cache_leak(0, dev(0)) is None                     # nothing read: nothing to judge
    flag = page_cache_leak(100 * MIB, dev(89 * MIB))
    assert flag is not None and flag.kind == "page_cache_leak" and not flag.fails
    assert "100.0 MiB" in flag.message and "89.0 MiB (89%" in flag.message and "259:0" in flag.message
    assert "its own cgroup" in flag.message and "test record" in flag.message
    shared = page_cache_leak(100 * MIB, dev(10 * MIB, isolated=False))
    assert shared is not None and "every process included" in shared.message
    with pytest.raises(ValueError, match="share"):
        page_cache_leak(1, dev(), share=0)


def test_dead_tier_threshold_relative_and_absolute() -> None:
    what = "ZeRO-Inference offload_param nvme at /mnt/nvme0/swap"
    assert dead_tier(what, dev(2 * MIB), app_bytes=100 * MIB) is None              # 2%: alive (a leak, maybe)
    flag = dead_tier(what, dev(512 * 1024, 8192), app_bytes=100 * MIB)             # 0.5%: dead
    assert flag is not None and flag.fails and flag.kind == "dead_tier"
    assert what in flag.message and "read 0.5 MiB" in flag.message and "under 1% of the 100.0 MiB" in flag.message
    assert dead_tier(what, dev(0), app_bytes=DEAD_MIN_APP_BYTES - 1) is None        # too small to judge
    assert dead_tier(what, dev(DEAD_FLOOR_BYTES)) is None                           # app bytes unknown: the floor
    unknown = dead_tier(what, dev(4096))
    assert unknown is not None and "not known" in unknown.message
    with pytest.raises(ValueError, match="say what was configured"):
        dead_tier(" ", dev())


def test_unflushed_writes_only_where_writeback_is_not_counted() -> None:
    assert unflushed_writes(100 * MIB, dev(write=0, counted=True)) is None
    assert unflushed_writes(100 * MIB, dev(write=95 * MIB)) is None
    note = unflushed_writes(100 * MIB, dev(write=0))
    assert note is not None and not note.fails and "O_DIRECT or fsync" in note.message


def test_tier_on_tmpfs_is_dead_by_construction() -> None:
    flag = tier_without_device("KV offload to /dev/shm/kv", "tmpfs, device 0:25")
    assert flag.fails and "/dev/shm/kv" in flag.message and "no block device" in flag.message


def test_swap_folder_served_from_the_page_cache_is_a_dead_tier(tmp_path: Path) -> None:
    """A 'tier' whose files were just written (buffered, so still in memory) and read back buffered:
    the device sees nothing in the reader's cgroup, and the flag says so."""
    from pytest_nvme_ai.measure.io_cgroup import IoCgroupError, account, cgroup_missing_reason, disk_of

    reason = cgroup_missing_reason()
    if reason:
        pytest.skip(f"no accounting cgroup here: {reason}")
    try:
        disk_of(tmp_path)
    except IoCgroupError as exc:
        pytest.skip(str(exc))
    swap = tmp_path / "swap"
    swap.mkdir()
    for i in range(4):
        (swap / f"param_{i}.swp").write_bytes(os.urandom(8 * MIB))
    with account(tmp_path) as cg:
        subprocess.run(cg.wrap(["sh", "-c", f"cat {swap}/*.swp > /dev/null"]), check=True)
    got = cg.result
    assert got is not None and got.isolated
    flag = dead_tier(f"swap folder {swap}", got, app_bytes=32 * MIB)
    assert flag is not None and flag.fails and str(swap) in flag.message
    leak = page_cache_leak(32 * MIB, got)
    assert leak is not None
