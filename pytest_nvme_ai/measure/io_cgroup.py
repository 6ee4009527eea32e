"""Device truth per measured child: a cgroup that counts (and can cap) its block-layer bytes.

`account(target)` gives each measured child an accounting of its own: a uniquely named cgroup
(`nvme-ai-<our pid>-<token>`, the naming `measure.throttle` uses) under this process's own cgroup, in
cgroup v1 `blkio` or, where its `io` controller is enabled, cgroup v2. The child gets in the way the
throttle's children do: `wrap(argv)` prefixes a small shell that writes its own pid to `cgroup.procs` and
then execs the command (every child of it inherits the cgroup), or `preexec()` in a `subprocess` child,
or `join(pid)` for a process that is already running (a forked worker joining itself first thing).
`read()` gives a `core.devtruth.DeviceBytes` for the disk behind the target: v1
`blkio.throttle.io_service_bytes_recursive`, v2 `io.stat`. `read_cap_bps` caps reads in the same cgroup
(v1 `blkio.throttle.read_bps_device`, v2 `io.max`), as `measure.throttle` does.

Where no cgroup can be used (not root, no controller, a write refused) `account` falls back to deltas of
`/proc/diskstats` for the disk, and the record says so: `isolated=False` and a `how` that names every
process on the device as included.

What counts where (measured on this machine, kernel 6.18, cgroup v1, virtio disk; see tests):
- Reads, O_DIRECT or buffered, are counted in the cgroup of the process that issued them: an O_DIRECT
  read of 64 MiB counted 64 MiB; a buffered read of an uncached file 64 MiB (readahead runs in the
  reader); a buffered read of a cached file 0.
- O_DIRECT writes count in the issuing cgroup (64 MiB for 64 MiB). Buffered writes are only dirty pages
  when the call returns; under v1 the kernel's writeback threads write them later and v1 counts that to
  the *root* cgroup (64 MiB showed up there, 0 in the child's). A child that fsyncs its files writes them
  back itself and they count in its cgroup (64 MiB + 8 KiB of journal). Hence `writeback_counted=False`
  on v1 records, and `flush(paths)`: fsync files from inside the cgroup before reading, so what is still
  dirty is counted here (what the kernel already wrote back is not). Per file, not `syncfs`: syncfs hands
  the data to the flusher threads, so a child running `sync -f` after a 64 MiB buffered write was
  counted 3.1 MiB (journal) while the root cgroup took the data; a 40 s wait for the flusher: 0 here. Under v2 with the io controller,
  writeback is charged to the cgroup that dirtied the pages (ext4, xfs, btrfs): `writeback_counted=True`.
- v1 quirk: since kernel 6.9 blk-throttle starts per disk only when a limit is first written for it, and
  counts nothing before. Every v1 cgroup here therefore writes `MAJ:MIN 0` (0 = no limit) to
  `blkio.throttle.read_bps_device` when no cap is asked for: that turns the counters on for the disk and
  caps nothing.

What is changed on the machine: one cgroup directory per accounting under this process's own cgroup,
removed when the accounting closes (also on an exception, and on SIGTERM, which becomes SystemExit while
one is open and the handler was the default; an atexit hook removes what is left). A killed
run leaves `nvme-ai-<pid>-*` directories whose pid is gone: `leftovers()` lists them and
`remove_leftovers()` removes them, for the session to name and clean at start.
"""
from __future__ import annotations

import atexit
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Protocol

from pytest_nvme_ai.core.devtruth import DeviceBytes

CGROUP_ROOT = Path("/sys/fs/cgroup")
PREFIX = "nvme-ai-"
# The wrapper: join the cgroup ($0 is its cgroup.procs), then become the command.
JOIN_AND_EXEC = 'echo $$ > "$0" && exec "$@"'
V1_STAT = "blkio.throttle.io_service_bytes_recursive"
V1_CAP = "blkio.throttle.read_bps_device"
_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d+)-[0-9a-f]+$")

_live: set[Path] = set()    # cgroups this process created and has not removed yet


class IoCgroupError(RuntimeError):
    pass


@dataclass(frozen=True)
class Disk:
    major: int
    minor: int
    name: str           # the whole disk (a partition's parent): counters and caps are per disk

    @property
    def dev(self) -> str:
        return f"{self.major}:{self.minor}"


@dataclass(frozen=True)
class Hierarchy:
    version: int        # 1 (blkio) or 2 (io)
    parent: Path        # this process's own cgroup there: new cgroups go below it

    @property
    def stat_file(self) -> str:
        return V1_STAT if self.version == 1 else "io.stat"

    @property
    def cap_file(self) -> str:
        return V1_CAP if self.version == 1 else "io.max"

    def cap_line(self, disk: Disk, bps: int) -> str:
        """v1: 0 means no limit (and starts the disk's counters); v2: `max` means no limit."""
        if self.version == 1:
            return f"{disk.dev} {bps}"
        return f"{disk.dev} rbps={bps if bps else 'max'}"


# ---- what the target sits on ---------------------------------------------------------------------

def disk_of(path: Path | str, sys_root: Path = Path("/sys")) -> Disk:
    """The whole disk behind `path` (a partition's parent; a dm/md device itself: the bytes sent to it)."""
    st = os.stat(path)
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    if major == 0:
        raise IoCgroupError(f"{path} is on a filesystem with no block device (tmpfs, overlay, a network or FUSE "
                            f"mount: device {major}:{minor}); nothing written there reaches a drive")
    node = sys_root / "dev" / "block" / f"{major}:{minor}"
    if not node.exists():
        raise IoCgroupError(f"{path}: no {node} for its device {major}:{minor}")
    real = node.resolve()
    if (real / "partition").exists():
        real = real.parent
    maj, _, mi = (real / "dev").read_text().strip().partition(":")
    return Disk(int(maj), int(mi), real.name)


# ---- which hierarchy ---------------------------------------------------------------------------------

def _own(version: int, proc_cgroup: str) -> str | None:
    for line in proc_cgroup.splitlines():
        hid, controllers, path = line.split(":", 2)
        if version == 1 and "blkio" in controllers.split(","):
            return path
        if version == 2 and hid == "0" and controllers == "":
            return path
    return None


def find_hierarchy(proc_cgroup: str | None = None, root: Path = CGROUP_ROOT) -> Hierarchy:
    """v1 blkio if mounted, else v2 with `io` enabled for our own cgroup's children; IoCgroupError says why not."""
    text = proc_cgroup if proc_cgroup is not None else Path("/proc/self/cgroup").read_text()
    reasons = []
    v1, own1 = root / "blkio", _own(1, text)
    if (v1 / V1_STAT).exists() and own1 is not None and (v1 / own1.lstrip("/")).is_dir():
        return Hierarchy(1, v1 / own1.lstrip("/"))
    reasons.append(f"no cgroup v1 blkio hierarchy of ours at {v1}")
    own2 = _own(2, text)
    for mount in (root, root / "unified"):
        if own2 is None or not (mount / "cgroup.controllers").exists():
            continue
        parent = mount / own2.lstrip("/")
        enabled = (parent / "cgroup.subtree_control").read_text().split() if parent.is_dir() else []
        if "io" in enabled:
            return Hierarchy(2, parent)
        reasons.append(f"cgroup v2 at {mount}: io is not enabled for {parent}'s children (subtree_control: "
                       f"{' '.join(enabled) or 'nothing'}); enabling it would change a cgroup we do not own")
    raise IoCgroupError("no per-cgroup block accounting: " + "; ".join(reasons))


def cgroup_missing_reason(root: Path = CGROUP_ROOT) -> str | None:
    """Why no accounting cgroup can be made here (None when one can)."""
    if os.geteuid() != 0:
        return "creating cgroups needs root"
    try:
        find_hierarchy(root=root)
    except (IoCgroupError, OSError) as exc:
        return str(exc)
    return None


# ---- counters ------------------------------------------------------------------------------------------

def parse_v1_bytes(text: str, dev: str) -> tuple[int, int]:
    """(read, write) for `dev` from blkio.throttle.io_service_bytes; a disk with no line has moved nothing."""
    got = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == dev and parts[1] in ("Read", "Write"):
            got[parts[1]] = int(parts[2])
    return got.get("Read", 0), got.get("Write", 0)


def parse_v2_bytes(text: str, dev: str) -> tuple[int, int]:
    """(read, write) for `dev` from io.stat (`MAJ:MIN rbytes=.. wbytes=.. ...`)."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == dev:
            kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            return int(kv.get("rbytes", 0)), int(kv.get("wbytes", 0))
    return 0, 0


def parse_diskstats(text: str, dev: str) -> tuple[int, int]:
    """(read, write) bytes of `dev` from /proc/diskstats: sectors read/written, always 512-byte units."""
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 10 and f"{f[0]}:{f[1]}" == dev:
            return int(f[5]) * 512, int(f[9]) * 512
    raise IoCgroupError(f"device {dev} is not in /proc/diskstats")


# ---- leftovers of a killed run --------------------------------------------------------------------------

@dataclass(frozen=True)
class Leftover:
    path: Path
    owner_pid: int          # the process that created it (its pid is in the name)
    owner_alive: bool       # a live owner is another session's (or our own): never removed
    pids: tuple[int, ...]   # processes still inside


def leftovers(hierarchy: Hierarchy | None = None) -> list[Leftover]:
    """Every `nvme-ai-<pid>-<token>` cgroup under our parent, with whether its creator is still alive."""
    h = hierarchy or find_hierarchy()
    out = []
    for d in sorted(h.parent.glob(f"{PREFIX}*")):
        m = _NAME.match(d.name)
        if not m or not d.is_dir():
            continue
        pid = int(m.group(1))
        try:
            pids = tuple(int(p) for p in (d / "cgroup.procs").read_text().split())
        except OSError:
            pids = ()
        out.append(Leftover(d, pid, Path(f"/proc/{pid}").exists(), pids))
    return out


def remove_leftovers(hierarchy: Hierarchy | None = None) -> list[Path]:
    """Remove the cgroups whose creator is gone (moving any process left in them to our parent)."""
    removed = []
    for lo in leftovers(hierarchy):
        if not lo.owner_alive:
            _remove(lo.path, attempts=3)
            removed.append(lo.path)
    return removed


def _remove(path: Path, attempts: int = 50) -> None:
    """Move what is left back to the parent, then rmdir (a process still exiting keeps it busy briefly)."""
    for _ in range(attempts):
        try:
            pids = (path / "cgroup.procs").read_text().split()
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
        except FileNotFoundError:
            pass
        except OSError:
            time.sleep(0.1)
            continue
        _live.discard(path)
        return
    raise IoCgroupError(f"could not remove cgroup {path}: processes remain in it")


def _remove_all() -> None:
    for path in list(_live):
        try:
            _remove(path, attempts=20)
        except (IoCgroupError, OSError):
            pass


atexit.register(_remove_all)


# ---- the accountings ---------------------------------------------------------------------------------------

class Accounting(Protocol):
    disk: Disk

    def wrap(self, argv: Sequence[str] = ()) -> list[str]: ...
    def preexec(self) -> None: ...
    def join(self, pid: int) -> None: ...
    def flush(self, paths: Iterable[Path | str]) -> None: ...
    def read(self) -> DeviceBytes: ...
    def close(self) -> DeviceBytes | None: ...


def _fsync(wrap: list[str], paths: Iterable[Path | str]) -> None:
    """`sync FILE...` (coreutils: fsync of each file) for `paths`, every file under a directory included."""
    files: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += [str(f) for f in sorted(p.rglob("*")) if f.is_file() and not f.is_symlink()]
        elif p.is_file():
            files.append(str(p))
    for i in range(0, len(files), 512):   # keep each command line short
        subprocess.run([*wrap, "sync", "--", *files[i:i + 512]], check=True, timeout=600)


class IoCgroup:
    """`with IoCgroup(target) as cg:` run children through `cg.wrap(argv)`; `cg.read()` -> DeviceBytes."""

    def __init__(self, target: Path | str, read_cap_bps: float | None = None,
                 hierarchy: Hierarchy | None = None, disk: Disk | None = None) -> None:
        if read_cap_bps is not None and read_cap_bps < 1:
            raise ValueError(f"read cap {read_cap_bps} B/s must be at least 1")
        self.disk = disk or disk_of(target)
        self.hierarchy = hierarchy or find_hierarchy()
        self.read_cap_bps = None if read_cap_bps is None else int(read_cap_bps)
        self.path = self.hierarchy.parent / f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.result: DeviceBytes | None = None
        self._base = (0, 0)
        self._open = False
        self._old_term: Any = None

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def open(self) -> IoCgroup:
        """Create the cgroup (idempotent while open)."""
        if self._open:
            return self
        if self.result is not None:
            raise IoCgroupError(f"{self.path.name} was closed: make a new accounting per child")
        self.path.mkdir()
        _live.add(self.path)
        self._open = True
        try:
            (self.path / self.hierarchy.cap_file).write_text(
                self.hierarchy.cap_line(self.disk, self.read_cap_bps or 0))
            self._base = self._counters()
        except OSError as exc:
            self.close()
            raise IoCgroupError(f"cannot set up {self.hierarchy.cap_file} for {self.disk.name} ({self.disk.dev}) "
                                f"in {self.path}: {exc}") from None
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):   # as measure.throttle does
            try:
                self._old_term = signal.signal(signal.SIGTERM, _sigterm_to_exit)
            except ValueError:
                pass  # not the main thread: atexit and leftovers() still find the cgroup
        return self

    def wrap(self, argv: Sequence[str] = ()) -> list[str]:
        """`argv` prefixed so that it joins this cgroup before it runs (children inherit it)."""
        return ["/bin/sh", "-c", JOIN_AND_EXEC, str(self.procs), *argv]

    def preexec(self) -> None:
        """For `subprocess.Popen(preexec_fn=cg.preexec)`: the child joins before it execs."""
        self.join(os.getpid())

    def join(self, pid: int) -> None:
        """Move a running process (all its threads) in; only its I/O from now on counts here."""
        self.procs.write_text(str(pid))

    def flush(self, paths: Iterable[Path | str]) -> None:
        """fsync `paths` (files, or every file under a directory) from inside this cgroup, so buffered writes
        still dirty are written back by a process of ours and counted here (under v1 the kernel's writeback
        would count them to the root cgroup). `sync FILE...` fsyncs each file."""
        _fsync(self.wrap(), paths)

    def _counters(self) -> tuple[int, int]:
        text = (self.path / self.hierarchy.stat_file).read_text()
        if self.hierarchy.version == 1:
            return parse_v1_bytes(text, self.disk.dev)
        return parse_v2_bytes(text, self.disk.dev)

    def read(self) -> DeviceBytes:
        r, w = self._counters()
        v1 = self.hierarchy.version == 1
        how = (f"cgroup v{self.hierarchy.version} {self.path.name}, {self.hierarchy.stat_file}: bytes its processes "
               f"sent to {self.disk.name} ({self.disk.dev}); "
               + ("buffered writes written back later by the kernel count to the root cgroup, not here" if v1 else
                  "writeback charged to the cgroup that dirtied the pages"))
        if self.read_cap_bps:
            how += f"; reads capped at {self.read_cap_bps} B/s"
        return DeviceBytes(r - self._base[0], w - self._base[1], self.disk.dev, True, how, not v1)

    def close(self) -> DeviceBytes | None:
        """Read the final counts (kept in `result`) and remove the cgroup; safe to call twice."""
        if self._old_term is not None:
            signal.signal(signal.SIGTERM, self._old_term)
            self._old_term = None
        if self._open:
            self._open = False
            try:
                self.result = self.read()
            except (OSError, ValueError):
                self.result = None   # the cgroup vanished (removed by hand): nothing to read
            _remove(self.path)
        return self.result

    def __enter__(self) -> IoCgroup:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _sigterm_to_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through close(), so the cgroup goes with us


class DiskstatsAccounting:
    """The fallback: /proc/diskstats deltas of the disk; every process's I/O on it is included."""

    def __init__(self, target: Path | str, reason: str, disk: Disk | None = None,
                 diskstats: Path = Path("/proc/diskstats")) -> None:
        self.disk = disk or disk_of(target)
        self.reason = reason
        self.diskstats = diskstats
        self.result: DeviceBytes | None = None
        self._base: tuple[int, int] | None = None

    def open(self) -> DiskstatsAccounting:
        if self._base is not None:
            return self
        self._base = parse_diskstats(self.diskstats.read_text(), self.disk.dev)
        return self

    def wrap(self, argv: Sequence[str] = ()) -> list[str]:
        return list(argv)

    def preexec(self) -> None:
        pass

    def join(self, pid: int) -> None:
        pass

    def flush(self, paths: Iterable[Path | str]) -> None:
        """fsync the files so that their dirty pages are in the count before it is read."""
        _fsync([], paths)

    def read(self) -> DeviceBytes:
        if self._base is None:
            raise IoCgroupError("read() before open(): use `with account(target) as acct:`")
        r, w = parse_diskstats(self.diskstats.read_text(), self.disk.dev)
        how = (f"/proc/diskstats delta of {self.disk.name} ({self.disk.dev}): every process's I/O on the device is "
               f"included, and the kernel's writeback of earlier writes (no cgroup: {self.reason})")
        return DeviceBytes(r - self._base[0], w - self._base[1], self.disk.dev, False, how, True)

    def close(self) -> DeviceBytes | None:
        if self._base is not None and self.result is None:
            self.result = self.read()
        return self.result

    def __enter__(self) -> DiskstatsAccounting:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def account(target: Path | str, read_cap_bps: float | None = None,
            hierarchy: Hierarchy | None = None) -> IoCgroup | DiskstatsAccounting:
    """An open accounting for one child on `target`'s disk: a cgroup, else the /proc/diskstats fallback.

    Use it as a context manager (or call `close()`): closing reads the final counts into `result` and
    removes the cgroup. A read cap needs the cgroup: without one, IoCgroupError.
    """
    disk = disk_of(target)
    reason = None if hierarchy is not None else cgroup_missing_reason()
    if reason is None:
        try:
            return IoCgroup(target, read_cap_bps, hierarchy, disk).open()
        except (IoCgroupError, OSError) as exc:
            reason = str(exc)
    if read_cap_bps is not None:
        raise IoCgroupError(f"cannot cap reads of {target}: {reason}")
    return DiskstatsAccounting(target, reason or "unknown", disk).open()
