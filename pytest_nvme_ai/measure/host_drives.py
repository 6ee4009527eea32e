"""The host's drives, for `nvme-ai devices` without a path: every whole disk in /sys/block, described by
the same sysfs reading as a target directory (measure/device.py), with where it is mounted.

Loop, RAM and zram disks and device-mapper/md devices (all under /sys/devices/virtual) are no drive to
qualify and are left out; a filesystem on a dm or md device is attributed to the disks below it (their
`holders`), as identify() follows a target directory down to its disk. Only sysfs and mountinfo are read:
nothing is opened, so it runs without root.
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_nvme_ai.core.metrics import format_value
from pytest_nvme_ai.measure.device import (DeviceIdentity, Mount, _disk_fields, _kind, _mounts, _nvme_fields,
                                           _read)

LEFT_OUT = "loop, RAM, zram, device-mapper and md devices are left out"


@dataclass(frozen=True)
class HostDrive:
    identity: DeviceIdentity
    mounts: tuple[Mount, ...]     # filesystems on the disk, its partitions, or a dm/md device above them

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.identity.name, "device": self.identity.to_dict(),
                "fingerprint": self.identity.fingerprint(), "slug": self.identity.slug(),
                "mounts": [{"mount_point": m.mount_point, "fs_type": m.fs_type, "source": m.source}
                           for m in self.mounts]}


def _children(disk: Path) -> list[Path]:
    """The disk and its partitions."""
    try:
        parts = [p for p in disk.iterdir() if (p / "partition").exists()]
    except OSError:
        parts = []
    return [disk, *sorted(parts)]


def _devs(disk: Path, sysfs: Path) -> set[str]:
    """maj:min of the disk, its partitions and the dm/md devices stacked on any of them (one level)."""
    devs: set[str] = set()
    for node in _children(disk):
        dev = _read(node / "dev")
        if dev:
            devs.add(dev)
        holders = node / "holders"
        for h in sorted(holders.iterdir()) if holders.is_dir() else []:
            dev = _read(Path(os.path.realpath(h)) / "dev") or _read(sysfs / "class" / "block" / h.name / "dev")
            if dev:
                devs.add(dev)
    return devs


def list_drives(sysfs_root: str | os.PathLike[str] = "/sys",
                mountinfo: str | os.PathLike[str] = "/proc/self/mountinfo") -> list[HostDrive]:
    sysfs = Path(sysfs_root)
    block = sysfs / "block"
    if not block.is_dir():
        return []
    mounts = _mounts(mountinfo)
    drives = []
    for entry in sorted(block.iterdir()):
        disk = Path(os.path.realpath(entry))
        kind = _kind(disk)
        if kind == "virtual":
            continue
        fields: dict[str, Any] = _disk_fields(disk)
        if kind == "nvme":
            fields.update({k: v for k, v in _nvme_fields(disk, sysfs).items() if v is not None or k == "pcie"})
        devs = _devs(disk, sysfs)
        mine = tuple(m for m in mounts if m.dev in devs)
        first = mine[0] if mine else None
        ident = DeviceIdentity(kind=kind, path=f"/dev/{disk.name}", dev=_read(disk / "dev"), node="block",
                               fs_type=first.fs_type if first else None,
                               mount_point=first.mount_point if first else None, **fields)
        drives.append(HostDrive(ident, mine))
    return drives


def describe(drives: list[HostDrive]) -> list[str]:
    """Two lines a drive: what it is, then size, slug and mounts."""
    lines = []
    for d in drives:
        i = d.identity
        size = format_value(float(i.capacity_bytes), "B") if i.capacity_bytes else "size unknown"
        where = ", ".join(f"{m.mount_point} ({m.fs_type}, {Path(m.source).name})" for m in d.mounts[:4])
        if len(d.mounts) > 4:
            where += f" and {len(d.mounts) - 4} more"
        lines.append(f"{i.name}: {i.summary()}")
        lines.append(f"  {size}  slug {i.slug()}  dev {i.dev or '-'}  "
                     + (f"mounted at {where}" if where else "not mounted"))
    return lines


def cli_list_drives(args: argparse.Namespace) -> int:
    """`nvme-ai devices [--json]` without a path."""
    drives = list_drives()
    if args.json:
        print(json.dumps([d.to_dict() for d in drives], indent=2))
        return 0
    for line in describe(drives):
        print(line)
    print(f"{len(drives)} drive(s) in /sys/block ({LEFT_OUT}). SMART and the drive behind a directory: "
          "nvme-ai devices DIR")
    return 0
