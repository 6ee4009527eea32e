"""How good and how fast is `nvme-ai tune` against the exhaustive grid, and does aio keep up with fio?

Side by side in one run, on one file in a private directory of TARGET:

1. the tuner (`tune.search_best`) and the exhaustive 240-point grid (one read per
   point, the same read the tuner's screening makes), timed;
2. head-to-head: the tuner's pick, the grid's pick, the best of ds_nvme_tune's 8
   points and DeepSpeed's default, re-measured in interleaved rounds (ABBA), so
   the "best found ÷ grid best" ratio is not the grid's lucky maximum of 240
   noisy reads against the tuner's confirmed median;
3. aio vs fio on the same file: for the tuned setting and the default, one aio
   read and one fio read shaped the same way (`aio.twin_fio_job`), interleaved.

    .venv/bin/python benchmarks/tuner_vs_grid.py [TARGET] --file-size 128M --rounds 7
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from pytest_nvme_ai.measure.aio.runner import AioSettings, aio_missing_reason, measure_read, twin_fio_job, write_data_file
from pytest_nvme_ai.measure.fio.runner import find_fio, parse_size, run_fio
from pytest_nvme_ai.measure.aio.tune import DEFAULT_SETTINGS, DS_NVME_TUNE_GRID, Space, aio_measure, grid_search, search_best


def gb(bw: float) -> str:
    return f"{bw / 1e9:6.3f} GB/s"


def interleaved_medians(candidates: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each round measures every candidate once; odd rounds in reverse order (ABBA) to cancel drift."""
    names = list(candidates)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            out[n].append(candidates[n]())
    return out


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.monotonic()
    res = fn()
    return res, time.monotonic() - t0


def aio_vs_fio(file: Path, size: int, s: AioSettings, rounds: int, workdir: Path) -> dict[str, Any]:
    job = twin_fio_job(file, size, s)
    counter = iter(range(1 << 30))

    def aio_bw() -> float:
        return measure_read(file, s).bw

    def fio_bw() -> float:
        r = run_fio(job, workdir, workdir, timeout=600, stem=f"twin-{next(counter)}")
        assert r.io_bytes == size, f"fio read {r.io_bytes} of {size} B"
        return r.bw_bytes

    m = interleaved_medians({"aio": aio_bw, "fio": fio_bw}, rounds)
    ratios = [a / f for a, f in zip(m["aio"], m["fio"], strict=True)]
    return {"aio_bw": statistics.median(m["aio"]), "fio_bw": statistics.median(m["fio"]),
            "ratio": statistics.median(ratios), "ratios": ratios}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", nargs="?", help="directory on the drive (default: a temp dir)")
    p.add_argument("--file-size", default="128M")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds for head-to-head and aio-vs-fio")
    p.add_argument("--budget", type=float, default=120.0, help="tuner budget, s")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)

    reason = aio_missing_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    root = Path(args.target) if args.target else Path(tempfile.mkdtemp(prefix="tuner-vs-grid-"))
    work = root / f".nvme-ai-bench-{int(time.time())}"
    work.mkdir()
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.target:
            shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    size = parse_size(args.file_size)
    file = work / "bench.bin"
    write_data_file(file, size)
    measure = aio_measure(file)
    measure(DEFAULT_SETTINGS)  # warm the worker and the drive; not counted on either side
    print(f"file {size >> 20} MiB in {work}; grid {len(Space())} points; rounds {args.rounds}", flush=True)

    (tuned, search), tuner_s = timed(lambda: search_best(measure, args.budget))
    print(f"tuner: {tuned.label} after {len(search.history)} reads in {tuner_s:.1f} s", flush=True)
    grid, grid_s = timed(lambda: grid_search(measure))
    print(f"grid:  {grid.best.label} after {grid.evaluations} reads in {grid_s:.1f} s", flush=True)
    ds_tune_best = max(DS_NVME_TUNE_GRID, key=lambda s: next(e.bw for e in grid.history if e.settings == s))

    picks = {"tuner": tuned, "grid": grid.best, "ds_nvme_tune": ds_tune_best, "default": DEFAULT_SETTINGS}
    distinct = dict.fromkeys(picks.values())
    h2h = interleaved_medians({s.label: (lambda s=s: measure(s)) for s in distinct}, args.rounds)
    med = {name: statistics.median(h2h[s.label]) for name, s in picks.items()}

    figures: dict[str, Any] = {
        "file_bytes": size, "grid_points": len(Space()),
        "tuner": {"pick": tuned.label, "reads": len(search.history), "distinct": len(search.samples),
                  "seconds": tuner_s},
        "grid": {"pick": grid.best.label, "reads": grid.evaluations, "seconds": grid_s,
                 "raw_best_bw": grid.best_bw},
        "head_to_head_bw": {name: med[name] for name in picks},
        "best_found_over_grid_best": med["tuner"] / med["grid"],
        "tuner_time_over_grid_time": tuner_s / grid_s,
        "tuner_over_default": med["tuner"] / med["default"],
        "tuner_over_ds_nvme_tune": med["tuner"] / med["ds_nvme_tune"],
        "head_to_head_samples": h2h,
        "tuner_history": [(e.phase, e.settings.label, e.bw) for e in search.history],
    }
    print("\nhead-to-head (median of interleaved re-measurements):")
    for name, s in picks.items():
        print(f"  {name:<13} {s.label:<20} {gb(med[name])}")
    print(f"\nbest found / grid best:  {figures['best_found_over_grid_best']:.3f}   (target >= 0.95)")
    print(f"tuner time / grid time:  {figures['tuner_time_over_grid_time']:.3f}   "
          f"({len(search.history)} vs {grid.evaluations} reads)")
    print(f"tuned / default:         {figures['tuner_over_default']:.3f}")
    print(f"tuned / ds_nvme_tune:    {figures['tuner_over_ds_nvme_tune']:.3f}")

    if find_fio():
        for name in ("tuner", "default"):
            r = aio_vs_fio(file, size, picks[name], args.rounds, work)
            figures[f"aio_vs_fio_{name}"] = r
            print(f"aio vs fio ({name}, {picks[name].label}): aio {gb(r['aio_bw'])}  fio {gb(r['fio_bw'])}  "
                  f"ratio {r['ratio']:.3f}")
    else:
        print("aio vs fio: skipped (fio not found: apt-get install fio)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
