"""Typed fio wrapper: `FioJob` -> job file / argv, run in a child process, `FioResult` from json+.

fio is the reference the other suites are measured against, so this module is
deliberately small and strict: a job is validated before fio sees it, every run
leaves a job file a person can rerun by hand (`fio job.fio`), and a failure says
what fio said and where that job file is.
"""
from __future__ import annotations

import errno
import json
import mmap
import os
import re
import shutil
import signal
import statistics
import subprocess
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from .fsutil import ensure_inside, is_block_device

if TYPE_CHECKING:
    from .records import Recorder
    from .targets import Target

MISSING_REASON = "fio not found: apt-get install fio"
# fio's default kb_base is 1024, so "1M" means 2**20 bytes, as a reader of a job file expects.
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_SS_RE = re.compile(r"^(iops|bw)(_slope)?:\d+(\.\d+)?%?$")
_RW = ("read", "write", "randread", "randwrite", "rw", "readwrite", "randrw")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class FioError(Exception):
    """fio could not run the job or reported an error; the message says what to look at."""


class DirectIOUnsupported(FioError):
    """The target filesystem refuses O_DIRECT: measuring it would measure the page cache."""


# ---- sizes and times ------------------------------------------------------------------------
def parse_size(value: str | int, what: str = "size") -> int:
    """'1M' -> 1048576; ints pass through. Errors name the option."""
    if isinstance(value, bool):
        raise ValueError(f"{what}={value!r} is not a size; use bytes or a string like '1M'")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE_RE.match(str(value))
        if not m:
            raise ValueError(f"{what}={value!r} is not a size; use bytes or a string like '128K', '1M', '16M', '2G'")
        n = int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if n <= 0:
        raise ValueError(f"{what}={value!r} must be larger than zero")
    return n


def format_size(n: int) -> str:
    """Shortest exact fio size string: 2097152 -> '2M', 1536 -> '1536'."""
    for suffix in ("T", "G", "M", "K"):
        unit = _SIZE_UNITS[suffix.lower()]
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def format_time(seconds: float) -> str:
    """fio time options are integers: whole seconds stay plain, fractions go to ms (0.5 -> '500ms')."""
    if float(seconds).is_integer():
        return str(int(seconds))
    return f"{round(seconds * 1000)}ms"


# ---- the job --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FioJob:
    name: str = "seqread"
    rw: str = "read"
    bs: str | int = "1M"
    iodepth: int = 16
    numjobs: int = 1
    size: str | int | None = None           # per job; None lets fio use the existing file's size
    runtime: float | None = None            # seconds
    ramp_time: float | None = None
    ioengine: str = "libaio"
    direct: bool = True
    rate: str | int | None = None           # per-job bandwidth cap, B/s (emulates a slower drive)
    time_based: bool = False
    group_reporting: bool = True
    ss: str | None = None                   # steady state, e.g. "bw_slope:0.3%"
    ss_dur: float | None = None
    ss_ramp: float | None = None
    filename: str | None = None
    offset_increment: str | int | None = None  # job k starts at k*this: parallel jobs read distinct slices

    def __post_init__(self) -> None:
        # Normalise sizes to canonical fio strings so params and job files read the same everywhere.
        for attr in ("bs", "size", "rate", "offset_increment"):
            v = getattr(self, attr)
            if v is not None:
                object.__setattr__(self, attr, format_size(parse_size(v, attr)))
        self._validate()

    def _validate(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"job name {self.name!r} must use only letters, digits, '_', '.', '-'")
        if self.rw not in _RW:
            raise ValueError(f"rw={self.rw!r} is not a fio rw mode; use one of {', '.join(_RW)}")
        if self.direct and self.bs_bytes % 512:
            raise ValueError(f"bs={self.bs} is not a multiple of 512 bytes, which direct=1 (O_DIRECT) requires")
        for attr in ("iodepth", "numjobs"):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{attr}={v!r} must be a whole number of at least 1")
        size = self.size_bytes
        if size is not None and size < self.bs_bytes:
            raise ValueError(f"size={self.size} is smaller than one block (bs={self.bs})")
        self._validate_times()
        if self.ss is not None and not _SS_RE.match(self.ss):
            raise ValueError(f"ss={self.ss!r} is not a steady-state criterion; use e.g. 'bw_slope:0.3%' or 'iops:10%'")
        if self.ss is not None and not self.ss_dur:
            raise ValueError("ss= needs ss_dur= (seconds of the rolling window); fio ignores ss without it")
        if not self.ioengine or not _NAME_RE.match(self.ioengine):
            raise ValueError(f"ioengine={self.ioengine!r} is not an engine name")
        self._validate_filename()

    def _validate_times(self) -> None:
        for attr in ("runtime", "ramp_time", "ss_dur", "ss_ramp"):
            v = getattr(self, attr)
            if v is not None and (not isinstance(v, (int, float)) or v < 0 or (attr == "runtime" and v <= 0)):
                raise ValueError(f"{attr}={v!r} must be a non-negative number of seconds")
            if v is not None and v < 0.001 and v != 0:
                raise ValueError(f"{attr}={v!r} is below fio's 1 ms resolution")
        if self.time_based and not self.runtime:
            raise ValueError("time_based=True needs runtime= (fio otherwise runs forever)")

    def _validate_filename(self) -> None:
        if self.filename is None:
            return
        if ":" in self.filename:
            # fio splits filename on ':' into several files: a path with one would silently test something else.
            raise ValueError(f"filename={self.filename!r} contains ':', which fio reads as a list of files")
        if is_block_device(Path(self.filename)) or self.filename.startswith("/dev/"):
            raise ValueError(f"filename={self.filename!r} is a device: pytest-nvme-ai only reads files on a filesystem")

    @property
    def bs_bytes(self) -> int:
        return parse_size(self.bs, "bs")

    @property
    def size_bytes(self) -> int | None:
        return parse_size(self.size, "size") if self.size is not None else None

    def options(self) -> list[tuple[str, str]]:
        """The job's fio options in a fixed order (job file and argv share it)."""
        opts: list[tuple[str, object]] = [
            ("filename", self.filename), ("rw", self.rw), ("bs", str(self.bs)),
            ("ioengine", self.ioengine), ("iodepth", str(self.iodepth)), ("direct", "1" if self.direct else "0"),
            ("numjobs", str(self.numjobs)), ("size", self.size), ("offset_increment", self.offset_increment),
            ("runtime", _opt_time(self.runtime)), ("ramp_time", _opt_time(self.ramp_time)),
            ("time_based", "1" if self.time_based else None), ("rate", self.rate),
            ("group_reporting", "1" if self.group_reporting else None),
            ("ss", self.ss), ("ss_dur", _opt_time(self.ss_dur)), ("ss_ramp", _opt_time(self.ss_ramp)),
        ]
        return [(k, str(v)) for k, v in opts if v is not None]

    def to_jobfile(self) -> str:
        lines = [
            "; pytest-nvme-ai fio job. Rerun by hand with: fio <this file>",
            "; (the suite adds --output-format=json+ --output=<file>)",
            f"[{self.name}]",
        ]
        lines += [f"{k}={v}" for k, v in self.options()]
        return "\n".join(lines) + "\n"

    def to_argv(self, output_path: Path | str, exe: str = "fio") -> list[str]:
        return [exe, "--output-format=json+", f"--output={output_path}", f"--name={self.name}"] + [
            f"--{k}={v}" for k, v in self.options()
        ]

    def params(self) -> dict[str, Any]:
        """What the report shows as this test's parameters."""
        return {"rw": self.rw, "bs": self.bs, "iodepth": self.iodepth, "numjobs": self.numjobs,
                "ioengine": self.ioengine, "direct": self.direct, "size": self.size,
                "runtime_s": self.runtime, "ramp_time_s": self.ramp_time, "rate": self.rate, "ss": self.ss}


def _opt_time(v: float | None) -> str | None:
    return format_time(v) if v is not None else None


# ---- results --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FioResult:
    jobname: str
    fio_version: str | None
    bw_bytes: float
    iops: float
    io_bytes: int
    runtime_ms: int
    clat_mean: float | None      # ns
    clat_p50: float | None
    clat_p99: float | None
    clat_p999: float | None
    steadystate: dict[str, Any] | None
    error: int = 0
    repetitions: tuple[FioResult, ...] = field(default=(), repr=False)

    def samples(self, attr: str) -> tuple[float, ...]:
        """One value per repetition (or this result's own value when it is a single run)."""
        runs = self.repetitions or (self,)
        return tuple(float(getattr(r, attr)) for r in runs if getattr(r, attr) is not None)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("repetitions")
        return d


def _decode_json_text(text: str) -> dict[str, Any]:
    """fio prints notes and warnings ("note: ...", "fio: ...") before the JSON: skip to the first '{' line."""
    m = re.search(r"^\s*\{", text, re.MULTILINE)
    if m is None:
        head = text.strip().splitlines()[:3]
        raise FioError(f"no JSON in fio output (it starts with: {' | '.join(head) or '<empty>'})")
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[m.start():].lstrip())
    except json.JSONDecodeError as exc:
        raise FioError(f"fio output is not valid JSON ({exc}); was the run cut short?") from None
    if not isinstance(obj, dict):
        raise FioError("fio output JSON is not an object")
    return obj


def _direction(job: Mapping[str, Any]) -> Mapping[str, Any]:
    read, write = job.get("read") or {}, job.get("write") or {}
    return write if write.get("io_bytes", 0) > read.get("io_bytes", 0) else read


def _job_result(job: Mapping[str, Any], version: str | None) -> FioResult:
    d = _direction(job)
    clat = d.get("clat_ns") or {}
    pct = clat.get("percentile") or {}
    ss = job.get("steadystate")
    steady = None
    if ss:
        steady = {k: v for k, v in ss.items() if k != "data"}
        steady["attained"] = bool(steady.get("attained"))
    return FioResult(
        jobname=str(job.get("jobname", "")), fio_version=version,
        bw_bytes=float(d.get("bw_bytes", 0)), iops=float(d.get("iops", 0.0)),
        io_bytes=int(d.get("io_bytes", 0)), runtime_ms=int(d.get("runtime", 0)),
        clat_mean=float(clat["mean"]) if clat.get("N") else None,
        clat_p50=_pct(pct, "50.000000"), clat_p99=_pct(pct, "99.000000"), clat_p999=_pct(pct, "99.900000"),
        steadystate=steady, error=int(job.get("error", 0)),
    )


def _pct(percentiles: Mapping[str, Any], key: str) -> float | None:
    return float(percentiles[key]) if key in percentiles else None


def parse_fio_json(data: str | bytes | Mapping[str, Any]) -> FioResult:
    """FioResult from fio's json/json+ output (text with leading junk, or an already-decoded dict)."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    obj = _decode_json_text(data) if isinstance(data, str) else data
    jobs = obj.get("jobs") or []
    if not jobs:
        raise FioError("fio output has no jobs")
    version = obj.get("fio version")
    results = [_job_result(j, version) for j in jobs]
    return results[0] if len(results) == 1 else _merge_jobs(results)


def _merge_jobs(results: list[FioResult]) -> FioResult:
    """Jobs reported separately (no group_reporting): throughput adds up; for latency the worst job
    stands for the group, since percentiles of separate jobs cannot be combined exactly."""
    def worst(attr: str) -> float | None:
        vals = [getattr(r, attr) for r in results if getattr(r, attr) is not None]
        return max(vals) if vals else None

    return FioResult(
        jobname=results[0].jobname, fio_version=results[0].fio_version,
        bw_bytes=sum(r.bw_bytes for r in results), iops=sum(r.iops for r in results),
        io_bytes=sum(r.io_bytes for r in results), runtime_ms=max(r.runtime_ms for r in results),
        clat_mean=worst("clat_mean"), clat_p50=worst("clat_p50"), clat_p99=worst("clat_p99"),
        clat_p999=worst("clat_p999"), steadystate=results[0].steadystate,
        error=next((r.error for r in results if r.error), 0),
    )


def combine_results(results: list[FioResult]) -> FioResult:
    """Repetitions of one job: each figure is the median (what the gate compares); samples stay attached."""
    if not results:
        raise ValueError("no fio results to combine")

    def med(attr: str) -> float | None:
        vals = [getattr(r, attr) for r in results if getattr(r, attr) is not None]
        return float(statistics.median(vals)) if vals else None

    last = results[-1]
    return replace(
        last, bw_bytes=med("bw_bytes") or 0.0, iops=med("iops") or 0.0, io_bytes=int(med("io_bytes") or 0),
        runtime_ms=int(med("runtime_ms") or 0), clat_mean=med("clat_mean"), clat_p50=med("clat_p50"),
        clat_p99=med("clat_p99"), clat_p999=med("clat_p999"),
        error=next((r.error for r in results if r.error), 0), repetitions=tuple(results),
    )


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
    return "\n".join(text.strip().splitlines()[-lines:]) or "<empty>"


def _proc_stat(pid: int | str) -> list[str] | None:
    """Fields after the command name in /proc/PID/stat: [state, ppid, ..., starttime at 19, ...]."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of pid's descendants. fio's job processes each call setsid(), so neither
    the process group nor the session reaches them; the start time guards against pid reuse."""
    children: dict[int, list[tuple[int, str]]] = {}
    for d in Path("/proc").glob("[0-9]*"):
        fields = _proc_stat(d.name)
        if fields and len(fields) > 19:
            children.setdefault(int(fields[1]), []).append((int(d.name), fields[19]))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += [k for k, _ in kids]
    return out


def _stop(proc: subprocess.Popen[str], grace_s: float = 5.0) -> None:
    """SIGTERM lets fio stop its jobs and exit; whatever is left after the grace period is killed."""
    victims = _descendants(proc.pid)
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
    for pid, started in victims:
        fields = _proc_stat(pid)
        if fields and len(fields) > 19 and fields[19] == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _run_child(argv: list[str], cwd: Path, timeout: float) -> tuple[int, str, str]:
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:  # timeout, or Ctrl-C in pytest: never leave fio reading the drive behind us
        _stop(proc)
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a job stuck in the kernel (hung drive) keeps the pipe open
            pass
        raise
    return proc.returncode, out, err


def run_fio(job: FioJob, workdir: Path, artifact_dir: Path, timeout: float, stem: str | None = None,
            check_direct: bool = True) -> FioResult:
    """Run one job from a job file saved in artifact_dir; raise FioError with fio's words on failure."""
    exe = find_fio()
    if exe is None:
        raise FioError(MISSING_REASON)
    if job.direct and check_direct:
        check_direct_io(Path(job.filename).parent if job.filename else workdir)
    stem = stem or job.name
    jobfile, output = artifact_dir / f"{stem}.fio", artifact_dir / f"{stem}.json"
    jobfile.write_text(job.to_jobfile())
    output.unlink(missing_ok=True)
    argv = [exe, "--output-format=json+", f"--output={output}", str(jobfile)]
    try:
        rc, out, err = _run_child(argv, workdir, timeout)
    except subprocess.TimeoutExpired:
        raise FioError(f"fio timed out after {timeout:g} s running {jobfile}; the job or the drive hung "
                       f"(raise the limit with --nvme-ai-timeout)") from None
    text = output.read_text(errors="replace") if output.exists() else out
    if rc != 0:
        raise FioError(f"fio exited with status {rc} running job file {jobfile}\n"
                       f"--- fio stderr (last lines) ---\n{_tail(err + chr(10) + out)}")
    result = parse_fio_json(text)
    if result.error:
        raise FioError(f"fio reported error {result.error} ({os.strerror(result.error)}) in job {job.name!r}, "
                       f"job file {jobfile}\n--- fio stderr ---\n{_tail(err)}")
    return result


# ---- the fixture's object -------------------------------------------------------------------
class FioRunner:
    """What the `fio` fixture returns: runs jobs in the target's workdir and records their metrics.

    Publishes in `recorder.session_cache` for suites that compare against fio:
    ("fio_bw", label, bs_bytes) -> median bw of the last job with that block size, and
    ("fio_bw", label) -> the best median bw any job showed on that target this session.
    """

    def __init__(self, target: Target, recorder: Recorder) -> None:
        self.target = target
        self.recorder = recorder

    @property
    def cache(self) -> dict[Any, Any]:
        return self.recorder.session_cache

    def run(self, job: FioJob, repeat: int | None = None, record: bool = True) -> FioResult:
        """Run `job` `repeat` times (default: the session's repeat); one metric sample per repetition."""
        n = repeat if repeat is not None else self.recorder.repeat
        if n < 1:
            raise ValueError(f"repeat={n} must be at least 1")
        job = self.complete(job)
        with _skip_without_direct_io():
            if job.direct:
                self._check_direct_once()
            stems = self._free_stems(job.name, n)
            results = [run_fio(job, self.target.workdir, self.recorder.artifact_dir, self.recorder.timeout,
                               stem=stem, check_direct=False) for stem in stems]
        combined = combine_results(results)
        if record:
            self._record(job, combined, stems)
        return combined

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
        key = ("fio_data", self.target.label, size)
        cached: Path | None = self.cache.get(key)
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
        self.cache[key] = path
        return path

    def _check_direct_once(self) -> None:
        key = ("fio_odirect", str(self.target.workdir))
        if key not in self.cache:
            try:
                check_direct_io(self.target.workdir)
                self.cache[key] = None
            except DirectIOUnsupported as exc:
                self.cache[key] = str(exc)
        if self.cache[key]:
            raise DirectIOUnsupported(self.cache[key])

    def _check_space(self, size: int) -> None:
        import pytest

        free = shutil.disk_usage(self.target.workdir).free
        if free < size + (64 << 20):  # leave room so the measurement does not fill the drive
            pytest.skip(f"target {self.target.path} has {free / 2**30:.1f} GiB free; the "
                        f"{self.recorder.profile.name} profile lays out a {size / 2**30:.1f} GiB file")

    def _record(self, job: FioJob, result: FioResult, stems: list[str]) -> None:
        rec = self.recorder
        for name, attr in (("bw", "bw_bytes"), ("iops", "iops"), ("clat_p50", "clat_p50"),
                           ("clat_p99", "clat_p99"), ("clat_p999", "clat_p999")):
            samples = result.samples(attr)
            if samples:
                rec.record_samples(name, samples)
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
        self.cache[("fio_bw", label, job.bs_bytes)] = bw
        self.cache[("fio_bw", label)] = max(bw, self.cache.get(("fio_bw", label), 0.0))


@contextmanager
def _skip_without_direct_io() -> Iterator[None]:
    """A target that refuses O_DIRECT cannot be measured without the page cache: skip, saying why."""
    import pytest

    try:
        yield
    except DirectIOUnsupported as exc:
        pytest.skip(str(exc))


def _split_among_jobs(job: FioJob, total: int) -> FioJob:
    """numjobs>1: each job reads its own slice of the file, like DeepSpeed's parallel reads of one tensor,
    instead of all jobs re-reading the same first blocks."""
    per_job = total // job.numjobs // job.bs_bytes * job.bs_bytes
    if per_job < job.bs_bytes:
        raise ValueError(f"file of {format_size(total)} is too small to give {job.numjobs} jobs one bs={job.bs} each")
    return replace(job, size=per_job, offset_increment=per_job)
