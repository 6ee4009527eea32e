"""How good is the gate? Detection and false-alarm rates measured with real fio.

fio's `rate=` caps a job's bandwidth, which emulates a drive 10% or 20% slower
than the baseline. Each trial is one gated comparison exactly as the plugin
makes it: the profile's default repetitions (3) for the baseline and 3 for
"now", compared by `gate.compare` at the default tolerance (10%). The four
conditions take turns within each trial round, so slow drift of the machine
(burst credits) reaches all of them alike; within one comparison the 3
baseline runs come before the 3 current runs, as in real use, where the
baseline was recorded earlier, so drift within a comparison is part of what
the false-alarm rate measures.

Conditions:
  throttled, no change      baseline rate R, now rate R        -> false alarm if "regression"
  throttled, 10% slower     baseline rate R, now rate 0.9 R    -> detected if "regression"
  throttled, 20% slower     baseline rate R, now rate 0.8 R    -> detected if "regression"
  unthrottled, no change    both at the drive's own speed      -> false alarms from real noise

Run:  .venv/bin/python benchmarks/gate_power.py [--trials 20] [--rate-mib 200] [--runtime 1]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from pytest_nvme_ai.measure.fio.runner import FioJob, run_fio
from pytest_nvme_ai.gate.verdict import compare
from pytest_nvme_ai.core.metrics import Metric

REPEAT = 3  # the quick/standard profiles' default repetitions


def measure(job: FioJob, workdir: Path, n: int = REPEAT) -> Metric:
    samples = [run_fio(job, workdir, workdir, timeout=120, stem="gp").bw_bytes for _ in range(n)]
    return Metric.of("bw", samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--rate-mib", type=float, default=200.0, help="baseline rate cap, MiB/s (below the disk's speed)")
    ap.add_argument("--runtime", type=float, default=1.0, help="seconds per fio run")
    ap.add_argument("--tolerance", type=float, default=10.0)
    ap.add_argument("--dir", help="directory for the data file (default: a temp dir, removed afterwards)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gate-power-", dir=args.dir))
    try:
        data = work / "data.bin"
        run_fio(FioJob(name="layout", rw="write", bs="1M", iodepth=16, size="256M", filename=str(data)),
                work, work, timeout=300, stem="layout")
        base_job = FioJob(name="gp", bs="1M", iodepth=16, size="256M", filename=str(data), runtime=args.runtime,
                          time_based=True)
        rate = int(args.rate_mib * 1024 * 1024)
        conditions = {
            "throttled, no change": (rate, rate),
            "throttled, 10% slower": (rate, int(rate * 0.9)),
            "throttled, 20% slower": (rate, int(rate * 0.8)),
            "unthrottled, no change": (None, None),
        }
        verdicts: dict[str, Counter[str]] = {c: Counter() for c in conditions}
        deltas: dict[str, list[float]] = {c: [] for c in conditions}
        t0 = time.monotonic()
        for trial in range(args.trials):
            for cond, (r_base, r_now) in conditions.items():
                base = measure(replace(base_job, rate=r_base), work)
                now = measure(replace(base_job, rate=r_now), work)
                c = compare(now, base, tolerance_pct=args.tolerance)
                verdicts[cond][c.verdict] += 1
                deltas[cond].append(c.delta or 0.0)
            print(f"trial {trial + 1}/{args.trials} done ({time.monotonic() - t0:.0f} s)", flush=True)

        print(f"\ngate power: {args.trials} trials per condition, {REPEAT} runs baseline + {REPEAT} now per trial, "
              f"tolerance {args.tolerance:g}%, fio bs=1M iodepth=16 {args.runtime:g} s runs, rate cap {args.rate_mib:g} MiB/s")
        print(f"{'condition':<26} {'regression rate':>16} {'median delta':>13}  verdicts")
        for cond in conditions:
            n = sum(verdicts[cond].values())
            reg = verdicts[cond]["regression"] / n
            med = sorted(deltas[cond])[len(deltas[cond]) // 2]
            kind = "false-alarm" if "no change" in cond else "detection"
            print(f"{cond:<26} {reg:>8.0%} ({kind:>11}) {med * 100:>+8.1f}%  {dict(verdicts[cond])}")
        print(f"total time {time.monotonic() - t0:.0f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
