"""Device identity from fake sysfs trees, nvme-cli golden outputs, and the real machine."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_nvme_ai.measure import device
from pytest_nvme_ai.cli import main as cli_main
from pytest_nvme_ai.measure.device import (DeviceIdentity, PcieLink, find_mount, identify, parse_link_speed,
                                   parse_mountinfo, parse_scheduler, parse_smart_log, pcie_gen, read_smart)

GOLDEN = Path(__file__).parent / "golden" / "nvme"
PCI = "devices/pci0000:00/0000:00:01.1/0000:01:00.0"
MODEL = "Micron_7450_MTFDKCB960TFR"


# ---- fake sysfs -----------------------------------------------------------------------------
def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _link(link: Path, target: Path) -> None:
    """Relative symlink, as sysfs has, so the tree resolves inside tmp_path."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def _dev_of(path: Path) -> str:
    st = os.stat(path)
    return f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"


def _disk(d: Path, sectors: int = 1875385008, rotational: int = 0, sched: str = "[none] mq-deadline") -> None:
    _write(d / "size", str(sectors))
    _write(d / "queue" / "rotational", str(rotational))
    _write(d / "queue" / "scheduler", sched)
    _write(d / "queue" / "logical_block_size", "512")


@dataclass(frozen=True)
class Link:
    cur: str = "16.0 GT/s PCIe"
    cur_w: str = "4"
    max: str = "16.0 GT/s PCIe"
    max_w: str = "4"


def make_nvme(sysfs: Path, data_dir: Path, link: Link = Link(), partition: bool = False,
              numa: str = "1", register_dev: bool = True) -> Path:
    """An NVMe controller nvme0 with namespace nvme0n1 (and nvme0n1p1); data_dir's st_dev maps to it."""
    pci = sysfs / PCI
    for name, value in (("current_link_speed", link.cur), ("current_link_width", link.cur_w),
                        ("max_link_speed", link.max), ("max_link_width", link.max_w), ("numa_node", numa)):
        _write(pci / name, value)
    ctrl = pci / "nvme" / "nvme0"
    _write(ctrl / "model", MODEL + "                ")  # the kernel pads these fields with spaces
    _write(ctrl / "serial", "2241E6A1B2C3        ")
    _write(ctrl / "firmware_rev", "E2MU200 ")
    _link(ctrl / "device", pci)
    _link(sysfs / "class" / "nvme" / "nvme0", ctrl)
    ns = ctrl / "nvme0n1"
    _disk(ns)
    _link(ns / "device", ctrl)
    block = ns
    if partition:
        block = ns / "nvme0n1p1"
        _write(block / "partition", "1")
        _write(block / "size", "1000000")
    _link(sysfs / "class" / "block" / block.name, block)
    if register_dev:
        _link(sysfs / "dev" / "block" / _dev_of(data_dir), block)
    return block


def make_virtio(sysfs: Path, data_dir: Path) -> Path:
    vda = sysfs / "devices/pci0000:00/0000:00:02.0/virtio1/block/vda"
    _disk(vda, sectors=536870912, rotational=1, sched="none [mq-deadline] kyber bfq")
    _write(vda.parent.parent / "vendor", "0x1af4")
    _link(sysfs / "dev" / "block" / _dev_of(data_dir), vda)
    return vda


def mountinfo(tmp: Path, fs: str, source: str, mount_point: Path | str = "/") -> Path:
    p = tmp / "mountinfo"
    p.write_text(
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        f"27 1 254:0 / {mount_point} rw,relatime - {fs} {source} rw\n"
    )
    return p


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    data.mkdir()
    return tmp_path / "sys", data


# ---- NVMe -----------------------------------------------------------------------------------
def test_nvme_gen4x4_trained_at_gen3_is_downtrained(tree: tuple[Path, Path], tmp_path: Path) -> None:
    sysfs, data = tree
    make_nvme(sysfs, data, Link(cur="8.0 GT/s PCIe", max="16.0 GT/s PCIe"))
    ident = identify(data, sysfs_root=sysfs, mountinfo=mountinfo(tmp_path, "ext4", "/dev/nvme0n1"))
    assert ident.is_nvme and ident.name == "nvme0n1" and ident.controller == "nvme0"
    assert (ident.model, ident.serial, ident.firmware) == (MODEL, "2241E6A1B2C3", "E2MU200")
    pcie = ident.to_dict()["pcie"]
    assert pcie == {"current_speed": 8.0, "current_width": 4, "max_speed": 16.0, "max_width": 4,
                    "current_gen": 3, "max_gen": 4, "downtrained": True}
    assert ident.summary() == f"NVMe {MODEL} fw E2MU200, PCIe Gen3 x4 (max Gen4 x4) DOWNTRAINED, ext4"
    # The baseline key follows the link actually trained: a Gen3 run is not compared with a Gen4 one.
    assert ident.fingerprint() == {"kind": "nvme", "model": MODEL, "firmware": "E2MU200", "pcie_gen": 3,
                                   "pcie_width": 4, "fs_type": "ext4"}
    assert ident.slug() == "nvme-micron_7450_mtfdkcb960tfr-e2mu200-gen3x4-ext4"


def test_nvme_healthy_link_with_old_kernel_speed_strings(tree: tuple[Path, Path], tmp_path: Path) -> None:
    sysfs, data = tree
    make_nvme(sysfs, data, Link(cur="16 GT/s", max="16 GT/s"))
    ident = identify(data, sysfs_root=sysfs, mountinfo=mountinfo(tmp_path, "xfs", "/dev/nvme0n1"))
    assert ident.summary() == f"NVMe {MODEL} fw E2MU200, PCIe Gen4 x4 (max Gen4 x4), xfs"
    assert ident.pcie is not None and not ident.pcie.downtrained
    assert ident.numa_node == 1 and ident.scheduler == "none" and ident.rotational is False
    assert ident.capacity_bytes == 1875385008 * 512 and ident.logical_block_size == 512


def test_fewer_lanes_than_the_slot_is_downtrained(tree: tuple[Path, Path], tmp_path: Path) -> None:
    sysfs, data = tree
    make_nvme(sysfs, data, Link(cur_w="2", max_w="4"), numa="-1")
    ident = identify(data, sysfs_root=sysfs, mountinfo=mountinfo(tmp_path, "ext4", "/dev/nvme0n1"))
    assert ident.pcie is not None and ident.pcie.downtrained
    assert "PCIe Gen4 x2 (max Gen4 x4) DOWNTRAINED" in ident.summary()
    assert ident.numa_node is None  # -1 means "no NUMA affinity", not node -1


def test_partition_reports_its_parent_disk(tree: tuple[Path, Path], tmp_path: Path) -> None:
    sysfs, data = tree
    make_nvme(sysfs, data, partition=True)
    ident = identify(data, sysfs_root=sysfs, mountinfo=mountinfo(tmp_path, "ext4", "/dev/nvme0n1p1"))
    assert (ident.name, ident.partition, ident.kind) == ("nvme0n1", "nvme0n1p1", "nvme")
    assert ident.capacity_bytes == 1875385008 * 512  # the disk's, not the partition's
    assert ident.firmware == "E2MU200"


def test_anonymous_dev_falls_back_to_the_mount_source(tree: tuple[Path, Path], tmp_path: Path) -> None:
    """btrfs reports st_dev 0:N; the mount source names the real partition."""
    sysfs, data = tree
    make_nvme(sysfs, data, partition=True, register_dev=False)
    ident = identify(data, sysfs_root=sysfs, mountinfo=mountinfo(tmp_path, "btrfs", "/dev/nvme0n1p1"))
    assert ident.is_nvme and ident.fs_type == "btrfs" and ident.partition == "nvme0n1p1"


def test_device_mapper_is_followed_to_the_disk_below(tree: tuple[Path, Path], tmp_path: Path) -> None:
    sysfs, data = tree
    part = make_nvme(sysfs, data, partition=True, register_dev=False)
    dm = sysfs / "devices/virtual/block/dm-0"
    _disk(dm)
    _link(dm / "slaves" / "nvme0n1p1", part)
    _link(sysfs / "dev" / "block" / _dev_of(data), dm)
    ident = identify(data, sysfs_root=sysfs, mountinfo=mountinfo(tmp_path, "ext4", "/dev/mapper/vg-data"))
    assert (ident.kind, ident.name, ident.stacked_on) == ("nvme", "nvme0n1", "dm-0")


# ---- not NVMe -------------------------------------------------------------------------------
def test_virtio_disk_is_reported_as_virtio(tree: tuple[Path, Path], tmp_path: Path) -> None:
    sysfs, data = tree
    make_virtio(sysfs, data)
    ident = identify(data, sysfs_root=sysfs, mountinfo=mountinfo(tmp_path, "ext4", "/dev/vda"))
    assert (ident.kind, ident.name, ident.pcie, ident.is_nvme) == ("virtio", "vda", None, False)
    assert ident.summary() == "virtio disk vda (not NVMe), ext4"
    assert ident.slug() == "virtio-vda-ext4"
    assert ident.scheduler == "mq-deadline" and ident.rotational is True
    assert read_smart(ident) == {"unavailable": "not an NVMe device (virtio)"}


def test_sata_disk_uses_its_model(tree: tuple[Path, Path], tmp_path: Path) -> None:
    sysfs, data = tree
    sda = sysfs / "devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda"
    _disk(sda, rotational=0)
    _write(sda / "device" / "model", "Samsung SSD 870 ")
    _link(sysfs / "dev" / "block" / _dev_of(data), sda)
    ident = identify(data, sysfs_root=sysfs, mountinfo=mountinfo(tmp_path, "ext4", "/dev/sda"))
    assert (ident.kind, ident.model) == ("disk", "Samsung SSD 870")
    assert ident.summary() == "disk sda Samsung SSD 870 (not NVMe), ext4"


@pytest.mark.parametrize("fs,why", [("tmpfs", "data lives in memory"), ("overlay", "overlay hides"),
                                    ("virtiofs", "host directory")])
def test_no_block_device_is_virtual_with_its_fs(tree: tuple[Path, Path], tmp_path: Path, fs: str, why: str) -> None:
    sysfs, data = tree
    sysfs.mkdir()
    ident = identify(data, sysfs_root=sysfs, mountinfo=mountinfo(tmp_path, fs, "none", mount_point=data))
    assert (ident.kind, ident.fs_type, ident.name, ident.mount_point) == ("virtual", fs, None, str(data))
    assert ident.summary().startswith(f"no block device: {fs} (not NVMe;") and why in ident.summary()
    assert ident.slug() == f"virtual-{fs}"


# ---- parsing --------------------------------------------------------------------------------
@pytest.mark.parametrize("text,speed,gen", [
    ("2.5 GT/s", 2.5, 1), ("5 GT/s", 5.0, 2), ("5.0 GT/s PCIe", 5.0, 2), ("8 GT/s", 8.0, 3),
    ("8.0 GT/s PCIe", 8.0, 3), ("16.0 GT/s PCIe", 16.0, 4), ("32.0 GT/s PCIe", 32.0, 5),
    ("64.0 GT/s PCIe", 64.0, 6), ("Unknown", None, None), ("Unknown speed", None, None), ("", None, None),
])
def test_link_speed_variants(text: str, speed: float | None, gen: int | None) -> None:
    assert parse_link_speed(text) == speed
    assert pcie_gen(parse_link_speed(text)) == gen


def test_unknown_link_fields_are_not_downtrained() -> None:
    assert not PcieLink(None, 4, 16.0, 4).downtrained
    assert PcieLink(None, 4, 16.0, 4).describe() == "PCIe Gen? x4 (max Gen4 x4)"


@pytest.mark.parametrize("text,active", [("none [mq-deadline] kyber bfq", "mq-deadline"),
                                         ("[none] mq-deadline", "none"), ("none", "none"), ("", None)])
def test_scheduler_is_the_bracketed_one(text: str, active: str | None) -> None:
    assert parse_scheduler(text) == active


def test_mountinfo_longest_prefix_and_escapes(tmp_path: Path) -> None:
    mounts = parse_mountinfo(
        "27 1 254:0 / / rw - ext4 /dev/vda rw\n"
        "40 27 259:1 / /mnt/my\\040drive rw - xfs /dev/nvme0n1p1 rw\n"
        "41 27 0:50 / /mnt/my\\040drive/cache rw - tmpfs tmpfs rw\n"
        "42 40 259:1 / /mnt/my\\040drive rw - xfs /dev/nvme0n1p1 rw,remount\n"
        "garbage line\n"
    )
    assert find_mount(Path("/mnt/my drive/models"), mounts).mount_point == "/mnt/my drive"  # type: ignore[union-attr]
    assert find_mount(Path("/mnt/my drive/models"), mounts).dev == "259:1"  # type: ignore[union-attr]
    assert find_mount(Path("/mnt/my drive/cache/x"), mounts).fs_type == "tmpfs"  # type: ignore[union-attr]
    assert find_mount(Path("/mnt/my drivex"), mounts).fs_type == "ext4"  # type: ignore[union-attr]


def test_to_dict_has_the_documented_keys(tree: tuple[Path, Path], tmp_path: Path) -> None:
    sysfs, data = tree
    make_nvme(sysfs, data)
    d = identify(data, sysfs_root=sysfs, mountinfo=mountinfo(tmp_path, "ext4", "/dev/nvme0n1")).to_dict()
    assert {"kind", "name", "model", "serial", "firmware", "pcie", "numa_node", "capacity_bytes",
            "logical_block_size", "scheduler", "rotational", "fs_type", "mount_point", "dev"} <= set(d)
    json.dumps(d)  # results.json needs it serializable as is


# ---- SMART via nvme-cli ---------------------------------------------------------------------
NVME = DeviceIdentity(kind="nvme", name="nvme0n1", controller="nvme0", model=MODEL)


def golden_runner(stdout_file: str | None = None, stderr_file: str | None = None, rc: int = 0):
    calls: list[list[str]] = []

    def run(argv: list[str]) -> tuple[int, str, str]:
        calls.append(argv)
        out = (GOLDEN / stdout_file).read_text() if stdout_file else ""
        err = (GOLDEN / stderr_file).read_text() if stderr_file else ""
        return rc, out, err

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_smart_log_golden_converts_kelvin_and_data_units() -> None:
    run = golden_runner("smart-log_micron7450_nvme-cli-2.x.json")
    smart = read_smart(NVME, runner=run)
    assert run.calls == [["nvme", "smart-log", "/dev/nvme0", "-o", "json"]]  # type: ignore[attr-defined]
    assert smart == {"temperature_c": 40, "percent_used": 1, "media_errors": 0, "critical_warning": 0,
                     "warning_temp_time": 0, "critical_comp_time": 0,
                     "data_units_read_bytes": 48213355 * 512_000}


def test_smart_log_with_warnings_and_128bit_counters() -> None:
    smart = read_smart(NVME, runner=golden_runner("smart-log_hot_warning.json"))
    assert smart["temperature_c"] == 79 and smart["critical_warning"] == 2 and smart["media_errors"] == 3
    assert smart["data_units_read_bytes"] == (2**128 - 1) * 512_000  # nvme-cli prints 128-bit counters as strings


def test_smart_log_nested_critical_warning_and_old_key() -> None:
    assert parse_smart_log({"critical_warning": {"value": 4, "available_spare": 0}, "percentage_used": 7,
                            "temperature": 300})["critical_warning"] == 4
    assert parse_smart_log({"percentage_used": 7})["percent_used"] == 7


@pytest.mark.parametrize("stderr_file,rc,expect", [
    ("smart-log_permission_denied.stderr", 1, "permission denied reading SMART from /dev/nvme0"),
    ("smart-log_not_nvme_nvme-cli-2.3.stderr", 1, "permission denied"),
    ("smart-log_no_device_nvme-cli-2.3.stderr", 1, "nvme smart-log /dev/nvme0 failed (exit 1): /dev/nvme0: No such"),
])
def test_smart_log_failures_become_unavailable(stderr_file: str, rc: int, expect: str) -> None:
    smart = read_smart(NVME, runner=golden_runner(stderr_file=stderr_file, rc=rc))
    assert list(smart) == ["unavailable"] and expect in smart["unavailable"]


def test_smart_without_nvme_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device.shutil, "which", lambda name: None)
    assert read_smart(NVME) == {"unavailable": "nvme-cli not found: apt-get install nvme-cli"}


def test_smart_garbage_output_is_unavailable() -> None:
    smart = read_smart(NVME, runner=lambda argv: (0, "not json", ""))
    assert "printed no JSON" in smart["unavailable"]


# ---- the real machine -----------------------------------------------------------------------
def test_real_machine_is_reported_honestly(tmp_path: Path) -> None:
    ident = identify(tmp_path)
    real = os.path.realpath(f"/sys/dev/block/{_dev_of(tmp_path)}")
    assert ident.dev == _dev_of(tmp_path) and ident.fs_type and ident.mount_point
    assert ("not NVMe" in ident.summary()) == (not ident.is_nvme)
    if "/virtio" in real:  # the build machines: ext4 on a virtio disk, no NVMe anywhere
        assert ident.kind == "virtio" and not ident.is_nvme and ident.pcie is None
        disk = Path(real).parent if (Path(real) / "partition").exists() else Path(real)
        assert ident.name == disk.name
        assert ident.summary().startswith(f"virtio disk {ident.name} (not NVMe)")
        assert "unavailable" in read_smart(ident)
    if not os.path.isdir("/sys/class/nvme"):
        assert not ident.is_nvme


def test_cli_devices_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["devices", "--json", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["path"] == str(tmp_path.resolve())
    assert out[0]["device"]["kind"] == identify(tmp_path).kind
    assert out[0]["slug"] == identify(tmp_path).slug()
    assert cli_main(["devices", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path.resolve()}: {identify(tmp_path).summary()}")
