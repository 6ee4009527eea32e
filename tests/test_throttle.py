"""measure/throttle.py: what the target sits on, which controller, and a real capped cgroup (as root)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_nvme_ai.measure.throttle import (PREFIX, BlockDevice, Controller, Throttle, ThrottleError,
                                             block_device_at, block_device_of, find_controller, own_cgroup,
                                             throttle_missing_reason)
from pytest_nvme_ai.measure.zero_inference.drive_speed import CapPoint, cap_refusal, drift_note, predict

V1 = "7:blkio:/\n4:memory:/x\n0::/\n"
V2 = "0::/user.slice/me\n"


def fake_disk(root: Path, dev: str, name: str, *, partition_of: str | None = None, dm: bool = False) -> None:
    """/sys/dev/block/<dev> -> /sys/devices/.../<name> (a partition lives inside its disk's directory)."""
    devices = root / "devices" / "virtual" / "block"
    node = devices / (f"{partition_of}/{name}" if partition_of else name)
    node.mkdir(parents=True)
    (node / "dev").write_text(dev + "\n")
    if partition_of:
        (node / "partition").write_text("1\n")
    if dm:
        (node / "dm").mkdir()
        (node / "dm" / "name").write_text("vg-root\n")
    (root / "dev" / "block").mkdir(parents=True, exist_ok=True)
    (root / "dev" / "block" / dev).symlink_to(node)


def test_whole_disk_partition_dm_and_overlay(tmp_path: Path) -> None:
    fake_disk(tmp_path, "259:0", "nvme0n1")
    fake_disk(tmp_path, "259:1", "nvme0n1p1", partition_of="nvme0n1")
    fake_disk(tmp_path, "253:0", "dm-0", dm=True)
    assert block_device_at(259, 0, "/x", tmp_path) == BlockDevice(259, 0, "nvme0n1")
    assert block_device_at(259, 1, "/x", tmp_path) == BlockDevice(259, 0, "nvme0n1")  # the throttle wants disks
    with pytest.raises(ThrottleError, match="device-mapper.*vg-root"):
        block_device_at(253, 0, "/x", tmp_path)
    with pytest.raises(ThrottleError, match="overlay, tmpfs"):
        block_device_at(0, 52, "/x", tmp_path)


def test_own_cgroup_and_controllers(tmp_path: Path) -> None:
    assert own_cgroup(1, V1) == "/" and own_cgroup(2, V1) == "/" and own_cgroup(2, V2) == "/user.slice/me"
    with pytest.raises(ThrottleError):
        own_cgroup(1, V2)
    (tmp_path / "blkio").mkdir()
    (tmp_path / "blkio" / "blkio.throttle.read_bps_device").write_text("")
    assert find_controller(V1, tmp_path) == Controller(1, tmp_path / "blkio")
    c = Controller(1, tmp_path)
    assert c.limit_file == "blkio.throttle.read_bps_device" and c.limit_line(BlockDevice(8, 0, "sda"), 5) == "8:0 5"
    assert Controller(2, tmp_path).limit_line(BlockDevice(8, 0, "sda"), 5) == "8:0 rbps=5"


def test_v2_without_io_enabled_is_refused_not_changed(tmp_path: Path) -> None:
    own = tmp_path / "user.slice" / "me"
    own.mkdir(parents=True)
    (tmp_path / "cgroup.controllers").write_text("cpu io memory\n")
    (own / "cgroup.subtree_control").write_text("memory\n")
    with pytest.raises(ThrottleError, match="io controller is not enabled"):
        find_controller(V2, tmp_path)
    assert (own / "cgroup.subtree_control").read_text() == "memory\n"  # nothing outside ours was written
    (own / "cgroup.subtree_control").write_text("io memory\n")
    assert find_controller(V2, tmp_path) == Controller(2, own)


def test_cap_check_refuses_with_both_figures() -> None:
    assert cap_refusal(100e6, 106e6) is None
    why = cap_refusal(100e6, 80e6) or ""
    assert "80.0 MB/s" in why and "100.0 MB/s" in why and "refused" in why
    assert cap_refusal(100e6, 120e6, fraction=0.5) and cap_refusal(100e6, 120e6, fraction=1.0)  # the cap leaked


def test_the_1x_point_checks_only_that_the_cap_held() -> None:
    """At 1× the cap is the drive's own speed just measured: reading 11% less is the drive drifting (seen on
    the build machine: 1734.7 against 1939.4 MB/s), not a failed cap, so the point stands at fio's figure."""
    assert cap_refusal(1939.4e6, 1734.7e6, fraction=1.0) is None
    assert cap_refusal(1939.4e6, 1734.7e6, fraction=0.5) is not None
    assert drift_note(1939.4e6, 1734.7e6, 1.0) and "-11%" in (drift_note(1939.4e6, 1734.7e6, 1.0) or "")
    assert drift_note(1939.4e6, 1900e6, 1.0) is None and drift_note(1939.4e6, 1734.7e6, 0.5) is None
    assert "not what it was" in (cap_refusal(1939.4e6, 900e6, fraction=1.0) or "")   # more than 50% below


def test_prediction_is_out_of_sample() -> None:
    # uncapped: 250 MB per step at 1.25 GB/s (t_io 0.2 s), t_compute 0.15 s, step 0.25 s -> overlap 2/3
    top = CapPoint(1.0, 1.25e9, 1.25e9, decode_throughput=(4.0,), bytes_per_step=250e6, t_step=0.25)
    half = CapPoint(0.5, 0.625e9, 0.625e9, decode_throughput=(2.2,), bytes_per_step=250e6, t_step=0.45)
    refused = CapPoint(0.25, 0.3125e9, 0.2e9, refused="fio read 200 MB/s against 312 MB/s")
    sweep = predict([top, half, refused], t_compute=0.15, tokens_per_step=1)
    assert sweep.overlap == pytest.approx(2 / 3)
    got = {p.fraction: p for p in sweep.points}
    assert got[0.5].predicted == pytest.approx(1 / 0.45)    # 0.4 + 0.15 - 2/3 * 0.15
    assert got[0.5].error == pytest.approx((1 / 0.45 - 2.2) / 2.2)
    assert got[0.25].predicted is None and sweep.accepted == [got[1.0], got[0.5]]
    # hidden model: max(t_io', uncapped step) = max(0.4, 0.25) -> 2.5 tok/s
    assert got[0.5].predicted_hidden == pytest.approx(2.5) and sweep.errors_hidden() == [pytest.approx(0.3 / 2.2)]
    assert sweep.sensitivity_measured() == pytest.approx(4.0 / 2.2 - 1)
    # ×2 above the drive: t_io 0.1 -> step 0.1 + 0.15 - 2/3 * 0.1 = 0.1833 vs 0.25: +36%
    assert sweep.sensitivity_predicted_above() == pytest.approx(0.25 / (0.25 - 0.2 / 3) - 1)
    assert predict([half], 0.15, 1).reason  # no uncapped point: nothing to predict from


def test_measured_sensitivity_is_normalised_to_one_doubling_of_the_measured_bandwidths() -> None:
    """The drive drifted between the points: cap ½ read at 0.5 GB/s but cap 1 at 1.414 GB/s (2^1.5 apart)."""
    top = CapPoint(1.0, 1.414e9, 2 ** 1.5 * 0.5e9, decode_throughput=(4.0,), bytes_per_step=250e6, t_step=0.25)
    half = CapPoint(0.5, 0.5e9, 0.5e9, decode_throughput=(2.0,), bytes_per_step=250e6, t_step=0.5)
    sweep = predict([top, half], t_compute=0.15, tokens_per_step=1)
    assert sweep.sensitivity_measured() == pytest.approx(2.0 ** (1 / 1.5) - 1)   # ×2 over 1.5 doublings
    far = CapPoint(1.0, 2e9, 2.0e9, decode_throughput=(4.0,), bytes_per_step=250e6, t_step=0.25)
    assert predict([far, half], 0.15, 1).sensitivity_measured() is None         # 4× apart: not a doubling


# ---- the real throttle (root, cgroup v1 blkio or v2 io, a block device under tmp) ------------------

@pytest.fixture
def real(tmp_path: Path) -> BlockDevice:
    reason = throttle_missing_reason(tmp_path)
    if reason:
        pytest.skip(f"block throttle not available here: {reason}")
    return block_device_of(tmp_path)


def test_wrapped_process_joins_the_cgroup_and_the_cgroup_is_removed(real: BlockDevice) -> None:
    with Throttle(real, 50 << 20) as th:
        assert th.path.is_dir() and th.path.name.startswith(PREFIX)
        limit = (th.path / th.controller.limit_file).read_text()
        assert real.dev in limit and str(50 << 20) in limit
        out = subprocess.run(th.wrap(["cat", "/proc/self/cgroup"]), capture_output=True, text=True, check=True).stdout
        assert "/" + th.path.name in out   # joined before exec: the command itself runs inside
    assert not th.path.exists()


def test_fio_inside_the_cgroup_reads_at_the_cap(real: BlockDevice, tmp_path: Path) -> None:
    from pytest_nvme_ai.measure.fio.runner import fio_missing_reason

    if fio_missing_reason():
        pytest.skip(fio_missing_reason() or "")
    data = tmp_path / "data"
    subprocess.run(["fio", "--name=w", "--rw=write", "--bs=1M", "--size=64M", f"--filename={data}", "--direct=1"],
                   check=True, capture_output=True)

    def read(wrap: list[str]) -> float:
        out = subprocess.run([*wrap, "fio", "--name=r", "--rw=read", "--bs=1M", "--iodepth=16", "--ioengine=libaio",
                              "--direct=1", f"--filename={data}", "--runtime=1", "--time_based",
                              "--output-format=json"], check=True, capture_output=True, text=True).stdout
        return float(json.loads(out)["jobs"][0]["read"]["bw_bytes"])

    cap = 40 << 20
    with Throttle(real, cap) as th:
        capped = read(th.wrap())
    assert capped == pytest.approx(cap, rel=0.15)
    assert read([]) > 2 * cap  # outside the cgroup nothing is capped (a virtual disk reads GB/s)


def test_sigterm_removes_the_cgroup(real: BlockDevice, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = (f"import time, pathlib\nfrom pytest_nvme_ai.measure.throttle import Throttle, BlockDevice\n"
            f"with Throttle(BlockDevice({real.major}, {real.minor}, {real.name!r}), 1 << 25) as th:\n"
            f"    pathlib.Path({str(ready)!r}).write_text(str(th.path))\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ})
    for _ in range(200):
        if ready.exists() and ready.read_text():
            break
        time.sleep(0.05)
    path = Path(ready.read_text())
    assert path.is_dir()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert not path.exists()
