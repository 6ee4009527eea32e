"""fio client/server: raw sequential reads on a drive in another host (`fio --server` there).

A qualification lab spreads drives over hosts. The runner sends one job file to `fio --client`:
a layout job writes the data file, N read jobs (one per repetition, `stonewall`ed) measure, and two
final jobs remove what was written: `filedelete` removes the file and `exec rmdir` the private
directory (fio creates that directory itself when it lays out the file). Every path in the job
file lies in `DIR/.nvme-ai-<run id>/` on the remote host: the only place this run writes there.

Remote targets have their own option, `--nvme-ai-fio-client HOST=DIR`, never `--nvme-ai-target`
(whose `:` already separates targets). HOST is a host name or address, optionally `,PORT`
(fio's syntax; default port 8765).
"""
from __future__ import annotations

import posixpath
import re
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from pytest_nvme_ai.core import procutil
from pytest_nvme_ai.core.text import safe_name
from pytest_nvme_ai.measure.fio.job import FioError, FioJob, FioResult, fio_value, format_size, parse_fio_jobs

DEFAULT_PORT = 8765
# fullmatch, never `$`: `$` also matches before a trailing newline, which would reach the job file.
_HOST_RE = re.compile(r"[A-Za-z0-9_.-]+")
_DIR_RE = re.compile(r"/[A-Za-z0-9_./+-]*")   # no spaces, ':', '%', '$', ';', '#': fio splits, expands or cuts those


@dataclass(frozen=True)
class RemoteTarget:
    host: str
    port: int
    directory: str     # on the remote host, absolute

    @property
    def client_arg(self) -> str:
        return f"{self.host},{self.port}"

    @property
    def label(self) -> str:
        return safe_name(f"{self.host}_{self.port}{self.directory}", None, default="", keep="_.")

    def private_dir(self, run_id: str) -> str:
        return posixpath.join(self.directory, f".nvme-ai-{run_id}")


def parse_remote(spec: str) -> RemoteTarget:
    """'HOST[,PORT]=DIR' -> RemoteTarget; errors say what to write instead."""
    host, sep, directory = str(spec).partition("=")
    if not sep or not host or not directory:
        raise ValueError(f"{spec!r} is not HOST=DIR (e.g. storage01=/mnt/nvme0, or 127.0.0.1,8765=/mnt/nvme0)")
    name, _, port_text = host.partition(",")
    if not _HOST_RE.fullmatch(name):
        raise ValueError(f"host {name!r} in {spec!r} must be a host name or IPv4 address")
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"port {port_text!r} in {spec!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"port {port} in {spec!r} is out of range")
    if not _DIR_RE.fullmatch(directory):
        raise ValueError(f"directory {directory!r} in {spec!r} must be an absolute directory on the remote host, "
                         f"of letters, digits and '_ . / + -' only (fio would split, expand or cut anything else: "
                         f"spaces, ':', '%', '$', ';', '#', line breaks)")
    # POSIX lets a path start with exactly two slashes and normpath keeps them ('//dev' stays '//dev'):
    # on Linux that is '/dev', so collapse them before the checks below.
    directory = "/" + posixpath.normpath(directory).lstrip("/")
    if directory == "/":
        raise ValueError(f"directory '/' in {spec!r}: give an absolute directory on the drive under test, not '/' itself")
    if directory == "/dev" or directory.startswith("/dev/"):
        raise ValueError(f"{directory!r} is under /dev: pytest-nvme-ai only reads files on a filesystem")
    return RemoteTarget(name, port, directory)


def remote_jobfile(remote: RemoteTarget, run_id: str, job: FioJob, size: int, repeat: int) -> str:
    """Layout, `repeat` read jobs, then the clean-up jobs; every filename inside the private dir."""
    private = remote.private_dir(run_id)
    data = posixpath.join(private, f"fio-data-{format_size(size)}.bin")
    layout = FioJob(name="layout", rw="write", bs="1M", iodepth=16, size=size, filename=data, direct=job.direct)
    read = replace(job, filename=data, size=job.size or size)
    lines = ["; pytest-nvme-ai remote fio run: everything written lies in " + private,
             "; rerun by hand with: fio --client=<host,port> <this file>"]
    lines += _section(layout)
    for i in range(1, repeat + 1):
        lines += _section(replace(read, name=f"{job.name}-{i}"), stonewall=True)
    lines += ["[cleanup-files]", "stonewall", f"filename={fio_value('filename', data)}", "ioengine=filedelete",
              "nrfiles=1", "[cleanup-dir]", "stonewall", "ioengine=exec", "program=/bin/rmdir",
              f"arguments={fio_value('arguments', private)}",
              "runtime=1", "time_based=1", "grace_time=1",
              # fio's exec engine otherwise writes <job>.stdout/.stderr into the server's working
              # directory: outside the private dir, and on a remote host nobody would clean it up.
              "std_redirect=0"]
    return "\n".join(lines) + "\n"


def _section(job: FioJob, stonewall: bool = False) -> list[str]:
    return [f"[{job.name}]"] + (["stonewall"] if stonewall else []) + [f"{k}={v}" for k, v in job.options()]


def run_remote(remote: RemoteTarget, job: FioJob, run_id: str, size: int, repeat: int, artifact_dir: Path,
               timeout: float, exe: str = "fio") -> list[FioResult]:
    """One `fio --client` run; the read jobs' results, in repetition order."""
    stem = f"{job.name}-{remote.label}"
    jobfile, output = artifact_dir / f"{stem}.fio", artifact_dir / f"{stem}.json"
    jobfile.write_text(remote_jobfile(remote, run_id, job, size, repeat))
    output.unlink(missing_ok=True)
    argv = [exe, f"--client={remote.client_arg}", "--output-format=json+", f"--output={output}", str(jobfile)]
    try:
        rc, out, err = procutil.run(argv, timeout)
    except subprocess.TimeoutExpired:
        raise FioError(f"fio --client={remote.client_arg} timed out after {timeout:g} s running {jobfile}") from None
    text = output.read_text(errors="replace") if output.exists() else out
    if rc != 0:
        tail = "\n".join((err + "\n" + out).strip().splitlines()[-15:])
        raise FioError(f"fio --client={remote.client_arg} {procutil.describe_exit(rc)} (is `fio --server` running "
                       f"there, and is {remote.directory} writable?) running {jobfile}\n{tail}")
    names = [f"{job.name}-{i}" for i in range(1, repeat + 1)]
    results = parse_fio_jobs(text, names=set(names))
    for r in results:
        if r.error:
            raise FioError(f"remote job {r.jobname!r} on {remote.host} reported error {r.error}, job file {jobfile}")
    order = {n: i for i, n in enumerate(names)}
    return sorted(results, key=lambda r: order[r.jobname])
