"""Path -> filesystem -> block device -> NVMe controller: identity, PCIe link, SMART.

A report is only as good as its claim about what was measured, so this module
reports the device honestly: a virtio disk is "virtio", a tmpfs directory has
no block device at all, and an NVMe link that trained below its maximum is
flagged as downtrained (the seed study shows a PCIe generation is worth ~40%).
Everything is read from sysfs and mountinfo, whose roots are parameters, so
tests run against fake trees.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import subprocess
from decimal import Decimal, InvalidOperation
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from pytest_nvme_ai.core.text import device_slug

# PCIe transfer rate (GT/s) -> generation.
_GEN_BY_SPEED = {2.5: 1, 5.0: 2, 8.0: 3, 16.0: 4, 32.0: 5, 64.0: 6}
# nvme-cli converts Kelvin with 273, not 273.15; match it so our figure equals what `nvme smart-log` prints.
_KELVIN_OFFSET = 273
_DATA_UNIT_BYTES = 512_000  # NVMe "data unit" = 1000 * 512 bytes
_VIRTUAL_FS = {"tmpfs", "ramfs", "overlay", "virtiofs", "9p", "fuse", "nfs", "nfs4", "cifs", "smb3", "squashfs",
               "devtmpfs", "proc", "sysfs", "zfs", "fuse.sshfs"}

_VIRTUAL_WHY = {"tmpfs": "data lives in memory", "ramfs": "data lives in memory",
                "overlay": "overlay hides the backing device", "virtiofs": "a host directory shared into the VM",
                "9p": "a host directory shared into the VM", "nfs": "a network filesystem",
                "nfs4": "a network filesystem"}

SmartRunner = Callable[[list[str]], "tuple[int, str, str]"]


@dataclass(frozen=True)
class PcieLink:
    current_speed: float | None   # GT/s
    current_width: int | None
    max_speed: float | None
    max_width: int | None

    @property
    def current_gen(self) -> int | None:
        return pcie_gen(self.current_speed)

    @property
    def max_gen(self) -> int | None:
        return pcie_gen(self.max_speed)

    @property
    def downtrained(self) -> bool:
        """The link runs below what both ends can do: slower generation or fewer lanes."""
        gens = (self.current_gen, self.max_gen)
        widths = (self.current_width, self.max_width)
        slower = None not in gens and gens[0] < gens[1]  # type: ignore[operator]
        narrower = None not in widths and widths[0] < widths[1]  # type: ignore[operator]
        return bool(slower or narrower)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "current_gen": self.current_gen, "max_gen": self.max_gen,
                "downtrained": self.downtrained}

    def describe(self) -> str:
        def one(gen: int | None, width: int | None) -> str:
            return f"Gen{gen if gen is not None else '?'} x{width if width is not None else '?'}"

        text = f"PCIe {one(self.current_gen, self.current_width)} (max {one(self.max_gen, self.max_width)})"
        return text + (" DOWNTRAINED" if self.downtrained else "")


@dataclass(frozen=True)
class DeviceIdentity:
    kind: str                           # nvme | virtio | disk | virtual | unknown
    path: str | None = None             # the directory that was asked about
    name: str | None = None             # whole disk, e.g. nvme0n1, vda, sda
    partition: str | None = None        # e.g. nvme0n1p2 when the filesystem is on a partition
    dev: str | None = None              # maj:min of the filesystem's device
    controller: str | None = None       # nvme0
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    pcie: PcieLink | None = None
    numa_node: int | None = None
    capacity_bytes: int | None = None
    logical_block_size: int | None = None
    scheduler: str | None = None
    rotational: bool | None = None
    fs_type: str | None = None
    mount_point: str | None = None
    stacked_on: str | None = None       # dm/md device the filesystem sits on, when the disk is below it
    node: str | None = None             # "block" / "char" when a device node was asked about, not a directory

    @property
    def is_nvme(self) -> bool:
        return self.kind == "nvme"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pcie"] = self.pcie.to_dict() if self.pcie else None
        return d

    def fingerprint(self) -> dict[str, Any]:
        """What makes two runs comparable; stable across reboots (no serial, no path).

        A disk without a model string (virtio) is keyed by its name instead, so two
        different machines' "vda" share a baseline only as far as that is all we know.
        """
        return {"kind": self.kind, "model": self.model or self.name, "firmware": self.firmware,
                "pcie_gen": self.pcie.current_gen if self.pcie else None,
                "pcie_width": self.pcie.current_width if self.pcie else None, "fs_type": self.fs_type}

    def slug(self) -> str:
        """nvme-micron_7450-e2mu200-gen4x4-ext4 / virtio-vda-ext4: the default baseline name.

        core.text.device_slug owns the rule, so the baseline file name and this label can never disagree."""
        return device_slug(self.fingerprint())

    def summary(self) -> str:
        fs = self.fs_type or ("not mounted" if self.node else "unknown filesystem")
        if self.is_nvme:
            link = f", {self.pcie.describe()}" if self.pcie else ", PCIe link unknown"
            return f"NVMe {self.model or '?'} fw {self.firmware or '?'}{link}, {fs}"
        if self.kind == "virtio":
            return f"virtio disk {self.name} (not NVMe), {fs}"
        if self.kind == "disk":
            what = "rotational disk" if self.rotational else "disk"
            return f"{what} {self.name}{' ' + self.model if self.model else ''} (not NVMe), {fs}"
        if self.kind == "virtual" and self.name:
            return f"virtual block device {self.name} (not NVMe), {fs}"
        if self.kind == "virtual":
            return f"no block device: {fs} (not NVMe; {_VIRTUAL_WHY.get(fs, 'the backing device is not visible')})"
        return f"unknown device {self.dev or ''} (not NVMe), {fs}".replace("  ", " ")


# ---- parsing helpers ------------------------------------------------------------------------
def parse_link_speed(text: str | None) -> float | None:
    """'8 GT/s', '8.0 GT/s PCIe', '2.5 GT/s' -> GT/s; 'Unknown' -> None."""
    m = re.search(r"(\d+(?:\.\d+)?)\s*GT/s", text or "")
    return float(m.group(1)) if m else None


def parse_link_width(text: str | None) -> int | None:
    m = re.search(r"(\d+)", text or "")
    return int(m.group(1)) if m and int(m.group(1)) > 0 else None


def pcie_gen(speed: float | None) -> int | None:
    if speed is None:
        return None
    for gts, gen in _GEN_BY_SPEED.items():
        if abs(speed - gts) < 0.26:
            return gen
    return None


def parse_scheduler(text: str | None) -> str | None:
    """'none [mq-deadline] kyber' -> 'mq-deadline'; a single word is the active one."""
    if not text:
        return None
    m = re.search(r"\[([^\]]+)\]", text)
    return m.group(1) if m else (text.split()[0] if len(text.split()) == 1 else None)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    v = _read(path)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


# ---- mountinfo ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mount:
    mount_point: str
    fs_type: str
    source: str
    dev: str           # maj:min as mountinfo reports it


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        a, b = left.split(), right.split()
        if not sep or len(a) < 5 or len(b) < 2:
            continue
        mounts.append(Mount(mount_point=_unescape(a[4]), fs_type=b[0], source=_unescape(b[1]), dev=a[2]))
    return mounts


def find_mount(path: Path, mounts: list[Mount]) -> Mount | None:
    """The mount a path lives on: longest mount point prefix; the later of equal ones (it shadows)."""
    p = str(Path(path).resolve())
    best: Mount | None = None
    for m in mounts:
        mp = m.mount_point.rstrip("/") or "/"
        if p == mp or p.startswith(mp.rstrip("/") + "/") or mp == "/":
            if best is None or len(mp) >= len(best.mount_point.rstrip("/") or "/"):
                best = m
    return best


# ---- sysfs ----------------------------------------------------------------------------------
def _block_dir(sysfs: Path, dev: str, mount: Mount | None) -> Path | None:
    """sysfs dir of the block device behind maj:min; btrfs and friends report an anonymous 0:N,
    so fall back to the mount source (/dev/nvme0n1p2) when it names a block device."""
    link = sysfs / "dev" / "block" / dev
    if link.exists():
        return Path(os.path.realpath(link))
    if mount is not None and mount.source.startswith("/dev/"):
        cand = sysfs / "class" / "block" / Path(mount.source).name
        if cand.exists():
            return Path(os.path.realpath(cand))
    return None


def _whole_disk(block: Path, sysfs: Path) -> tuple[Path, str | None, str | None]:
    """(disk dir, partition name, stacked_on): a partition's parent; a dm/md device's first member."""
    partition = None
    if (block / "partition").exists():
        partition, block = block.name, block.parent
    stacked = None
    slaves = sorted((block / "slaves").iterdir()) if (block / "slaves").is_dir() else []
    if slaves:
        stacked = block.name
        lower = Path(os.path.realpath(slaves[0]))
        disk, _, _ = _whole_disk(lower, sysfs)
        return disk, partition, stacked
    return block, partition, stacked


def _kind(disk: Path) -> str:
    real = str(disk)
    if disk.name.startswith("nvme") or "/nvme/" in real or "/nvme-subsystem/" in real:
        return "nvme"
    if "/virtio" in real:
        return "virtio"
    if "/devices/virtual/" in real:
        return "virtual"
    return "disk"


def _nvme_controller(disk: Path, sysfs: Path) -> Path | None:
    dev_link = disk / "device"
    if (dev_link / "firmware_rev").exists():
        return Path(os.path.realpath(dev_link))
    m = re.match(r"nvme(\d+)", disk.name)  # native multipath: nvmeXnY sits under the subsystem
    if m:
        ctrl = sysfs / "class" / "nvme" / f"nvme{m.group(1)}"
        if ctrl.exists():
            return Path(os.path.realpath(ctrl))
    return None


def _pcie_link(pci: Path) -> PcieLink | None:
    fields = [_read(pci / f) for f in ("current_link_speed", "current_link_width", "max_link_speed",
                                       "max_link_width")]
    if all(f is None for f in fields):
        return None
    return PcieLink(parse_link_speed(fields[0]), parse_link_width(fields[1]),
                    parse_link_speed(fields[2]), parse_link_width(fields[3]))


def _nvme_fields(disk: Path, sysfs: Path) -> dict[str, Any]:
    ctrl = _nvme_controller(disk, sysfs)
    if ctrl is None:
        return {}
    pci = Path(os.path.realpath(ctrl / "device"))
    numa = _read_int(pci / "numa_node")
    return {"controller": ctrl.name, "model": _read(ctrl / "model"), "serial": _read(ctrl / "serial"),
            "firmware": _read(ctrl / "firmware_rev"), "pcie": _pcie_link(pci),
            "numa_node": numa if numa is not None and numa >= 0 else None}


def _disk_fields(disk: Path) -> dict[str, Any]:
    sectors = _read_int(disk / "size")
    rot = _read_int(disk / "queue" / "rotational")
    model = _read(disk / "device" / "model") or None
    return {"name": disk.name, "capacity_bytes": sectors * 512 if sectors is not None else None,
            "logical_block_size": _read_int(disk / "queue" / "logical_block_size"),
            "scheduler": parse_scheduler(_read(disk / "queue" / "scheduler")),
            "rotational": bool(rot) if rot is not None else None, "model": model}


def identify(path: str | os.PathLike[str], sysfs_root: str | os.PathLike[str] = "/sys",
             mountinfo: str | os.PathLike[str] = "/proc/self/mountinfo") -> DeviceIdentity:
    """The device behind a directory (or a device node itself), as far as sysfs tells; never raises
    for an odd filesystem. Only stat and sysfs reads: a device node is never opened."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist: pass a directory on the drive, or its device node "
                                "(e.g. /dev/nvme0n1)") from None
    if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode):
        return identify_node(path, st, Path(sysfs_root), mountinfo)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    sysfs = Path(sysfs_root)
    try:
        mounts = parse_mountinfo(Path(mountinfo).read_text(errors="replace"))
    except OSError:
        mounts = []
    mount = find_mount(Path(path), mounts)
    base: dict[str, Any] = {"path": str(Path(path).resolve()), "dev": dev,
                            "fs_type": mount.fs_type if mount else None,
                            "mount_point": mount.mount_point if mount else None}
    block = _block_dir(sysfs, dev, mount)
    if block is None:
        kind = "virtual" if os.major(st.st_dev) == 0 or (mount and mount.fs_type in _VIRTUAL_FS) else "unknown"
        return DeviceIdentity(kind=kind, **base)
    disk, partition, stacked = _whole_disk(block, sysfs)
    kind = _kind(disk)
    fields = {**_disk_fields(disk), "partition": partition, "stacked_on": stacked}
    if kind == "nvme":
        fields.update({k: v for k, v in _nvme_fields(disk, sysfs).items() if v is not None or k == "pcie"})
    return DeviceIdentity(kind=kind, **base, **fields)


def _mounts(mountinfo: str | os.PathLike[str]) -> list[Mount]:
    try:
        return parse_mountinfo(Path(mountinfo).read_text(errors="replace"))
    except OSError:
        return []


def identify_node(path: str | os.PathLike[str], st: os.stat_result, sysfs: Path,
                  mountinfo: str | os.PathLike[str] = "/proc/self/mountinfo") -> DeviceIdentity:
    """A device node described as itself: /dev/vda is the virtio disk, not the devtmpfs it lives on.

    Its st_rdev (not st_dev) names the device; /sys/dev/{block,char}/MAJ:MIN leads to it. A
    character node is described when it is an NVMe controller (/dev/nvme0)."""
    is_block = stat.S_ISBLK(st.st_mode)
    rdev = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    node = "block" if is_block else "char"
    shown = str(Path(path).resolve())
    link = sysfs / "dev" / node / rdev
    if not link.exists():
        return DeviceIdentity(kind="unknown", path=shown, dev=rdev, node=node)
    real = Path(os.path.realpath(link))
    if not is_block:
        if (real / "firmware_rev").exists() and (real.parent.name == "nvme" or real.name.startswith("nvme")):
            pci = Path(os.path.realpath(real / "device"))
            numa = _read_int(pci / "numa_node")
            return DeviceIdentity(kind="nvme", path=shown, dev=rdev, node=node, name=real.name,
                                  controller=real.name, model=_read(real / "model"), serial=_read(real / "serial"),
                                  firmware=_read(real / "firmware_rev"), pcie=_pcie_link(pci),
                                  numa_node=numa if numa is not None and numa >= 0 else None)
        return DeviceIdentity(kind="unknown", path=shown, dev=rdev, node=node, name=real.name)
    mount = next((m for m in _mounts(mountinfo) if m.dev == rdev), None)
    disk, partition, stacked = _whole_disk(real, sysfs)
    kind = _kind(disk)
    fields: dict[str, Any] = {**_disk_fields(disk), "partition": partition, "stacked_on": stacked}
    if kind == "nvme":
        fields.update({k: v for k, v in _nvme_fields(disk, sysfs).items() if v is not None or k == "pcie"})
    return DeviceIdentity(kind=kind, path=shown, dev=rdev, node=node, fs_type=mount.fs_type if mount else None,
                          mount_point=mount.mount_point if mount else None, **fields)


# ---- SMART ----------------------------------------------------------------------------------
def _default_runner(argv: list[str]) -> tuple[int, str, str]:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]} timed out after 30 s"
    return p.returncode, p.stdout, p.stderr


def _as_int(v: Any) -> int | None:
    """A counter as every nvme-cli release prints it (tests/golden/nvme/README.md lists them): a JSON
    integer (1.x, 2.0, 2.7+), a float (json-c doubles: 0.0), a string of digits (2.2-2.6, and
    128-bit values), a string with decimals ("123.000000", 2.1.x), or a decoded bitfield object
    {"value": N, ...} (-H, and always in 2.11-2.12; "Value" in 2.7)."""
    if isinstance(v, Mapping):
        v = next((x for k, x in v.items() if str(k).lower() == "value"), None)
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    try:
        d = Decimal(str(v).strip().replace(",", ""))  # exact for 128-bit strings, unlike float()
    except InvalidOperation:
        return None
    if not d.is_finite() or d != d.to_integral_value():
        return None
    return int(d)


def _field(data: Mapping[str, Any], *names: str) -> Any:
    """First of `names`, ignoring case: nvme-cli 2.7 printed "Temperature", every other release "temperature"."""
    lowered = {str(k).lower(): v for k, v in data.items()}
    return next((lowered[n] for n in names if n in lowered), None)


def parse_smart_log(data: Mapping[str, Any]) -> dict[str, Any]:
    """nvme-cli smart-log JSON (any release, 1.x to 3.0) -> SI units (temperature °C, bytes)."""
    kelvin = _as_int(_field(data, "temperature"))
    units = _as_int(_field(data, "data_units_read"))
    return {
        "temperature_c": kelvin - _KELVIN_OFFSET if kelvin is not None else None,
        "percent_used": _as_int(_field(data, "percent_used", "percentage_used")),
        "media_errors": _as_int(_field(data, "media_errors")),
        "critical_warning": _as_int(_field(data, "critical_warning")),
        "warning_temp_time": _as_int(_field(data, "warning_temp_time")),
        "critical_comp_time": _as_int(_field(data, "critical_comp_time")),
        "data_units_read_bytes": units * _DATA_UNIT_BYTES if units is not None else None,
    }


def read_smart(identity: DeviceIdentity, runner: SmartRunner | None = None) -> dict[str, Any]:
    """SMART health via nvme-cli, or {"unavailable": reason}: a missing reading never fails a run."""
    if not identity.is_nvme:
        return {"unavailable": f"not an NVMe device ({identity.kind})"}
    if not identity.controller:
        return {"unavailable": f"NVMe controller of {identity.name} not found in sysfs"}
    if runner is None:
        if shutil.which("nvme") is None:
            return {"unavailable": "nvme-cli not found: apt-get install nvme-cli"}
        runner = _default_runner
    node = f"/dev/{identity.controller}"
    rc, out, err = runner(["nvme", "smart-log", node, "-o", "json"])
    if rc != 0:
        first = (err.strip().splitlines() or ["no output"])[0]
        if "permission denied" in err.lower() or "operation not permitted" in err.lower():
            return {"unavailable": f"permission denied reading SMART from {node} (run as root): {first}"}
        return {"unavailable": f"nvme smart-log {node} failed (exit {rc}): {first}"}
    try:
        return parse_smart_log(json.loads(out))
    except (json.JSONDecodeError, AttributeError) as exc:
        return {"unavailable": f"nvme smart-log {node} printed no JSON ({exc})"}


# ---- CLI ------------------------------------------------------------------------------------
def cli_devices(args: argparse.Namespace) -> int:
    """`nvme-ai devices PATH... [--json]` (without a path, cli.py lists the drives: measure/host_drives.py)."""
    out: list[dict[str, Any]] = []
    for p in args.paths:
        ident = identify(p)   # a device node is described as itself, read-only (stat + sysfs)
        entry: dict[str, Any] = {"path": str(Path(p).resolve()), "device": ident.to_dict(),
                                 "fingerprint": ident.fingerprint(), "slug": ident.slug(), "smart": read_smart(ident)}
        out.append(entry)
        if not args.json:
            print(f"{entry['path']}: {ident.summary()}")
            print(f"  slug {ident.slug()}  dev {ident.dev}  mount {ident.mount_point or '-'}")
            smart = entry["smart"]
            print("  smart " + (smart["unavailable"] if "unavailable" in smart else
                                ", ".join(f"{k}={v}" for k, v in smart.items())))
    if args.json:
        print(json.dumps(out, indent=2))
    return 0
