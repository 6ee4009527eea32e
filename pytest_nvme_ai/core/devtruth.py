"""What reached the drive, against what the application asked for: the record and the flags.

`DeviceBytes` is what `measure.io_cgroup` measures for one child: block-layer bytes read and written on
the target's device. The flags compare it with the *application's* bytes, i.e. what the workload asked
of the target (bytes it read from / wrote to its files: swap-file sizes x loops, `rchar`/`wchar`-like
logical counts, fio's io_bytes). Do not pass `/proc/<pid>/io` `read_bytes` as the application's bytes:
the kernel fills it at the same layer the device counters come from, so a read served from the page
cache is zero there too and a leak would hide.

- **Page-cache leak**: the device read under `LEAK_SHARE` (90%) of what the application read. The
  page cache (or a tmpfs, or a short read) served the rest, so a bandwidth computed from the
  application's bytes is not the drive's.
- **Dead tier**: offload to the target is configured, yet (almost) nothing reached the device; see
  `dead_tier` for the threshold and why. A dead tier fails the test; a leak is flagged only.
- **Unflushed writes**: the device wrote under 90% of what the application wrote, and the accounting
  could not see buffered writeback (cgroup v1 counts the kernel's writeback to the root cgroup). A
  note, not a failure: the bytes may still reach the drive after the child ends.

A record that is not isolated (`/proc/diskstats`: every process on the device) only over-counts, so a
flag raised from it is still true, but its absence proves nothing; the messages say which it was.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

LEAK_SHARE = 0.90
# Dead tier: the device saw under 1% of what the application moved through the tier. A working tier moves
# close to 100% (O_DIRECT swap files) and at least the share the page cache does not hold; a dead one moves
# only filesystem metadata (measured here: +8 KiB of journal for a 64 MiB fsync'd write, 0.012%). 1% sits
# two orders of magnitude above that chatter and two below a working tier.
DEAD_SHARE = 0.01
# When the application's bytes are unknown (or tiny), the absolute floor: 1 MiB is above a run's metadata
# chatter and below the smallest file a tier streams (opt-tiny's 1 MB swap file is the smallest seen).
DEAD_FLOOR_BYTES = 1 << 20
# Runs that moved less than this through the tier are too small to call dead.
DEAD_MIN_APP_BYTES = 1 << 20

_DEV = re.compile(r"^\d+:\d+$")


@dataclass(frozen=True)
class DeviceBytes:
    """Block-layer bytes on one device during one child's run."""

    read_bytes: int
    write_bytes: int
    device: str               # "MAJ:MIN" of the whole disk behind the target
    isolated: bool            # True: only the child's own cgroup; False: every process on the device
    how: str                  # where the figures came from, in words (cgroup, file, what is not counted)
    writeback_counted: bool   # False: buffered writes flushed later by the kernel are not in write_bytes

    def __post_init__(self) -> None:
        if self.read_bytes < 0 or self.write_bytes < 0:
            raise ValueError(f"device bytes cannot be negative (read {self.read_bytes}, write {self.write_bytes}); "
                             "a counter went backwards: was the cgroup or the device replaced during the run?")
        if not _DEV.match(self.device):
            raise ValueError(f"device {self.device!r} is not MAJ:MIN (e.g. 259:0)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Flag:
    """A finding about device truth, for the test record, the report and results.json."""

    kind: str       # "page_cache_leak" | "dead_tier" | "unflushed_writes"
    message: str
    fails: bool     # True: the test fails (dead tier); False: flagged only

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _scope(dev: DeviceBytes) -> str:
    return ("its own cgroup" if dev.isolated else
            "the whole device, every process included (no cgroup could isolate the child)")


def _check_app(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name} {value} is negative: pass the bytes the application moved (0 or more)")


def device_ratio(app_bytes: int, device_bytes: int) -> float | None:
    """Device bytes per application byte (1.0: everything reached the drive); None when the app moved none."""
    _check_app("application bytes", app_bytes)
    _check_app("device bytes", device_bytes)
    return device_bytes / app_bytes if app_bytes else None


def page_cache_leak(app_read_bytes: int, dev: DeviceBytes, share: float = LEAK_SHARE) -> Flag | None:
    """Flag when the device read under `share` of what the application read from the target."""
    _check_app("application read bytes", app_read_bytes)
    if not 0 < share <= 1:
        raise ValueError(f"leak share {share} must be in (0, 1]")
    if app_read_bytes == 0 or dev.read_bytes >= share * app_read_bytes:
        return None
    got = dev.read_bytes / app_read_bytes
    return Flag("page_cache_leak",
                f"page-cache leak: the application read {_mib(app_read_bytes)} from the target but the device "
                f"{dev.device} read {_mib(dev.read_bytes)} ({got:.0%}, under {share:.0%}) in {_scope(dev)}; "
                "the rest came from the page cache (or a short read), so a bandwidth from the application's "
                f"bytes is not the drive's [{dev.how}]", fails=False)


def dead_tier(configured: str, dev: DeviceBytes, app_bytes: int | None = None) -> Flag | None:
    """Flag an offload tier that is configured but that (almost) nothing reached.

    `configured` says what was set up, in words (e.g. "ZeRO-Inference offload_param nvme at /mnt/nvme0/swap").
    `app_bytes` is what the application moved through the tier (read + write); None when unknown.
    Dead when the device's read + write is under `DEAD_SHARE` of `app_bytes` (runs under
    `DEAD_MIN_APP_BYTES` are not judged), or, without `app_bytes`, under `DEAD_FLOOR_BYTES`.
    """
    if not configured.strip():
        raise ValueError("say what was configured (the tier and its path): the message must name it")
    total = dev.read_bytes + dev.write_bytes
    if app_bytes is not None:
        _check_app("application bytes", app_bytes)
        if app_bytes < DEAD_MIN_APP_BYTES:
            return None
        limit = DEAD_SHARE * app_bytes
        rule = f"under {DEAD_SHARE:.0%} of the {_mib(app_bytes)} the application moved through it"
    else:
        limit = DEAD_FLOOR_BYTES
        rule = f"under {_mib(DEAD_FLOOR_BYTES)} (the application's bytes were not known)"
    if total >= limit:
        return None
    return Flag("dead_tier",
                f"dead tier: {configured} was configured, but the device {dev.device} read {_mib(dev.read_bytes)} "
                f"and wrote {_mib(dev.write_bytes)} in {_scope(dev)}, {rule}: the tier is served from memory "
                f"(page cache, tmpfs) or was never used [{dev.how}]", fails=True)


def unflushed_writes(app_write_bytes: int, dev: DeviceBytes, share: float = LEAK_SHARE) -> Flag | None:
    """Note writes the accounting could not see reach the device (buffered, flushed by the kernel later)."""
    _check_app("application write bytes", app_write_bytes)
    if app_write_bytes == 0 or dev.writeback_counted or dev.write_bytes >= share * app_write_bytes:
        return None
    return Flag("unflushed_writes",
                f"the application wrote {_mib(app_write_bytes)} but {_mib(dev.write_bytes)} reached the device "
                f"{dev.device} from {_scope(dev)}: buffered writes are written back later by the kernel's "
                "threads, which this accounting counts elsewhere (cgroup v1: the root cgroup); write with "
                f"O_DIRECT or fsync inside the child to count them [{dev.how}]", fails=False)


def tier_without_device(configured: str, reason: str) -> Flag:
    """A tier whose path has no block device at all (tmpfs, overlay): dead before anything is measured."""
    if not configured.strip():
        raise ValueError("say what was configured (the tier and its path): the message must name it")
    return Flag("dead_tier", f"dead tier: {configured} was configured on a path with no block device, so nothing "
                f"of it can reach a drive: {reason}", fails=True)
