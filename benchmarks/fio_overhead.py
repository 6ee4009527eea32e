"""What does the plugin cost per fio test, compared with running the same fio job by hand?

Side by side in one run, interleaved: each round runs the job K times directly
(`fio job.fio`, a subprocess, exactly what a person would do) and K times as
pytest tests through the `fio` fixture (one pytest session, repeat 1), in
alternating order so drift of a noisy disk (burst credits) hits both alike.

Per test, the plugin side is the test's setup+call+teardown time from
results.json; the direct side is the fio subprocess's wall time. The session's
fixed cost (pytest start, device identity, results.json/report) is printed
separately: it is paid once per run, not per test.

    .venv/bin/python benchmarks/fio_overhead.py --rounds 5 --tests 3 --runtime 1
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pytest_nvme_ai.measure.fio.runner import FioJob, find_fio, format_size, parse_size, run_fio

TEST_TEMPLATE = '''
import pytest
from pytest_nvme_ai.measure.fio.runner import FioJob

JOB = {job!r}


def test_0_layout(fio):
    fio.data_file({size})  # lay the data file out before the measured tests


@pytest.mark.parametrize("i", range({k}))
def test_fio(fio, i):
    fio.run(FioJob(**JOB), repeat=1)
'''


@dataclass(frozen=True)
class Round:
    direct_s: tuple[float, ...]
    plugin_s: tuple[float, ...]
    session_wall_s: float
    session_tests_s: float      # every test's duration, the layout test included

    @property
    def session_fixed_s(self) -> float:
        return self.session_wall_s - self.session_tests_s


def job_kwargs(args: argparse.Namespace) -> dict[str, object]:
    return {"name": "overhead", "bs": args.bs, "iodepth": args.iodepth, "size": args.size,
            "runtime": args.runtime, "time_based": True}


def run_direct(job: FioJob, workdir: Path, k: int) -> list[float]:
    """The job as a person runs it: `fio job.fio` (with json+ output, as the plugin asks for)."""
    exe = find_fio() or "fio"
    jobfile = workdir / "direct.fio"
    jobfile.write_text(job.to_jobfile())
    times = []
    for _ in range(k):
        t0 = time.perf_counter()
        subprocess.run([exe, "--output-format=json+", f"--output={workdir / 'direct.json'}", str(jobfile)],
                       check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return times


def run_plugin(bench: Path, target: Path, k: int) -> tuple[list[float], float, float]:
    """One pytest session with K fio tests; per-test durations from results.json, and the session wall."""
    reports = bench / "reports"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(bench / "pytest.ini"),
            "--rootdir", str(bench), str(bench / "test_overhead.py"), "--nvme-ai-target", str(target),
            "--nvme-ai-repeat", "1", "--nvme-ai-report-dir", str(reports),
            "--nvme-ai-baseline-dir", str(bench / "baselines")]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=bench, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"pytest failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    data = json.loads((reports / "latest" / "results.json").read_text())
    durations = [t["duration"] for t in data["tests"] if "test_fio[" in t["nodeid"]]
    if len(durations) != k:
        raise SystemExit(f"expected {k} fio tests in results.json, found {len(durations)}")
    return durations, wall, sum(t["duration"] for t in data["tests"])


def setup(bench: Path, args: argparse.Namespace) -> FioJob:
    (bench / "pytest.ini").write_text("[pytest]\n")
    (bench / "target").mkdir()
    size = parse_size(args.size)
    (bench / "test_overhead.py").write_text(TEST_TEMPLATE.format(job=job_kwargs(args), size=size, k=args.tests))
    data = bench / "direct-data.bin"
    layout = FioJob(name="layout", rw="write", bs="1M", iodepth=16, size=size, filename=str(data))
    run_fio(layout, bench, bench, timeout=600)
    return FioJob(**job_kwargs(args), filename=str(data))  # type: ignore[arg-type]


def fmt(xs: list[float]) -> str:
    return " ".join(f"{x:6.3f}" for x in xs)


def report(rounds: list[Round], args: argparse.Namespace) -> None:
    direct = [x for r in rounds for x in r.direct_s]
    plugin = [x for r in rounds for x in r.plugin_s]
    d, p = statistics.median(direct), statistics.median(plugin)
    fixed = statistics.median(r.session_fixed_s for r in rounds)
    print(f"\njob: bs={args.bs} iodepth={args.iodepth} size={args.size} runtime={args.runtime}s, "
          f"{args.rounds} rounds x {args.tests} tests, fio {find_fio()}")
    print(f"direct fio per job   median {d:.3f} s  (min {min(direct):.3f}, max {max(direct):.3f})")
    print(f"plugin per fio test  median {p:.3f} s  (min {min(plugin):.3f}, max {max(plugin):.3f})")
    print(f"overhead per test    {1000 * (p - d):+.1f} ms   ratio plugin/direct {p / d:.3f}")
    print(f"session fixed cost   median {fixed:.2f} s (pytest start, device identity, results.json, report; "
          f"paid once per run)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tests", type=int, default=3, help="fio tests per pytest session (and direct runs per round)")
    ap.add_argument("--runtime", type=float, default=1.0, help="seconds per fio job")
    ap.add_argument("--bs", default="1M")
    ap.add_argument("--iodepth", type=int, default=16)
    ap.add_argument("--size", default="256M", help="data file size")
    ap.add_argument("--dir", help="directory on the drive to measure (default: a temp dir)")
    args = ap.parse_args(argv)
    if find_fio() is None:
        print("fio not found: apt-get install fio", file=sys.stderr)
        return 2
    args.size = format_size(parse_size(args.size))
    bench = Path(tempfile.mkdtemp(prefix="nvme-ai-fio-overhead-", dir=args.dir))
    try:
        job = setup(bench, args)
        rounds = []
        for i in range(args.rounds):
            if i % 2 == 0:  # alternate who goes first so a drifting disk does not favour one side
                direct = run_direct(job, bench, args.tests)
                plugin, wall, tests_s = run_plugin(bench, bench / "target", args.tests)
            else:
                plugin, wall, tests_s = run_plugin(bench, bench / "target", args.tests)
                direct = run_direct(job, bench, args.tests)
            r = Round(tuple(direct), tuple(plugin), wall, tests_s)
            rounds.append(r)
            print(f"round {i + 1}: direct {fmt(direct)} | plugin {fmt(plugin)} | session wall {wall:.2f} s "
                  f"(fixed {r.session_fixed_s:.2f} s)", flush=True)
        report(rounds, args)
    finally:
        shutil.rmtree(bench, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
