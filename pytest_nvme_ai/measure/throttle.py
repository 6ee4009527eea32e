"""Drive-speed emulation on one drive: the kernel's block throttle on the target's disk.

A cgroup with a read-bandwidth cap on the target's block device (cgroup v1
`blkio.throttle.read_bps_device = "MAJ:MIN BYTES"`, or v2 `io.max = "MAJ:MIN rbps=BYTES"`), and
processes started inside it. O_DIRECT reads (fio, DeepSpeed's swap files) are throttled; page-cache
hits would not be, which is why the measured runs read with O_DIRECT.

How a process gets in: `Throttle.wrap(argv)` prefixes a command with a small shell that writes its
own pid to the cgroup's `cgroup.procs` and then `exec`s the command. The process joins *before* its
first instruction, so every byte it and its children (which inherit the cgroup) read is capped; no
pid has to be moved after the start, and a long-lived worker is never moved.

What is changed on the machine: one cgroup directory created under this process's own cgroup
(`nvme-ai-<pid>-<token>`), removed on exit, on an exception, on Ctrl-C and on SIGTERM (the context
manager turns SIGTERM into SystemExit while it is open, and an atexit hook removes what is left).
Nothing outside the project's own cgroup is written. A `kill -9` leaves the cgroup behind:
`clear_leftovers()`, called at session start, names and removes it.
"""
from __future__ import annotations

import atexit
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_nvme_ai.core.lifecycle import ChildRegistry

V1_MOUNT = Path("/sys/fs/cgroup/blkio")
CGROUP_ROOT = Path("/sys/fs/cgroup")
PREFIX = "nvme-ai-"
# The wrapper: join the cgroup ($0 is its cgroup.procs), then become the command.
JOIN_AND_EXEC = 'echo $$ > "$0" && exec "$@"'

_live: set[Path] = set()    # cgroups this process created and has not removed yet


class ThrottleError(RuntimeError):
    pass


@dataclass(frozen=True)
class BlockDevice:
    major: int
    minor: int
    name: str          # the whole disk (a partition's parent): the throttle applies to disks

    @property
    def dev(self) -> str:
        return f"{self.major}:{self.minor}"


@dataclass(frozen=True)
class Controller:
    version: int       # 1 (blkio) or 2 (io)
    parent: Path       # this process's own cgroup in that hierarchy: new cgroups go below it

    @property
    def limit_file(self) -> str:
        return "blkio.throttle.read_bps_device" if self.version == 1 else "io.max"

    def limit_line(self, device: BlockDevice, bps: int) -> str:
        return f"{device.dev} {bps}" if self.version == 1 else f"{device.dev} rbps={bps}"


# ---- what the target sits on ---------------------------------------------------------------------

def block_device_of(path: Path | str, sys_root: Path = Path("/sys")) -> BlockDevice:
    """The whole disk behind `path`; ThrottleError saying why when the throttle would not reach it."""
    st = os.stat(path)
    return block_device_at(os.major(st.st_dev), os.minor(st.st_dev), str(path), sys_root)


def block_device_at(major: int, minor: int, path: str, sys_root: Path = Path("/sys")) -> BlockDevice:
    if major == 0:
        raise ThrottleError(f"{path} is on a filesystem with no block device of its own (overlay, tmpfs, "
                            f"a network or FUSE mount: device {major}:{minor}); the block throttle would not reach it")
    node = sys_root / "dev" / "block" / f"{major}:{minor}"
    if not node.exists():
        raise ThrottleError(f"{path}: no {node} for its device {major}:{minor}")
    real = node.resolve()
    if (real / "dm").exists():
        raise ThrottleError(f"{path} is on device-mapper ({(real / 'dm' / 'name').read_text().strip()}"
                            f" at {major}:{minor}); a cap there would not be what the disk below it sees")
    if (real / "md").exists():
        raise ThrottleError(f"{path} is on a software RAID (md, {major}:{minor}); the throttle is per disk")
    if (real / "partition").exists():
        real = real.parent
    dev = (real / "dev").read_text().strip()
    maj, _, mi = dev.partition(":")
    return BlockDevice(int(maj), int(mi), real.name)


def own_cgroup(version: int, proc_cgroup: str) -> str:
    """This process's cgroup path in the v1 blkio hierarchy or the v2 unified one."""
    for line in proc_cgroup.splitlines():
        hid, controllers, path = line.split(":", 2)
        if version == 1 and "blkio" in controllers.split(","):
            return path
        if version == 2 and hid == "0" and controllers == "":
            return path
    raise ThrottleError(f"this process is in no cgroup v{version} {'blkio' if version == 1 else 'unified'} hierarchy")


def find_controller(proc_cgroup: str | None = None, root: Path = CGROUP_ROOT) -> Controller:
    """The v1 blkio controller if mounted, else v2 with `io` enabled for our own cgroup's children."""
    text = proc_cgroup if proc_cgroup is not None else Path("/proc/self/cgroup").read_text()
    reasons = []
    v1 = root / "blkio"
    if (v1 / "blkio.throttle.read_bps_device").exists():
        parent = v1 / own_cgroup(1, text).lstrip("/")
        if parent.is_dir():
            return Controller(1, parent)
        reasons.append(f"our blkio cgroup {parent} is not visible")
    else:
        reasons.append(f"no cgroup v1 blkio controller at {v1}")
    for mount in (root, root / "unified"):
        if (mount / "cgroup.controllers").exists():
            try:
                parent = mount / own_cgroup(2, text).lstrip("/")
            except ThrottleError as exc:
                reasons.append(str(exc))
                continue
            enabled = (parent / "cgroup.subtree_control").read_text().split() if parent.is_dir() else []
            if "io" in enabled:
                return Controller(2, parent)
            reasons.append(f"cgroup v2 at {mount}: the io controller is not enabled for {parent}'s children "
                           f"(cgroup.subtree_control has {' '.join(enabled) or 'nothing'}); enabling it would "
                           "change a cgroup this project does not own")
    raise ThrottleError("no block throttle: " + "; ".join(reasons))


def throttle_missing_reason(path: Path | str) -> str | None:
    """Why the throttle cannot cap reads of `path` here (None when it can)."""
    if os.geteuid() != 0:
        return "the block throttle needs root (cgroups are created and written to); run as root"
    try:
        block_device_of(path)
        find_controller()
    except (ThrottleError, OSError) as exc:
        return str(exc)
    return None


# ---- the cgroup ------------------------------------------------------------------------------------

def _remove(path: Path, attempts: int = 50) -> None:
    """Move what is left back to the parent (only our own children can be there), then rmdir."""
    for _ in range(attempts):
        try:
            pids = [p for p in (path / "cgroup.procs").read_text().split() if p]
        except FileNotFoundError:
            _live.discard(path)
            return
        for pid in pids:
            try:
                (path.parent / "cgroup.procs").write_text(pid)
            except OSError:
                pass  # it exited meanwhile
        try:
            path.rmdir()
            _live.discard(path)
            return
        except FileNotFoundError:
            _live.discard(path)
            return
        except OSError:
            time.sleep(0.1)  # a process still exiting keeps the cgroup busy for a moment
    raise ThrottleError(f"could not remove cgroup {path}: processes remain in it")


def remove_all() -> None:
    """Remove every cgroup this process created (atexit; also safe to call twice)."""
    for path in list(_live):
        try:
            _remove(path, attempts=20)
        except (ThrottleError, OSError):
            pass


def remove_stale(controller: Controller) -> list[Path]:
    """Cgroups an earlier, killed session of ours left behind (its pid is gone and they are empty)."""
    removed = []
    for d in controller.parent.glob(f"{PREFIX}*"):
        pid = d.name[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            try:
                _remove(d, attempts=3)
                removed.append(d)
            except (ThrottleError, OSError):
                pass
    return removed


def clear_leftovers(hierarchy: Any = None) -> list[str]:
    """At session start: name every `nvme-ai-<pid>-<token>` cgroup a killed run left under our own
    cgroup (a capped drive-speed run's throttle, or a measure.io_cgroup accounting: the same naming) and
    remove those whose creator is dead. The lines to print, one per leftover; [] when there is none or
    no cgroup can be looked at here (not root, no blkio or io controller: then none was made either).
    `hierarchy`: a measure.io_cgroup.Hierarchy (tests); found from /proc/self/cgroup by default."""
    from pytest_nvme_ai.measure.io_cgroup import IoCgroupError, find_hierarchy, leftovers

    if hierarchy is None and os.geteuid() != 0:
        return []
    try:
        found = leftovers(hierarchy or find_hierarchy())
    except (IoCgroupError, OSError):
        return []
    lines = []
    for lo in found:
        if lo.owner_alive:
            continue  # a live session's (or our own): in use, never touched
        what = (f"leftover cgroup {lo.path} of a run that died (pid {lo.owner_pid} is gone; a capped drive-speed "
                "run's read cap or a block-accounting cgroup)")
        inside = f", after moving the {len(lo.pids)} process(es) still in it ({_pid_list(lo.pids)}) out" if lo.pids else ""
        try:
            _remove(lo.path, attempts=3)
        except (ThrottleError, OSError) as exc:
            lines.append(f"{what}: could not be removed ({exc}); remove it as root: rmdir {lo.path}")
            continue
        lines.append(f"{what}: removed{inside}")
    return lines


def _pid_list(pids: tuple[int, ...]) -> str:
    shown = ", ".join(str(p) for p in pids[:5])
    return shown + (f" and {len(pids) - 5} more" if len(pids) > 5 else "")


atexit.register(remove_all)  # last resort; the session's ChildRegistry calls remove_all first (Throttle's registry)
REGISTRY_NAME = "throttle cgroups"


class Throttle:
    """`with Throttle(device, bps) as t:` a cgroup capping reads of `device` at `bps` B/s; `t.wrap(argv)`."""

    def __init__(self, device: BlockDevice, read_bps: float, controller: Controller | None = None,
                 registry: ChildRegistry | None = None) -> None:
        """registry: the session's ChildRegistry, which removes whatever cgroup is left at the session's end
        (a test that died inside the `with`); the atexit hook stays for a dying interpreter."""
        if read_bps < 1:
            raise ValueError(f"read cap {read_bps} B/s must be at least 1")
        self.device, self.read_bps = device, int(read_bps)
        self.controller = controller or find_controller()
        self.path = self.controller.parent / f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self._old_term: Any = None
        self.registry = registry

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def wrap(self, argv: list[str] | tuple[str, ...] = ()) -> list[str]:
        """`argv` prefixed so that it joins this cgroup before it runs (see the module docstring)."""
        return ["/bin/sh", "-c", JOIN_AND_EXEC, str(self.procs), *argv]

    def __enter__(self) -> "Throttle":
        remove_stale(self.controller)
        self.path.mkdir()
        _live.add(self.path)
        if self.registry is not None:
            self.registry.register(REGISTRY_NAME, remove_all)
        try:
            (self.path / self.controller.limit_file).write_text(self.controller.limit_line(self.device, self.read_bps))
        except OSError as exc:
            _remove(self.path)
            raise ThrottleError(f"cannot cap reads of {self.device.name} ({self.device.dev}) in {self.path}: {exc}") from None
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            try:
                self._old_term = signal.signal(signal.SIGTERM, _sigterm_to_exit)
            except ValueError:
                pass  # not the main thread: the atexit hook still removes the cgroup on a clean exit
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._old_term is not None:
            signal.signal(signal.SIGTERM, self._old_term)
            self._old_term = None
        _remove(self.path)


def _sigterm_to_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through Throttle.__exit__, so the cgroup goes with us
