"""How the history store scales, on SQLite and on PostgreSQL (a throwaway cluster, as in the tests).

Prints two figures per backend (goal: both under 1 s on the build machine):
- append: the time to store one run of 500 tests (4 metrics each, 3-5 samples per metric), into a store
  that already holds everything below (the median of --repeat appends, each a new run id);
- read: the time to read one metric's series of one test over 10,000 runs (the median of --repeat reads).
Also printed: the time to find change points in that series (what `nvme-ai history changes` does per series).

Fill: 10,000 runs of the one test that is read back (1 test, 4 metrics, 3 samples), and --big-runs runs of
500 tests (default 100: a quarter of nightly runs, 200,000 metric rows), one transaction per 500 runs.

    python benchmarks/history_scale.py [--runs 10000] [--big-runs 100] [--repeat 5] [--no-postgres]

Heavy: run it under the shared lock (flock /work/heavy.lock ...).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pytest_nvme_ai.core.history_types import SeriesKey
from pytest_nvme_ai.history.flatten import flatten
from pytest_nvme_ai.history.store import Store, open_store

TESTS_DIR = str(Path(__file__).resolve().parent.parent / "tests")  # synthetic runs and the PG cluster live there

KEY = SeriesKey("suites/test_seq_read.py::test_seq_read[case0]", "bw", "Micron 7450", "runner-a")
BATCH = 500


def run_doc(*args: Any, **kw: Any) -> dict[str, Any]:
    if TESTS_DIR not in sys.path:
        sys.path.insert(0, TESTS_DIR)
    from history_data import run_doc as doc

    return doc(*args, **kw)


def fill(store: Store, runs: int, big_runs: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    rows = 0
    batch = []
    for i in range(runs):
        batch.append(flatten(run_doc(f"small-{i:05d}", i, n_tests=1)))
        if len(batch) == BATCH:
            rows += sum(len(b.metrics) for b in batch)
            store.append_rows(batch)
            batch = []
    rng = random.Random(1)
    for j in range(big_runs):
        # The big runs hold the same test key as the small ones: the series read must skip nothing.
        batch.append(flatten(run_doc(f"big-{j:04d}", runs + j, n_tests=500, rng=rng,
                                     samples=rng.choice((3, 4, 5)))))
        if len(batch) == 20:
            rows += sum(len(b.metrics) for b in batch)
            store.append_rows(batch)
            batch = []
    if batch:
        rows += sum(len(b.metrics) for b in batch)
        store.append_rows(batch)
    return time.perf_counter() - t0, rows


def measure(store: Store, args: argparse.Namespace, label: str) -> dict[str, Any]:
    fill_s, rows = fill(store, args.runs, args.big_runs)
    appends = []
    rng = random.Random(2)
    for k in range(args.repeat):
        doc = run_doc(f"append-{label}-{k}", args.runs + args.big_runs + k, n_tests=500, rng=rng,
                      samples=rng.choice((3, 4, 5)))
        t0 = time.perf_counter()
        assert store.append(doc)
        appends.append(time.perf_counter() - t0)
    reads = []
    n_points = 0
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        pts = store.series(KEY)
        reads.append(time.perf_counter() - t0)
        n_points = len(pts)
    from pytest_nvme_ai.history.changes import find_changes

    find_changes(pts[:10])   # imports (ruptures, scipy) outside the timing
    t0 = time.perf_counter()
    find_changes(pts)
    changes_s = time.perf_counter() - t0
    return {"backend": label, "fill_s": fill_s, "metric_rows": rows, "runs": store.count_runs(),
            "append_s": statistics.median(appends), "read_s": statistics.median(reads), "points": n_points,
            "changes_s": changes_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000, help="runs of the one test that is read back")
    ap.add_argument("--big-runs", type=int, default=100, help="runs of 500 tests in the store (default 100)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="nvme-ai-history-bench-") as d:
        store = open_store(str(Path(d) / "history.sqlite"))
        try:
            results.append(measure(store, args, "sqlite"))
        finally:
            store.close()
        print(f"sqlite file: {(Path(d) / 'history.sqlite').stat().st_size / 1e6:.0f} MB", flush=True)
    if not args.no_postgres:
        sys.path.insert(0, TESTS_DIR)
        import pg_cluster

        reason = pg_cluster.missing_reason()
        if reason:
            print(f"postgresql: skipped ({reason})")
        else:
            cluster = pg_cluster.new_cluster().start()
            try:
                store = open_store(cluster.createdb("bench"))
                try:
                    results.append(measure(store, args, "postgresql"))
                finally:
                    store.close()
            finally:
                cluster.stop()
    print(f"\nfilled: {args.runs} runs x 1 test + {args.big_runs} runs x 500 tests (4 metrics per test); "
          f"median of {args.repeat}")
    print(f"{'backend':<11} {'runs':>6} {'metric rows':>11} {'fill':>8} {'append 500 tests':>17} "
          f"{'read 1 series':>14} {'points':>7} {'change points':>14}  goal < 1 s")
    for r in results:
        ok = "yes" if r["append_s"] < 1 and r["read_s"] < 1 else "NO"
        print(f"{r['backend']:<11} {r['runs']:>6} {r['metric_rows']:>11} {r['fill_s']:>7.1f}s "
              f"{r['append_s']:>16.3f}s {r['read_s']:>13.3f}s {r['points']:>7} {r['changes_s']:>13.3f}s  {ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
