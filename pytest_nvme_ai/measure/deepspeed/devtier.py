"""Pytest side: what reached the drive for one offloading run, judged with core.devtruth (any workload).

`tier_check` turns a child's per-loop device bytes (devcount.py) and what the application asked of the
tier into a `TierCheck`: the summed `DeviceBytes`, the flags (page-cache leak, dead tier, unflushed
writes), and, where nothing could be counted, why. `record_tier_check` writes it into the test: a note
per flag and the `DevTruthExtra.DEVTRUTH` extra (results.json, the report). `tier_failure` is the
message a suite fails the test with when a flag fails (a dead tier), else None.

`tier_on_device` is the check before any run: a swap folder on a path with no block device (tmpfs,
overlay) is a dead tier before anything is measured.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from pytest_nvme_ai.core.devtruth import (DeviceBytes, Flag, dead_tier, page_cache_leak, tier_without_device,
                                          unflushed_writes)
from pytest_nvme_ai.core.extras import DevTruthExtra

if TYPE_CHECKING:
    from pytest_nvme_ai.core.recorder import Recorder


@dataclass(frozen=True)
class TierCheck:
    configured: str                  # what was set up, in words (the tier and its path)
    device: DeviceBytes | None       # None: nothing could be counted (`reason` says why)
    app_read_bytes: int | None       # what the application asked the tier for (logical reads)
    app_write_bytes: int | None
    flags: tuple[Flag, ...] = ()
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"configured": self.configured, "device": self.device.to_dict() if self.device else None,
                "app_read_bytes": self.app_read_bytes, "app_write_bytes": self.app_write_bytes,
                "flags": [f.to_dict() for f in self.flags], "reason": self.reason}


def tier_on_device(configured: str, path: Path | str) -> Flag | None:
    """A dead tier before any run when `path` has no block device; None when it has one."""
    from pytest_nvme_ai.measure.io_cgroup import IoCgroupError, disk_of

    try:
        disk_of(path)
    except IoCgroupError as exc:
        return tier_without_device(configured, str(exc))
    except OSError:
        return None  # not there yet: the run's own checks say so
    return None


def device_of(info: Mapping[str, Any], read: int, write: int) -> DeviceBytes:
    return DeviceBytes(int(read), int(write), str(info["device"]), bool(info.get("isolated", True)),
                       str(info.get("how", "")), bool(info.get("writeback_counted", False)))


def tier_check(configured: str, info: Mapping[str, Any], device_reads: list[int | None],
               device_writes: list[int | None], app_read_bytes: int | None,
               app_write_bytes: int | None = None, tier_bytes: int | None = None) -> TierCheck:
    """The summed device bytes over the measured window against the application's, with the flags.

    `app_read_bytes` / `app_write_bytes`: what the process asked of the target (leak, unflushed writes).
    `tier_bytes`: what the offload moved through the tier by its own bookkeeping, for the dead-tier rule
    (default: the app's read + write). Pass it when the app's counts come from /proc/self/io, which a
    tier served from memory leaves at zero too (so nothing would be judged)."""
    if not info:
        return TierCheck(configured, None, app_read_bytes, app_write_bytes, reason="the child reported no counter")
    if "reason" in info:
        flag = tier_without_device(configured, str(info["reason"])) if "no block device" in str(info["reason"]) \
            else None
        return TierCheck(configured, None, app_read_bytes, app_write_bytes, (flag,) if flag else (),
                         reason=str(info["reason"]))
    if not device_reads or any(v is None for v in device_reads + device_writes):
        return TierCheck(configured, None, app_read_bytes, app_write_bytes,
                         reason="some loop has no device bytes")
    dev = device_of(info, sum(v or 0 for v in device_reads), sum(v or 0 for v in device_writes))
    app_total = tier_bytes if tier_bytes is not None else (
        None if app_read_bytes is None else app_read_bytes + (app_write_bytes or 0))
    flags = [dead_tier(configured, dev, app_total)]
    if app_read_bytes is not None:
        flags.append(page_cache_leak(app_read_bytes, dev))
    if app_write_bytes is not None:
        flags.append(unflushed_writes(app_write_bytes, dev))
    return TierCheck(configured, dev, app_read_bytes, app_write_bytes, tuple(f for f in flags if f is not None))


def record_tier_check(rec: "Recorder", check: TierCheck, prefix: str | None = None) -> None:
    """A note per flag (and why nothing was counted), and the devtruth extra."""
    label = f"{prefix}: " if prefix else ""
    for flag in check.flags:
        rec.note(f"{label}{flag.message}")
    if check.device is None and check.reason and not check.flags:
        rec.note(f"{label}device bytes not recorded: {check.reason}")
    rec.set_extra(DevTruthExtra.key(prefix), check.to_dict())


def tier_failure(check: TierCheck) -> str | None:
    """The failing flags' messages (a dead tier), or None."""
    failing = [f.message for f in check.flags if f.fails]
    return "\n".join(failing) if failing else None


def fail_on_dead_tier(rec: "Recorder", check: TierCheck, prefix: str | None = None) -> None:
    """Record the check; a failing flag (a dead tier) fails the test with what was configured and what
    reached the device."""
    import pytest

    record_tier_check(rec, check, prefix)
    msg = tier_failure(check)
    if msg:
        pytest.fail(msg, pytrace=False)


@contextmanager
def child_accounting(path: Path | None) -> Iterator[Any]:
    """An accounting cgroup of its own for a one-shot child offloading to `path`; run the child through
    its `wrap()`. None (no NVMe offload, or no cgroup here): the child then says why it counted nothing."""
    if path is None:
        yield None
        return
    from pytest_nvme_ai.measure.io_cgroup import IoCgroup, IoCgroupError, account

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        acct = account(path.parent)
    except (IoCgroupError, OSError):
        yield None
        return
    try:
        yield acct if isinstance(acct, IoCgroup) else None
    finally:
        acct.close()
