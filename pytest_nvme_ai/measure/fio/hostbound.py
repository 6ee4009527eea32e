"""Host-bound flags: a figure that describes the host's CPU, not the drive.

MLPerf Storage users published client-CPU-bound results that looked like storage results. fio
reports each job's CPU use (usr + sys, % of one core). A job that keeps a core busy could not
have issued I/O any faster, whatever the drive: its figure is the host's. On a shared machine a
CPU-hungry job may not get a whole core, so a second rule covers that: a job that was, for at
least 90% of its life, either running or runnable (waiting in the run queue for a CPU, per
/proc/<pid>/schedstat) never waited for the drive: it was CPU-bound on a contended host. A job
waiting on I/O sleeps, and neither counter grows. The probe finds fio's processes by the job
file's path on their command line (fio forks its jobs, which keep the parent's command line).
Host idle (/proc/stat deltas; iowait counts as idle, steal as busy) is recorded alongside.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORE_PCT = 90.0          # issue 15: a job at >= 90% of one core is host-bound
BUSY_PCT = 90.0          # ... or running + runnable for >= 90% of its life (CPU-bound on a contended host)


@dataclass(frozen=True)
class CpuTimes:
    busy: int
    idle: int

    def idle_pct_since(self, earlier: CpuTimes) -> float | None:
        total = (self.busy - earlier.busy) + (self.idle - earlier.idle)
        return (self.idle - earlier.idle) / total * 100.0 if total > 0 else None


def parse_proc_stat(text: str) -> CpuTimes | None:
    for line in text.splitlines():
        if line.startswith("cpu "):
            f = [int(x) for x in line.split()[1:]]
            f += [0] * (8 - len(f))
            user, nice, system, idle, iowait, irq, softirq, steal = f[:8]
            return CpuTimes(busy=user + nice + system + irq + softirq + steal, idle=idle + iowait)
    return None


def cpu_times(proc_stat: Path = Path("/proc/stat")) -> CpuTimes | None:
    try:
        return parse_proc_stat(proc_stat.read_text())
    except OSError:
        return None


@dataclass(frozen=True)
class HostBound:
    flagged: bool
    job_cpu_pct: float | None     # usr + sys of the busiest job, % of one core
    host_idle_pct: float | None   # idle share of all host CPUs during the measurement
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"flagged": self.flagged, "job_cpu_pct": self.job_cpu_pct, "host_idle_pct": self.host_idle_pct,
                "reason": self.reason}


def judge(usr: float | None, sys: float | None, host_idle_pct: float | None = None, who: str = "fio job",
          busy_pct: float | None = None) -> HostBound:
    """Flag from one job's CPU (% of one core) and, where known, its running + runnable share of its life."""
    if usr is None and sys is None:
        return HostBound(False, None, host_idle_pct, f"{who}: no CPU figures reported")
    cpu = (usr or 0.0) + (sys or 0.0)
    if cpu >= CORE_PCT:
        return HostBound(True, cpu, host_idle_pct,
                         f"host-bound: {who} used {cpu:.0f}% of one core (>= {CORE_PCT:g}%): the figure describes "
                         f"the host's CPU, not the drive")
    if busy_pct is not None and busy_pct >= BUSY_PCT:
        return HostBound(True, cpu, host_idle_pct,
                         f"host-bound: {who} used {cpu:.0f}% of a core and waited for a CPU most of the rest "
                         f"(running or runnable {busy_pct:.0f}% of the time, >= {BUSY_PCT:g}%): it never waited for "
                         f"the drive")
    idle = f", host {host_idle_pct:.0f}% idle" if host_idle_pct is not None else ""
    busy = f", running or runnable {busy_pct:.0f}% of the time" if busy_pct is not None else ""
    return HostBound(False, cpu, host_idle_pct, f"{who} used {cpu:.0f}% of one core{busy}{idle}")


def _schedstat(pid: str) -> tuple[int, int] | None:
    try:
        run_ns, wait_ns, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
        return int(run_ns), int(wait_ns)
    except (OSError, ValueError):
        return None


class BusyProbe:
    """While fio runs: every `interval_s`, the schedstat of each process whose command line contains
    `marker` (the job file's path). `busy_pct()`: the largest share of wall time any of them spent
    running or runnable between its first and last sighting (None when none was seen twice)."""

    def __init__(self, marker: str, interval_s: float = 0.4) -> None:
        self._marker = marker.encode()
        self.interval_s = interval_s
        self._seen: dict[str, tuple[float, int, float, int]] = {}   # pid -> first (t, ns), last (t, ns)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nvme-ai-busy-probe", daemon=True)

    def _scan(self) -> None:
        now = time.monotonic()
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if self._marker not in cmd:
                continue
            st = _schedstat(pid)
            if st is None:
                continue
            ns = st[0] + st[1]
            first = self._seen.get(pid)
            self._seen[pid] = (first[0], first[1], now, ns) if first else (now, ns, now, ns)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._scan()

    def __enter__(self) -> BusyProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def busy_pct(self) -> float | None:
        shares = [(n1 - n0) / 1e9 / (t1 - t0) * 100.0 for t0, n0, t1, n1 in self._seen.values() if t1 - t0 >= 0.3]
        return max(shares) if shares else None


# ---- a long-lived process (DeepSpeed's aio worker): its busiest thread over one request ------------------
def thread_stats(pid: int) -> dict[str, tuple[int, int]]:
    """tid -> (utime + stime in clock ticks, run + run-queue wait in ns) for every thread of `pid`."""
    out: dict[str, tuple[int, int]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()   # the command name may hold spaces: skip past it
            ticks = int(fields[11]) + int(fields[12])      # utime, stime (fields 14 and 15 of stat)
        except (OSError, ValueError, IndexError):
            continue
        sched = _schedstat(f"{pid}/task/{tid}")
        out[tid] = (ticks, sum(sched) if sched else 0)
    return out


def busiest_thread(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]],
                   seconds: float) -> tuple[float | None, float | None]:
    """(CPU % of one core, running + runnable %) of the busiest thread seen at both ends of `seconds`."""
    if seconds <= 0:
        return None, None
    hz = os.sysconf("SC_CLK_TCK")
    common = [t for t in after if t in before]
    if not common:
        return None, None
    cpu = max((after[t][0] - before[t][0]) / hz / seconds * 100.0 for t in common)
    busy = max((after[t][1] - before[t][1]) / 1e9 / seconds * 100.0 for t in common)
    return cpu, busy
