"""How well does A/B in one session decide, on this machine? Many fio decisions, each its own pytest session.

Conditions (each decision is a fresh `python -m pytest` process running one fio bs1M read test with
`--nvme-ai-ab same`, on one target directory; the conditions are interleaved so drift reaches all alike):
  aa      A/A: nothing differs; every `worse` or `better` is a false one.
  cap50   arm B's reads capped at 50% of the bandwidth measured just before each of its runs: caught = worse.
  cap70   capped at 70% (30% slower): caught = worse.
Per condition it prints: decisions, worse / better / same / unknown, the false worse/better rate (aa) or the
caught rate (caps), the unknown rate, the median pairs and the median wall time per decision (from
results.json's `tests[].ab`: pairs_used, wall_s).

Goals (issue 23, fio): A/A false worse/better <= 5% of >= 20 decisions; cap50 caught >= 95%; cap70 caught
>= 90%; median wall time <= 2 min. The ZeRO-Inference half of the issue's table waits for its runner's A/B
(docs/ab.md). The window gate's figures for the same slowdowns are benchmarks/gate_across_sessions.py's.

Results accumulate in WORK/decisions.jsonl; `--report` prints the table from whatever is there.

Run:  python benchmarks/ab_power.py [--count 20] [--budget 120] [--runtime 2] [--gap-s 0]
          [--conditions aa,cap50,cap70] [--work /var/tmp/ab-power] [--report]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONDITIONS = {"aa": None, "cap50": 0.5, "cap70": 0.7}
TEST_FILE = """
import os
from pytest_nvme_ai.measure.fio.runner import FioJob

def test_read(fio, nvme_ai):
    fio.run(FioJob(name="bs1M", bs="1M", iodepth=16, size="256M", runtime=float(os.environ["AB_RUNTIME"]),
                   time_based=True))
"""


def one_decision(work: Path, condition: str, budget: float, runtime: float) -> dict[str, Any]:
    """Run one pytest session; return its A/B record's figures."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "test_ab_power.py").write_text(TEST_FILE)
    target = work / "target"
    target.mkdir(exist_ok=True)
    reports = work / "reports"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(work / "test_ab_power.py"),
            "--nvme-ai-target", str(target), "--nvme-ai-report-dir", str(reports), "--nvme-ai-history", "none",
            "--nvme-ai-ab", "same", "--nvme-ai-ab-budget", str(budget)]
    cap = CONDITIONS[condition]
    if cap is not None:
        argv += ["--nvme-ai-read-cap", str(cap)]
    t0 = time.time()
    proc = subprocess.run(argv, cwd=work, capture_output=True, text=True,
                          env={**os.environ, "AB_RUNTIME": str(runtime)}, timeout=budget * 3 + 300)
    results = json.loads((reports / "latest" / "results.json").read_text())
    test = results["tests"][0]
    ab = test.get("ab") or {}
    bw = (ab.get("metrics") or {}).get("bw") or {}
    return {"condition": condition, "verdict": ab.get("verdict") if test.get("outcome") != "skipped" else "skipped",
            "outcome": test.get("outcome"), "exit": proc.returncode, "pairs": ab.get("pairs_used"),
            "wall_s": ab.get("wall_s"), "session_s": round(time.time() - t0, 1), "ratio": bw.get("ratio"),
            "interval": bw.get("interval"), "noise_pct": bw.get("noise_pct"), "started": t0,
            "skip": test.get("longrepr") if test.get("outcome") == "skipped" else None}


def _median(rows: list[dict[str, Any]], key: str) -> float:
    values = [float(r[key]) for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| condition | decisions | worse | better | same | unknown | false worse/better | caught (worse) | "
           "unknown rate | median pairs | median wall s | median pair noise |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for cond in CONDITIONS:
        rs = [r for r in rows if r["condition"] == cond and r["verdict"] not in (None, "skipped")]
        if not rs:
            continue
        n = len(rs)
        count = {v: sum(r["verdict"] == v for r in rs) for v in ("worse", "better", "same", "unknown")}
        false = f"{(count['worse'] + count['better']) / n:.0%}" if cond == "aa" else "-"
        caught = "-" if cond == "aa" else f"{count['worse'] / n:.0%}"
        out.append(f"| {cond} | {n} | {count['worse']} | {count['better']} | {count['same']} | {count['unknown']} | "
                   f"{false} | {caught} | {count['unknown'] / n:.0%} | {_median(rs, 'pairs'):g} | "
                   f"{_median(rs, 'wall_s'):.0f} | {_median(rs, 'noise_pct'):.0f}% |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20, help="decisions per condition (default 20)")
    ap.add_argument("--budget", type=float, default=120.0, help="--nvme-ai-ab-budget per decision (s)")
    ap.add_argument("--runtime", type=float, default=2.0, help="fio runtime per run (s; quick profile: 2)")
    ap.add_argument("--gap-s", type=float, default=0.0, help="pause between sessions (spread them over time)")
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/ab-power"))
    ap.add_argument("--report", action="store_true", help="print the table from WORK/decisions.jsonl and stop")
    args = ap.parse_args(argv)
    log = args.work / "decisions.jsonl"
    if not args.report:
        conds = [c.strip() for c in args.conditions.split(",") if c.strip()]
        unknown = set(conds) - set(CONDITIONS)
        if unknown:
            ap.error(f"unknown condition(s) {sorted(unknown)}; choose from {', '.join(CONDITIONS)}")
        args.work.mkdir(parents=True, exist_ok=True)
        for i in range(args.count):
            for cond in conds:            # interleaved: drift reaches every condition alike
                row = one_decision(args.work, cond, args.budget, args.runtime)
                with log.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"[{i + 1}/{args.count}] {cond}: {row['verdict']} after {row['pairs']} pairs, "
                      f"{row['wall_s']} s (B/A {row['ratio']})", flush=True)
                time.sleep(args.gap_s)
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
