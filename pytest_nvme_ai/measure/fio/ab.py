"""fio under a read cap, and fio in A/B mode (issue 23; the scheduling is run/ab.py's, through core.ab_protocol).

Read cap (`--nvme-ai-read-cap FRACTION`): just before the capped measurement, a reference read (bs 1M,
direct, iodepth 16, as long as the measured run, on the same data file) measures the target's bandwidth; the
measured run then reads inside a cgroup whose block throttle (measure.io_cgroup, v1 blkio or v2 io.max)
caps reads at FRACTION of it. The cgroup needs root and a block controller: elsewhere the test skips with
the reason. In A/B mode the cap applies to arm B only, and is re-measured before each of arm B's runs:
on a drive that drifts (this build VM read 380-1350 MB/s within one minute, with neighbours), a cap set
once is no longer FRACTION of what the drive gives a minute later, and once the drive falls below it the
"slower drive" is as fast as the real one.

A/B: `run_pairs` hands the plan a `measure_once(arm)` that runs ONE repetition of the job under that arm:
  arm B  the run as configured (this target, the fio on PATH, the session's environment, + the read cap);
  arm A  the overrides: `target=DIR` -> its own private directory inside DIR with its own data file (laid
         out before the first pair), `fio=PATH` -> that binary, `env:NAME=VALUE` -> its environment.
         `aio=` and `python=` do not apply to fio: the record and a note say so (never silently).
Arm B's repetitions become the test's metrics (so the report's usual tables show the run as configured);
both arms' values per pair, the decisions and the arms' specs are in the test's `ab` record.
"""
from __future__ import annotations

import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol, Sequence

from pytest_nvme_ai.core.ab_protocol import AbPlan, Arm
from pytest_nvme_ai.core.targets import Target
from pytest_nvme_ai.measure.fio.job import FioError, FioJob, FioResult, combine_results

if TYPE_CHECKING:
    from pytest_nvme_ai.core.recorder import Recorder
    from pytest_nvme_ai.measure.fio.steady import SteadyPolicy

METRICS = (("bw", "bw_bytes"), ("iops", "iops"), ("clat_p50", "clat_p50"), ("clat_p99", "clat_p99"),
           ("clat_p999", "clat_p999"))
NOT_FOR_FIO = {"aio": "aio= does not apply to fio (it sets DeepSpeed aio; fio has its own job options)",
               "python": "python= does not apply to fio (it selects the interpreter of the aio and ZeRO workers)"}


class FioRunner(Protocol):
    """What this module uses of runner.FioRunner (which imports this module: no import back)."""

    target: Target
    recorder: Recorder

    def complete(self, job: FioJob) -> FioJob: ...
    def data_file(self, size: int, direct: bool = True) -> Path: ...
    def _record(self, job: FioJob, result: FioResult, stems: list[str]) -> None: ...


@dataclass(frozen=True)
class FioCalls:
    """runner.py's functions, handed in (runner.FIO_CALLS)."""

    run_fio: Callable[..., FioResult]
    find_fio: Callable[[], str | None]
    with_steady_state: Callable[[FioJob, SteadyPolicy], FioJob]
    make_runner: Callable[[Target, Recorder], FioRunner]


def reference_bw(runner: FioRunner, job: FioJob, calls: FioCalls, stem: str = "read-cap-reference") -> FioResult:
    """The target's read bandwidth just before a capped run: fio bs 1M, direct, qd 16, on `job`'s data file."""
    seconds = job.runtime or runner.recorder.profile.fio_runtime_s   # as long as the measured run (the profile's)
    ref = FioJob(name="read-cap-reference", rw="read", bs="1M", iodepth=16, direct=True, filename=job.filename,
                 size=job.size, runtime=seconds, time_based=True)
    return calls.run_fio(ref, runner.target.workdir, runner.recorder.artifact_dir, runner.recorder.timeout,
                   stem=stem, check_direct=False)


class ReadCap:
    """The cgroup that caps arm B's reads, and the reference it is set from (re-measured with `refresh`)."""

    def __init__(self, runner: FioRunner, job: FioJob, fraction: float, cg: Any, calls: FioCalls) -> None:
        self.runner, self.job, self.fraction, self.cg, self.calls = runner, job, fraction, cg, calls
        self.history: list[dict[str, float]] = []    # every reference and the cap set from it

    @property
    def wrap(self) -> list[str]:
        return list(self.cg.wrap())

    def refresh(self) -> float:
        """Measure the reference now (outside the cgroup) and set the cap to `fraction` of it; the cap in B/s."""
        ref = reference_bw(self.runner, self.job, self.calls, stem=f"read-cap-reference-{len(self.history) + 1}")
        cap = max(1.0, self.fraction * ref.bw_bytes)
        # The cap file of the open cgroup (measure.io_cgroup writes it once at open; rewriting it changes the
        # throttle for the processes started afterwards; an io_cgroup `set_read_cap` would say this in one call).
        (self.cg.path / self.cg.hierarchy.cap_file).write_text(self.cg.hierarchy.cap_line(self.cg.disk, int(cap)))
        self.history.append({"reference_bw": ref.bw_bytes, "cap_bps": int(cap)})
        return cap

    def record(self) -> None:
        rec, first = self.runner.recorder, self.history[0]
        rec.set_extra("read_cap", {
            "fraction": self.fraction, "reference_bw": first["reference_bw"], "cap_bps": first["cap_bps"],
            "references": self.history,
            "reference_job": f"fio rw=read bs=1M iodepth=16 direct=1, {self.job.runtime or rec.profile.fio_runtime_s:g} s, "
                             "same data file, "
                             "just before " + ("each capped run of arm B" if len(self.history) > 1 else "the capped run"),
            "how": f"cgroup block throttle (measure.io_cgroup) on {self.cg.disk.name} ({self.cg.disk.dev})"})
        caps = [h["cap_bps"] / 1e6 for h in self.history]
        rec.note(f"reads capped at {self.fraction:g} of the bandwidth measured just before: "
                 + (f"{caps[0]:.0f} MB/s" if len(caps) == 1 else f"{min(caps):.0f}-{max(caps):.0f} MB/s over "
                    f"{len(caps)} references") + " (--nvme-ai-read-cap)")


@contextmanager
def capped(runner: FioRunner, job: FioJob, fraction: float, calls: FioCalls) -> Iterator[ReadCap]:
    """A cgroup capping reads at `fraction` of the bandwidth measured now (call `refresh` to re-measure)."""
    import pytest

    from pytest_nvme_ai.measure import io_cgroup

    reason = io_cgroup.cgroup_missing_reason()
    if reason is not None:
        pytest.skip(f"--nvme-ai-read-cap {fraction:g} needs a cgroup block throttle: {reason}")
    with io_cgroup.account(runner.target.workdir, read_cap_bps=1) as cg:   # set from the reference below
        cap = ReadCap(runner, job, fraction, cg, calls)
        cap.refresh()
        try:
            yield cap
        finally:
            cap.record()


def _values(r: FioResult) -> dict[str, float]:
    return {name: float(getattr(r, attr)) for name, attr in METRICS if getattr(r, attr) is not None}


def _check_exe(path: str) -> str:
    found = shutil.which(path)
    if found is None:
        raise FioError(f"--nvme-ai-ab fio={path}: not an executable file (give the path of another fio binary)")
    return found


def arm_specs(runner: FioRunner, plan: AbPlan, job_a: FioJob, job_b: FioJob, fio_b: str | None) -> dict[Arm, dict[str, Any]]:
    """What each arm is, for results.json and the report (side by side)."""
    ov = plan.overrides
    assert ov is not None
    target_a = plan.arm_a_target or runner.target
    fio_a = _check_exe(ov.fio) if ov.fio else fio_b
    not_applied = [NOT_FOR_FIO[k] for k in ("aio", "python") if getattr(ov, "aio_json" if k == "aio" else k)]
    return {
        "A": {"target": str(target_a.path), "data_file": job_a.filename, "fio": fio_a,
              "fio_version": _version(fio_a), "env": ov.env_map, "read_cap": None,
              "not_applied": not_applied, "overrides": ov.to_dict()},
        "B": {"target": str(runner.target.path), "data_file": job_b.filename, "fio": fio_b,
              "fio_version": _version(fio_b), "env": {}, "read_cap": plan.read_cap, "not_applied": []},
    }


def _version(exe: str | None) -> str | None:
    """`fio --version` of an arm's binary ('fio-3.33'), None when it does not answer."""
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_pairs(runner: FioRunner, job: FioJob, plan: AbPlan, steady_state: SteadyPolicy | None,
              wrap: Sequence[str], calls: FioCalls) -> FioResult:
    """`job` as A/B pairs until the plan decides; arm B's runs are recorded as the test's metrics."""
    rec = runner.recorder
    given = job
    job = runner.complete(given)
    job_a = job
    if plan.arm_a_target is not None:
        runner_a = calls.make_runner(plan.arm_a_target, rec)
        if given.filename is None:
            job_a = runner_a.complete(given)
        else:   # a file of arm B's workdir (complete() checked): arm A reads a file of the same size of its own
            size = Path(job.filename or given.filename).stat().st_size
            job_a = replace(job, filename=str(runner_a.data_file(size, direct=job.direct)))
    if steady_state is not None:
        job, job_a = calls.with_steady_state(job, steady_state), calls.with_steady_state(job_a, steady_state)
        rec.note("A/B: each arm's run stops at steady state or the budget, as configured")
    specs = arm_specs(runner, plan, job_a, job, calls.find_fio())
    for why in specs["A"]["not_applied"]:
        rec.note(f"A/B: {why}")
    results: dict[Arm, list[FioResult]] = {"A": [], "B": []}
    stems: dict[Arm, list[str]] = {"A": [], "B": []}
    workdir = {"A": (plan.arm_a_target or runner.target).workdir, "B": runner.target.workdir}

    def run_arms(cap: ReadCap | None) -> None:
        def measure_once(arm: Arm) -> Mapping[str, float]:
            stem = f"{job.name}-{arm}{len(results[arm]) + 1}"
            spec = specs[arm]
            if arm == "B" and cap is not None and results["B"]:
                cap.refresh()   # the drive drifts: each capped run is capped against the bandwidth just before it
            r = calls.run_fio(job_a if arm == "A" else job, workdir[arm], rec.artifact_dir, rec.timeout, stem=stem,
                        check_direct=False, wrap=[*(cap.wrap if arm == "B" and cap else ()), *wrap],
                        exe=str(spec["fio"]) if spec["fio"] else None, env=spec["env"] or None)
            results[arm].append(r)
            stems[arm].append(stem)
            return _values(r)

        plan.measure_pairs(measure_once, arms=specs, label=job.name)

    if plan.read_cap is not None:
        with capped(runner, job, plan.read_cap, calls) as cap:
            run_arms(cap)
    else:
        run_arms(None)
    combined = combine_results(results["B"])
    runner._record(job, combined, stems["B"])
    rec.add_artifact("fio job file (arm A)", rec.artifact_dir / f"{stems['A'][0]}.fio")
    for stem in stems["A"]:
        rec.add_artifact(f"fio json+ {stem}", rec.artifact_dir / f"{stem}.json")
    return combined
