"""Several drives at once: one fio run with a job per target, as a multi-SSD server reads them.

The DeepNVMe measurements used 1, 2 and 4 SSDs, striped: a model's layers come from all drives
at once, and the slowest drive decides when a layer is complete. Each target's job gets its own
reporting group (`new_group`), so fio reports per-drive figures, and no `stonewall`, so the jobs
run at the same time. Jobs read a fixed amount (the data file), not for a fixed time, so a fast
drive finishes first, and two throughputs describe the set (elbencho's first-done and last-done):

* first-done: the aggregate rate while all drives were still reading, i.e. until the first job
  finished. With each job at its own average rate, that is the sum of the per-drive bandwidths.
* last-done: all bytes read / the time until the last job finished: what a reader that needs
  every drive's share (a striped layer) gets. This is the set's `bw`.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from pytest_nvme_ai.core import procutil
from pytest_nvme_ai.measure.fio.job import FioError, FioJob, FioResult, parse_fio_jobs


@dataclass(frozen=True)
class ConcurrentResult:
    per_job: tuple[FioResult, ...]     # in the order of the jobs given
    labels: tuple[str, ...]

    @property
    def first_done_bw(self) -> float:
        return sum(r.bw_bytes for r in self.per_job)

    @property
    def last_done_bw(self) -> float:
        slowest = max(r.runtime_ms for r in self.per_job)
        return sum(r.io_bytes for r in self.per_job) / (slowest / 1000.0) if slowest > 0 else 0.0

    @property
    def first_done_label(self) -> str:
        return min(zip(self.per_job, self.labels), key=lambda p: p[0].runtime_ms)[1]

    @property
    def last_done_label(self) -> str:
        return max(zip(self.per_job, self.labels), key=lambda p: p[0].runtime_ms)[1]

    def to_dict(self) -> dict[str, Any]:
        return {"first_done_bw": self.first_done_bw, "last_done_bw": self.last_done_bw,
                "first_done": self.first_done_label, "last_done": self.last_done_label,
                "drives": {label: {"bw": r.bw_bytes, "io_bytes": r.io_bytes, "runtime_ms": r.runtime_ms,
                                   "cpu_usr": r.cpu_usr, "cpu_sys": r.cpu_sys}
                           for label, r in zip(self.labels, self.per_job)}}


def job_name(label: str) -> str:
    return f"t-{label}"


def concurrent_jobfile(jobs: Sequence[FioJob]) -> str:
    lines = ["; pytest-nvme-ai concurrent read: one job (reporting group) per target, all at once.",
             "; Rerun by hand with: fio <this file>"]
    for job in jobs:
        lines += [f"[{job.name}]"] + [f"{k}={v}" for k, v in job.options()] + ["new_group"]
    return "\n".join(lines) + "\n"


def as_concurrent_job(job: FioJob, label: str) -> FioJob:
    """Fixed amount, not fixed time: the runtime stays as a cap, so one stuck drive cannot hang the run."""
    return replace(job, name=job_name(label), time_based=False, group_reporting=True, ss=None, ss_dur=None,
                   ss_ramp=None, ramp_time=None)


def run_concurrent(jobs: Sequence[FioJob], labels: Sequence[str], workdir: Path, artifact_dir: Path, stem: str,
                   timeout: float, exe: str = "fio") -> ConcurrentResult:
    if len(jobs) != len(labels) or len(jobs) < 2:
        raise ValueError("a concurrent run needs one job per target and at least two targets")
    jobfile, output = artifact_dir / f"{stem}.fio", artifact_dir / f"{stem}.json"
    jobfile.write_text(concurrent_jobfile(jobs))
    output.unlink(missing_ok=True)
    argv = [exe, "--output-format=json+", f"--output={output}", str(jobfile)]
    try:
        rc, out, err = procutil.run(argv, timeout, cwd=workdir)
    except subprocess.TimeoutExpired:
        raise FioError(f"concurrent fio run timed out after {timeout:g} s running {jobfile}") from None
    text = output.read_text(errors="replace") if output.exists() else out
    if rc != 0:
        tail = "\n".join((err + "\n" + out).strip().splitlines()[-15:])
        raise FioError(f"fio {procutil.describe_exit(rc)} running the concurrent job file {jobfile}\n{tail}")
    by_name = {r.jobname: r for r in parse_fio_jobs(text, names={j.name for j in jobs})}
    missing = [j.name for j in jobs if j.name not in by_name]
    if missing:
        raise FioError(f"fio reported no result for job(s) {', '.join(missing)} of {jobfile}")
    for r in by_name.values():
        if r.error:
            raise FioError(f"job {r.jobname!r} reported error {r.error} ({os.strerror(r.error)}), job file {jobfile}")
    return ConcurrentResult(tuple(by_name[j.name] for j in jobs), tuple(labels))
