"""Child side: the block-layer bytes of the child's own accounting cgroup, read like /proc/self/io.

The parent puts each NVMe-offloading child in an accounting cgroup of its own (measure.io_cgroup:
a persistent worker joins one when it starts, a one-shot child execs through its `wrap`, a capped
child runs in the throttle's cgroup). Why one cgroup per worker, read by the worker around each loop,
rather than moving the worker into a new cgroup per case: a process is in one blkio cgroup at a time,
and moving it out of a throttle's cgroup would drop its cap; reading one counter before and after each
loop gives per-loop device bytes over exactly the window `/proc/self/io` is read over, so the two
compare sample by sample, with no cgroup created or removed between cases.

The counter is trusted only when the cgroup is one of ours (`nvme-ai-<pid>-<token>`, io_cgroup's and
measure.throttle's naming): anything else holds other processes too. Where it is not, `DeviceCounter.open`
returns None and `why_not` says why; the child then reports no device bytes, never a wrong figure.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_nvme_ai.measure.io_cgroup import (CGROUP_ROOT, PREFIX, V1_STAT, Disk, IoCgroupError, disk_of,
                                              parse_v1_bytes, parse_v2_bytes)

_OURS = re.compile(rf"^{re.escape(PREFIX)}\d+-[0-9a-f]+$")


def own_cgroup(proc_cgroup: str, root: Path = CGROUP_ROOT) -> tuple[int, Path] | None:
    """(version, directory) of this process's block-accounting cgroup: v1 blkio first, else v2."""
    for line in proc_cgroup.splitlines():
        hid, controllers, path = line.split(":", 2)
        if "blkio" in controllers.split(","):
            return 1, root / "blkio" / path.lstrip("/")
    for line in proc_cgroup.splitlines():
        hid, controllers, path = line.split(":", 2)
        if hid == "0" and controllers == "":
            return 2, root / path.lstrip("/")
    return None


@dataclass(frozen=True)
class DeviceCounter:
    """Reads (device read bytes, device write bytes) of the disk behind a path, in our own cgroup."""

    version: int
    cgroup: Path
    disk: Disk

    @property
    def stat(self) -> Path:
        return self.cgroup / (V1_STAT if self.version == 1 else "io.stat")

    def read(self) -> tuple[int, int]:
        text = self.stat.read_text()
        return parse_v1_bytes(text, self.disk.dev) if self.version == 1 else parse_v2_bytes(text, self.disk.dev)

    def describe(self) -> dict[str, Any]:
        """What the parent needs to build a core.devtruth.DeviceBytes from the loop deltas."""
        return {"device": self.disk.dev, "disk": self.disk.name, "isolated": True,
                "writeback_counted": self.version == 2,
                "how": f"cgroup v{self.version} {self.stat} of the child's own accounting cgroup, "
                       f"device {self.disk.name} ({self.disk.dev}); read around each loop"}

    @classmethod
    def open(cls, path: str | Path, proc_cgroup: str | None = None,
             root: Path = CGROUP_ROOT) -> tuple[DeviceCounter | None, str | None]:
        """(counter, None), or (None, why no device bytes can be read for `path` in this process)."""
        try:
            disk = disk_of(path)
        except (IoCgroupError, OSError) as exc:
            return None, str(exc)
        text = proc_cgroup if proc_cgroup is not None else Path("/proc/self/cgroup").read_text()
        own = own_cgroup(text, root)
        if own is None:
            return None, "this process is in no block-accounting cgroup"
        version, cg = own
        if not _OURS.match(cg.name):
            return None, (f"the child is in cgroup {cg}, not an accounting cgroup of its own (nvme-ai-<pid>-<token>): "
                          "its counters would include other processes")
        counter = cls(version, cg, disk)
        try:
            counter.read()
        except OSError as exc:
            return None, f"cannot read {counter.stat}: {exc}"
        return counter, None
