"""What fio is told and what it answers: `FioJob` -> job file / argv, fio's json+ -> `FioResult`.

Pure data and parsing, no processes: a job is validated before fio sees it, so a
mistake is named by the option that makes it, not by fio's error mid-run.
`pytest_nvme_ai.measure.fio.runner` runs the jobs and re-exports these names.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from pytest_nvme_ai.core.fsutil import is_block_device
from pytest_nvme_ai.core.targets import fio_unsafe_reason
from pytest_nvme_ai.core.text import format_size, median, parse_size


_SS_RE = re.compile(r"^(iops|bw)(_slope)?:\d+(\.\d+)?%?$")
_RW = ("read", "write", "randread", "randwrite", "rw", "readwrite", "randrw")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class FioError(Exception):
    """fio could not run the job or reported an error; the message says what to look at."""


class DirectIOUnsupported(FioError):
    """The target filesystem refuses O_DIRECT: measuring it would measure the page cache."""


# ---- sizes and times ------------------------------------------------------------------------
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
        why = fio_unsafe_reason(self.filename)
        if why is not None:
            raise ValueError(f"filename={self.filename!r} {why}: fio would read another path; use a directory "
                             "without line breaks, ';', '#' or '$'")
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
            ("filename", fio_filename(self.filename)), ("rw", self.rw), ("bs", str(self.bs)),
            ("ioengine", self.ioengine), ("iodepth", str(self.iodepth)), ("direct", "1" if self.direct else "0"),
            ("numjobs", str(self.numjobs)), ("size", self.size), ("offset_increment", self.offset_increment),
            ("runtime", _opt_time(self.runtime)), ("ramp_time", _opt_time(self.ramp_time)),
            ("time_based", "1" if self.time_based else None), ("rate", self.rate),
            ("group_reporting", "1" if self.group_reporting else None),
            ("ss", self.ss), ("ss_dur", _opt_time(self.ss_dur)), ("ss_ramp", _opt_time(self.ss_ramp)),
        ]
        return [(k, fio_value(k, str(v))) for k, v in opts if v is not None]

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


def fio_value(key: str, value: str) -> str:
    """`value` for option `key`, refused (ValueError) where fio would read something else than written:
    a value that injects an option or expands a variable could make fio write outside the target."""
    why = fio_unsafe_reason(value)
    if why is not None:
        raise ValueError(f"fio option {key}={value!r} {why}: pytest-nvme-ai refuses it rather than let fio "
                         f"read another path or option; rename the directory (or choose another target)")
    return value


def fio_filename(path: str | None) -> str | None:
    """fio splits filename= on ':' into a list of files; a ':' in the path is escaped as fio documents, '\\:'.
    Anything else fio would interpret (line breaks, ';', '#', '$') is refused: fio has no escape for it."""
    return fio_value("filename", path).replace(":", "\\:") if path is not None else None


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
    # CPU of one job in % of one core (fio's usr_cpu/sys_cpu; with group_reporting fio averages its jobs).
    # A job near 100% measured the host's CPU, not the drive (measure/fio/hostbound.py).
    cpu_usr: float | None = None
    cpu_sys: float | None = None
    hostname: str | None = None  # fio client/server: the server that ran the job
    repetitions: tuple[FioResult, ...] = field(default=(), repr=False)

    def samples(self, attr: str) -> tuple[float, ...]:
        """One value per repetition (or this result's own value when it is a single run)."""
        runs = self.repetitions or (self,)
        return tuple(float(getattr(r, attr)) for r in runs if getattr(r, attr) is not None)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("repetitions")
        return d


# fio prints a NaN as a bare `-nan`/`nan` (e.g. the steady-state slope of a one-sample window): not JSON.
_BARE_NAN = re.compile(r"([:\[,]\s*)-?nan\b")


def _decode_json_text(text: str) -> dict[str, Any]:
    """fio prints notes and warnings ("note: ...", "fio: ...") before the JSON: skip to the first '{' line."""
    m = re.search(r"^\s*\{", text, re.MULTILINE)
    if m is None:
        head = text.strip().splitlines()[:3]
        raise FioError(f"no JSON in fio output (it starts with: {' | '.join(head) or '<empty>'})")
    try:
        obj, _ = json.JSONDecoder().raw_decode(_BARE_NAN.sub(r"\1NaN", text[m.start():].lstrip()))
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
        # The window's per-second bandwidth samples stay (SNIA's range criterion is judged on them); the
        # iops copy of the same window does not.
        steady = {k: v for k, v in ss.items() if k != "data"}
        data = ss.get("data") or {}
        if data:
            steady["data"] = {"bw_mean": data.get("bw_mean"), "bw": list(data.get("bw") or [])}
        steady["attained"] = bool(steady.get("attained"))
    return FioResult(
        jobname=str(job.get("jobname", "")), fio_version=version,
        bw_bytes=float(d.get("bw_bytes", 0)), iops=float(d.get("iops", 0.0)),
        io_bytes=int(d.get("io_bytes", 0)), runtime_ms=int(d.get("runtime", 0)),
        clat_mean=float(clat["mean"]) if clat.get("N") else None,
        clat_p50=_pct(pct, "50.000000"), clat_p99=_pct(pct, "99.000000"), clat_p999=_pct(pct, "99.900000"),
        steadystate=steady, error=int(job.get("error", 0)),
        cpu_usr=_float(job.get("usr_cpu")), cpu_sys=_float(job.get("sys_cpu")),
        hostname=str(job["hostname"]) if job.get("hostname") else None,
    )


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f else None  # NaN (fio prints -nan) is no figure


def _pct(percentiles: Mapping[str, Any], key: str) -> float | None:
    return float(percentiles[key]) if key in percentiles else None


def parse_fio_json(data: str | bytes | Mapping[str, Any]) -> FioResult:
    """FioResult from fio's json/json+ output (text with leading junk, or an already-decoded dict)."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    results = parse_fio_jobs(data)
    return results[0] if len(results) == 1 else _merge_jobs(results)


def parse_fio_jobs(data: str | bytes | Mapping[str, Any], names: set[str] | None = None) -> list[FioResult]:
    """One FioResult per job fio reported (local `jobs`, or a client's `client_stats` without the
    "All clients" sum), optionally only the jobs named in `names`."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    obj = _decode_json_text(data) if isinstance(data, str) else data
    jobs = obj.get("jobs") or [j for j in obj.get("client_stats") or [] if j.get("jobname") != "All clients"]
    if names is not None:
        jobs = [j for j in jobs if j.get("jobname") in names]
    if not jobs:
        raise FioError("fio output has no jobs" + (f" named {', '.join(sorted(names))}" if names else ""))
    version = obj.get("fio version")
    return [_job_result(j, version) for j in jobs]


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
        cpu_usr=worst("cpu_usr"), cpu_sys=worst("cpu_sys"), hostname=results[0].hostname,
    )


def combine_results(results: list[FioResult]) -> FioResult:
    """Repetitions of one job: each figure is the median (what the gate compares); samples stay attached."""
    if not results:
        raise ValueError("no fio results to combine")

    def med(attr: str) -> float | None:
        vals = [getattr(r, attr) for r in results if getattr(r, attr) is not None]
        return median(vals)

    last = results[-1]
    return replace(
        last, bw_bytes=med("bw_bytes") or 0.0, iops=med("iops") or 0.0, io_bytes=int(med("io_bytes") or 0),
        runtime_ms=int(med("runtime_ms") or 0), clat_mean=med("clat_mean"), clat_p50=med("clat_p50"),
        clat_p99=med("clat_p99"), clat_p999=med("clat_p999"),
        error=next((r.error for r in results if r.error), 0), repetitions=tuple(results),
        cpu_usr=med("cpu_usr"), cpu_sys=med("cpu_sys"),
    )
