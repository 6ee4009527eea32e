"""Running fio: a `FioJob` (fio_job.py) from a job file, in a child process, into a `FioResult`.

fio is the reference the other suites are measured against, so this module is
deliberately small and strict: every run leaves a job file a person can rerun by
hand (`fio job.fio`), and a failure says what fio said and where that job file is.
"""
from __future__ import annotations

import errno
import mmap
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from pytest_nvme_ai.core import procutil
from pytest_nvme_ai.core.ab_protocol import plan_of
from pytest_nvme_ai.core.cache import CacheKey, SessionCache
from pytest_nvme_ai.measure.fio.job import (DirectIOUnsupported, FioError, FioJob, FioResult, combine_results, format_size, format_time,
                      parse_fio_json, parse_size)
from pytest_nvme_ai.core.fsutil import ensure_inside
from pytest_nvme_ai.core.text import tail
from pytest_nvme_ai.measure.fio import ab, hostbound, steady
from pytest_nvme_ai.measure.fio.steady import SteadyPolicy

if TYPE_CHECKING:
    from pytest_nvme_ai.core.recorder import Recorder
    from pytest_nvme_ai.core.targets import Target

__all__ = ["BEST_FIO_BW", "DIRECT_IO_REFUSED", "FIO_BW", "FIO_DATA", "MISSING_REASON", "PRECONDITION", "DirectIOUnsupported", "FioError", "FioJob", "FioResult", "FioRunner", "check_direct_io",
           "combine_results", "find_fio", "fio_missing_reason", "format_size", "format_time", "parse_fio_json",
           "parse_size", "run_fio"]

MISSING_REASON = "fio not found: apt-get install fio"
SPACE_MARGIN = 64 << 20   # free space a data file's layout leaves on the target


# ---- running fio ----------------------------------------------------------------------------
def find_fio() -> str | None:
    return shutil.which("fio")


def fio_missing_reason() -> str | None:
    return None if find_fio() else MISSING_REASON


def check_direct_io(directory: Path) -> None:
    """Fail early and clearly where O_DIRECT is refused, instead of fio's bare EINVAL mid-run."""
    probe = Path(directory) / f".nvme-ai-odirect-probe-{os.getpid()}"
    unsupported = DirectIOUnsupported(
        f"filesystem at {directory} does not support O_DIRECT (tmpfs?) — use a directory on the drive under test")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | getattr(os, "O_DIRECT", 0), 0o600)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise unsupported from None
        raise FioError(f"cannot create a file in {directory}: {exc}") from None
    try:
        # Some filesystems (FUSE) accept the flag and refuse the I/O: write one aligned page to be sure.
        with mmap.mmap(-1, mmap.PAGESIZE) as buf:
            os.write(fd, buf)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise unsupported from None
        raise FioError(f"cannot write with O_DIRECT in {directory}: {exc}") from None
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def _tail(text: str, lines: int = 20) -> str:
    return tail(text, lines) or "<empty>"


def run_fio(job: FioJob, workdir: Path, artifact_dir: Path, timeout: float, stem: str | None = None,
            check_direct: bool = True, wrap: Sequence[str] = (), exe: str | None = None,
            env: Mapping[str, str] | None = None) -> FioResult:
    """Run one job from a job file saved in artifact_dir; raise FioError with fio's words on failure.
    `wrap` prefixes the command (measure.throttle: join a capped cgroup first); `exe` is another fio binary
    and `env` extra environment variables (arm A of an A/B session)."""
    exe = exe or find_fio()
    if exe is None:
        raise FioError(MISSING_REASON)
    if job.direct and check_direct:
        check_direct_io(Path(job.filename).parent if job.filename else workdir)
    stem = stem or job.name
    jobfile, output = artifact_dir / f"{stem}.fio", artifact_dir / f"{stem}.json"
    jobfile.write_text(job.to_jobfile())
    output.unlink(missing_ok=True)
    argv = [*wrap, exe, "--output-format=json+", f"--output={output}", str(jobfile)]
    try:
        rc, out, err = procutil.run(argv, timeout, cwd=workdir, env={**os.environ, **env} if env else None)
    except subprocess.TimeoutExpired:
        raise FioError(f"fio timed out after {timeout:g} s running {jobfile}; the job or the drive hung "
                       f"(raise the limit with --nvme-ai-timeout)") from None
    text = output.read_text(errors="replace") if output.exists() else out
    if rc != 0:
        full = full_filesystem(output)
        raise FioError(f"fio {procutil.describe_exit(rc)} running job file {jobfile}{_killed_note(rc)}\n"
                       + (f"{full}\n" if full else "") + f"--- fio stderr (last lines) ---\n{_tail(err + chr(10) + out)}")
    result = _parse_output(text, output)
    if result.error:
        raise FioError(f"fio reported error {result.error} ({os.strerror(result.error)}) in job {job.name!r}, "
                       f"job file {jobfile}\n--- fio stderr ---\n{_tail(err)}")
    return result


def _killed_note(rc: int) -> str:
    if rc >= 0:
        return ""
    return ("; the suite did not stop it (no timeout, no Ctrl-C): something else killed it, e.g. kill, the OOM "
            "killer or a CI job's cleanup; its job processes were stopped with it")


def _parse_output(text: str, output: Path) -> FioResult:
    """fio's JSON; when it is cut short, a full file system (fio could not write it all) is named."""
    try:
        return parse_fio_json(text)
    except FioError as exc:
        full = full_filesystem(output)
        if full is None:
            raise
        raise FioError(f"{exc}\n{full}") from None


def full_filesystem(path: Path, low: int = 1 << 20) -> str | None:
    """A sentence naming the file system of `path` when it is (nearly) full, else None."""
    try:
        usage = shutil.disk_usage(path.parent)
    except OSError:
        return None
    if usage.free >= low:
        return None
    return (f"the file system holding {path.parent} is full ({usage.free} bytes free of "
            f"{usage.total / 2**20:.0f} MiB): fio could not write its output there; free space on it or "
            f"choose another --nvme-ai-report-dir")


# Session-cache entries this module writes (core.cache): read them by importing these names.
FIO_DATA = CacheKey[Path]("fio_data", "(target label, size) -> the data file laid out once per session")
DIRECT_IO_REFUSED = CacheKey[str]("fio_odirect", "(workdir) -> why O_DIRECT is refused there, '' when it works")
FIO_BW = CacheKey[float]("fio_bw", "(target label, bs bytes) -> median bw of the last job with that block size")
BEST_FIO_BW = CacheKey[float]("best_fio_bw", "(target label) -> best median bw any fio job showed this session")
PRECONDITION = CacheKey[dict[str, Any]]("fio_precondition", "(target label) -> what preconditioning did, once")


# ---- the fixture's object -------------------------------------------------------------------
class FioRunner:
    """What the `fio` fixture returns: runs jobs in the target's workdir and records their metrics.

    Publishes in `recorder.session_cache` for suites that compare against fio: `FIO_BW` (label, bs_bytes)
    -> median bw of the last job with that block size, and `BEST_FIO_BW` (label) -> the best median bw
    any job showed on that target this session.
    """

    def __init__(self, target: Target, recorder: Recorder) -> None:
        self.target = target
        self.recorder = recorder
        self.last_steady_state: dict[str, Any] | None = None  # steady.combine() of the last run(steady_state=...)

    @property
    def cache(self) -> SessionCache:
        return self.recorder.session_cache

    def run(self, job: FioJob, repeat: int | None = None, record: bool = True,
            steady_state: SteadyPolicy | None = None, wrap: Sequence[str] = ()) -> FioResult:
        """Run `job` `repeat` times (default: the session's repeat); one metric sample per repetition.
        `wrap` prefixes fio's command (a capped cgroup's wrapper, measure.throttle).

        With `steady_state`, each repetition runs until fio's steady-state detector stops it or the
        budget runs out (measure/fio/steady.py); a point not steady in every repetition is recorded
        with its metrics ungated. SMART is sampled meanwhile where the drive allows (measure/health.py),
        and each repetition's CPU use is judged for host-bound figures (measure/fio/hostbound.py).
        """
        n = repeat if repeat is not None else self.recorder.repeat
        if n < 1:
            raise ValueError(f"repeat={n} must be at least 1")
        plan = plan_of(self.recorder)
        if plan is not None and record:
            if plan.overrides is not None:      # A/B: pairs of one repetition per arm, until decided (fio/ab.py)
                with _skip_without_direct_io():
                    return ab.run_pairs(self, job, plan, steady_state, wrap, FIO_CALLS)
            if plan.read_cap is not None:       # the run as configured, capped (fio/ab.py)
                with _skip_without_direct_io(), ab.capped(self, self.complete(job), plan.read_cap, FIO_CALLS) as cap:
                    return self._run_plain(job, n, record, steady_state, [*cap.wrap, *wrap])
        return self._run_plain(job, n, record, steady_state, wrap)

    def _run_plain(self, job: FioJob, n: int, record: bool, steady_state: SteadyPolicy | None,
                   wrap: Sequence[str]) -> FioResult:
        from pytest_nvme_ai.measure.health import sampler_for

        job = self.complete(job)
        if steady_state is not None:
            job = with_steady_state(job, steady_state)
        results: list[FioResult] = []
        spans: list[tuple[float, float]] = []
        flags: list[hostbound.HostBound] = []
        interval = self.recorder.profile.health_interval_s
        with _skip_without_direct_io(), sampler_for(self.target.device, interval) as health:
            if job.direct:
                self._check_direct_once()
            stems = self._free_stems(job.name, n)
            for stem in stems:
                cpu0, t0 = hostbound.cpu_times(), time.time()
                with hostbound.BusyProbe(str(self.recorder.artifact_dir / f"{stem}.fio")) as probe:
                    r = run_fio(job, self.target.workdir, self.recorder.artifact_dir, self.recorder.timeout,
                                stem=stem, check_direct=False, wrap=wrap)
                cpu1, t1 = hostbound.cpu_times(), time.time()
                idle = cpu1.idle_pct_since(cpu0) if cpu0 and cpu1 else None
                results.append(r)
                spans.append((t0, t1))
                flags.append(hostbound.judge(r.cpu_usr, r.cpu_sys, idle, busy_pct=probe.busy_pct()))
        combined = combine_results(results)
        if record:
            self._record(job, combined, stems)
            self._record_rigor(combined, spans, flags, health, steady_state)
        return combined

    def _record_rigor(self, result: FioResult, spans: list[tuple[float, float]], flags: list[hostbound.HostBound],
                      health: Any, policy: SteadyPolicy | None) -> None:
        """Steady state, host-bound flag, health during the run and the timeline, on the record."""
        rec = self.recorder
        reps = result.repetitions or (result,)
        rec.set_extra("timeline", [[round(a, 3), round(b, 3), r.bw_bytes] for (a, b), r in zip(spans, reps)])
        bound = [f for f in flags if f.flagged]
        rec.set_extra("host_bound", {"flagged": bool(bound), "reason": (bound or flags)[0].reason,
                                     "repetitions": [f.to_dict() for f in flags]})
        if bound:
            rec.note(bound[0].reason)
        summary = health.summary()
        if "unavailable" not in summary:
            summary["repetitions_throttled"] = [health.summary(a, b)["throttled"] for a, b in spans]
            if any(summary["repetitions_throttled"]):
                rec.note(f"measured while the drive was throttling: {summary['throttle_reason']}")
        rec.set_extra("health", summary)
        if policy is None:
            return
        verdicts = [steady.judge(r.steadystate, policy, r.runtime_ms) for r in reps]
        point = steady.combine(verdicts)
        self.last_steady_state = point
        rec.set_extra("steady_state", point)
        if not point["reached"]:
            # The gate compares steady figures only: these samples stay in the report, ungated.
            for name, m in rec.metrics().items():
                if m.gated:
                    rec.ungate(name)
            rec.note(f"not steady: not gated ({point['reason']})")

    def _free_stems(self, name: str, n: int) -> list[str]:
        """Artifact names not used yet in this test: a second run of the same job keeps the first's files."""
        taken = {p.stem for p in self.recorder.artifact_dir.glob(f"{name}-*")}
        stems: list[str] = []
        i = 1
        while len(stems) < n:
            if f"{name}-{i}" not in taken:
                stems.append(f"{name}-{i}")
            i += 1
        return stems

    def complete(self, job: FioJob) -> FioJob:
        """Fill what the profile decides (runtime, ramp, data file) and keep the file inside the workdir."""
        prof = self.recorder.profile
        if job.runtime is None:
            job = replace(job, runtime=prof.fio_runtime_s, time_based=True,
                          ramp_time=job.ramp_time if job.ramp_time is not None else (prof.fio_ramp_s or None))
        total = job.size_bytes or prof.fio_file_bytes
        if job.filename is None:
            with _skip_without_direct_io():
                path = self.data_file(total, direct=job.direct)
            job = replace(job, filename=str(path))
            if job.numjobs > 1 and job.offset_increment is None:
                job = _split_among_jobs(job, total)
            elif job.size is None:
                job = replace(job, size=total)
        else:
            ensure_inside(Path(job.filename), self.target.workdir)
        return job

    def data_file(self, size: int, direct: bool = True) -> Path:
        """A file of `size` bytes in the workdir, laid out once per session and reused by every test."""
        cached = self.cache.get(FIO_DATA, self.target.label, size)
        if cached is not None and cached.exists() and cached.stat().st_size >= size:
            return cached
        path = self.target.inside(f"fio-data-{format_size(size)}.bin")
        self._check_space(size)
        if direct:
            self._check_direct_once()
        layout = FioJob(name="layout", rw="write", bs="1M", iodepth=16, size=size, filename=str(path),
                        direct=direct)
        run_fio(layout, self.target.workdir, self.recorder.artifact_dir, self.recorder.timeout,
                stem=f"layout-{format_size(size)}", check_direct=False)
        if path.stat().st_size < size:
            raise FioError(f"layout of {path} wrote {path.stat().st_size} of {size} bytes")
        return self.cache.put(FIO_DATA, path, self.target.label, size)

    def precondition(self, data_bytes: int) -> dict[str, Any]:
        """Fill the target's private directory once per session before the reads (bench-fio preconditions
        so that a fresh drive's empty FTL does not flatter the figures): a sequential direct write of the
        profile's `precondition_bytes`, capped so the data file (`data_bytes`) and a margin still fit.
        The file stays until the session removes the private directory: the space stays written."""
        done = self.cache.get(PRECONDITION, self.target.label)
        if done is not None:
            return dict(done)
        prof = self.recorder.profile
        free = shutil.disk_usage(self.target.workdir).free
        have = self.cache.get(FIO_DATA, self.target.label, data_bytes)
        need_data = 0 if have is not None else data_bytes
        margin = max(1 << 30, free // 20)  # keep 5% (at least 1 GiB) free: a full filesystem slows down
        size = min(prof.precondition_bytes, free - need_data - margin) // (1 << 20) * (1 << 20)
        if size < (64 << 20):
            info: dict[str, Any] = {"done": False, "reason": f"only {free / 2**30:.1f} GiB free on {self.target.path}: "
                                    f"no room to precondition beside the {format_size(data_bytes)} data file"}
        else:
            path = self.target.inside("precondition.bin")
            job = FioJob(name="precondition", rw="write", bs="1M", iodepth=32, size=size, filename=str(path))
            t0 = time.time()
            res = run_fio(job, self.target.workdir, self.recorder.artifact_dir, self.recorder.timeout,
                          stem="precondition")
            info = {"done": True, "bytes": size, "seconds": round(time.time() - t0, 2), "write_bw": res.bw_bytes,
                    "file": str(path), "reason": f"wrote {format_size(size)} sequentially before the reads "
                    f"({prof.name} profile: {format_size(prof.precondition_bytes)}, capped by the free space)"}
        self.cache.put(PRECONDITION, info, self.target.label)
        return dict(info)

    def _check_direct_once(self) -> None:
        where = str(self.target.workdir)
        if not self.cache.has(DIRECT_IO_REFUSED, where):
            try:
                check_direct_io(self.target.workdir)
                self.cache.put(DIRECT_IO_REFUSED, "", where)
            except DirectIOUnsupported as exc:
                self.cache.put(DIRECT_IO_REFUSED, str(exc), where)
        reason = self.cache.get(DIRECT_IO_REFUSED, where)
        if reason:
            raise DirectIOUnsupported(reason)

    def _check_space(self, size: int) -> None:
        import pytest

        free = shutil.disk_usage(self.target.workdir).free
        if free < size + SPACE_MARGIN:  # leave room so the measurement does not fill the drive
            pytest.skip(f"target {self.target.path} has {free / 2**30:.2f} GiB free; the "
                        f"{self.recorder.profile.name} profile lays out a {size / 2**30:.2f} GiB file plus a "
                        f"margin of {SPACE_MARGIN >> 20} MiB (needs {(size + SPACE_MARGIN) / 2**30:.2f} GiB)")

    def _record(self, job: FioJob, result: FioResult, stems: list[str]) -> None:
        rec = self.recorder
        record_metrics(rec, result)
        rec.set_params(**job.params())
        rec.set_extra("fio_version", result.fio_version)
        rec.set_extra("fio_runs", [r.summary() for r in result.repetitions])
        if result.steadystate is not None:
            rec.set_extra("fio_steadystate", [r.steadystate for r in result.repetitions])
        art = rec.artifact_dir
        rec.add_artifact("fio job file", art / f"{stems[0]}.fio")
        for stem in stems:
            rec.add_artifact(f"fio json+ {stem}", art / f"{stem}.json")
        self._publish_bw(job, result.bw_bytes)

    def _publish_bw(self, job: FioJob, bw: float) -> None:
        """Other suites compare against fio: per block size, and the best the drive showed this session."""
        label = self.target.label
        self.cache.put(FIO_BW, bw, label, job.bs_bytes)
        self.cache.put(BEST_FIO_BW, max(bw, self.cache.get(BEST_FIO_BW, label) or 0.0), label)


@contextmanager
def _skip_without_direct_io() -> Iterator[None]:
    """A target that refuses O_DIRECT cannot be measured without the page cache: skip, saying why."""
    import pytest

    try:
        yield
    except DirectIOUnsupported as exc:
        pytest.skip(str(exc))


def record_metrics(rec: Recorder, result: FioResult) -> None:
    """The fio metrics of a (combined) result, one sample per repetition."""
    for name, attr in (("bw", "bw_bytes"), ("iops", "iops"), ("clat_p50", "clat_p50"),
                       ("clat_p99", "clat_p99"), ("clat_p999", "clat_p999")):
        samples = result.samples(attr)
        if samples:
            rec.record_samples(name, samples)


def with_steady_state(job: FioJob, policy: SteadyPolicy) -> FioJob:
    """The job run time-based up to the budget, stopped by fio once the window is steady."""
    return replace(job, runtime=policy.budget_s, time_based=True, ss=policy.fio_ss, ss_dur=policy.window_s,
                   ss_ramp=policy.ramp_s)


def _split_among_jobs(job: FioJob, total: int) -> FioJob:
    """numjobs>1: each job reads its own slice of the file, like DeepSpeed's parallel reads of one tensor,
    instead of all jobs re-reading the same first blocks."""
    per_job = total // job.numjobs // job.bs_bytes * job.bs_bytes
    if per_job < job.bs_bytes:
        raise ValueError(f"file of {format_size(total)} is too small to give {job.numjobs} jobs one bs={job.bs} each")
    return replace(job, size=per_job, offset_increment=per_job)


# What measure/fio/ab.py (A/B pairs, the read cap) calls back into: handed in, so it never imports this module.
FIO_CALLS = ab.FioCalls(run_fio, find_fio, with_steady_state, FioRunner)
