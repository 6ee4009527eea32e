"""Host-bound flags: a figure that describes the host's CPU, not the drive.

MLPerf Storage users published client-CPU-bound results that looked like storage results. fio
reports each job's CPU use (usr + sys, % of one core). A job that keeps a core busy could not
have issued I/O any faster, whatever the drive: its figure is the host's. On a shared machine a
CPU-hungry job may not get a whole core, so a second rule covers that: a job using at least half
a core while the host's CPUs were (nearly) never idle was waiting for a CPU, not for the drive.
Host idle comes from /proc/stat deltas around the measurement (iowait counts as idle: the CPU
was free; steal counts as busy: another guest had it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORE_PCT = 90.0          # issue 15: a job at >= 90% of one core is host-bound
BUSY_JOB_PCT = 50.0      # ... or at >= 50% of a core while the host had
HOST_IDLE_PCT = 10.0     # ... less than 10% idle CPU


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


def judge(usr: float | None, sys: float | None, host_idle_pct: float | None = None, who: str = "fio job") -> HostBound:
    """Flag from one job's CPU (% of one core) and, where known, the host's idle share."""
    if usr is None and sys is None:
        return HostBound(False, None, host_idle_pct, f"{who}: no CPU figures reported")
    cpu = (usr or 0.0) + (sys or 0.0)
    if cpu >= CORE_PCT:
        return HostBound(True, cpu, host_idle_pct,
                         f"host-bound: {who} used {cpu:.0f}% of one core (>= {CORE_PCT:g}%): the figure describes "
                         f"the host's CPU, not the drive")
    if cpu >= BUSY_JOB_PCT and host_idle_pct is not None and host_idle_pct < HOST_IDLE_PCT:
        return HostBound(True, cpu, host_idle_pct,
                         f"host-bound: {who} used {cpu:.0f}% of a core while the host's CPUs were only "
                         f"{host_idle_pct:.0f}% idle (< {HOST_IDLE_PCT:g}%): it waited for a CPU, not the drive")
    idle = f", host {host_idle_pct:.0f}% idle" if host_idle_pct is not None else ""
    return HostBound(False, cpu, host_idle_pct, f"{who} used {cpu:.0f}% of one core{idle}")
