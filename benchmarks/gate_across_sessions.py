"""How good is the gate across separate pytest sessions? False regressions and detections, measured.

Every session is a fresh `python -m pytest` process running the seq-read suite and one NVMe-offloaded
ZeRO-Inference case (opt-125m by default: the smallest shipped model whose layers stream from the
target; opt-tiny keeps its weights in memory) on one target directory.

Phases:
  window      K sessions with --nvme-ai-save-baseline build the baseline window (spaced by --gap-s,
              and by whatever other work holds /work/heavy.lock meanwhile: the machine drifts).
  then, interleaved so that drift reaches both alike:
  unchanged   M sessions, nothing changed: every gated check that says "regression" is a false one.
  capped      sessions with the target's reads capped at 70% and at 50% of its bandwidth, measured by
              fio on the same target just before each capped session. The cap is a cgroup v1 blkio
              throttle (blkio.throttle.read_bps_device on the disk behind the target; O_DIRECT reads of
              fio and of DeepSpeed's swap files are throttled) put around the whole pytest process, so
              the tests' params do not change and the baseline stays comparable. Detection = verdict
              "regression" for a gated check.

For the 70% cap the goal is stated against what the gate itself reports: checks whose minimum
detectable change (from the window, before the session) is below 30% must be caught (>= 90%), and
every other check must have been announced in the header as blind to a change of that size, or have
a window too short to know the drift.

Each session takes /work/heavy.lock (--lock) for its own length only. Results accumulate in
WORK/sessions.jsonl; `--report` prints the table from whatever is there (a run cut short still reports).

Run:  .venv/bin/python benchmarks/gate_across_sessions.py [--window 8] [--unchanged 6] [--capped 2]
          [--gap-s 60] [--stop-at 10:38] [--work /var/tmp/gate-across-sessions]
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BLKIO = Path("/sys/fs/cgroup/blkio")
BASELINE = "gate-across-sessions"

ZI_TEST = """
import pytest
from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec


@pytest.fixture(scope="session")
def deepspeed_ops(request):
    from pytest_nvme_ai.fixtures import terminal_progress
    from pytest_nvme_ai.measure.deepspeed.ops import ensure_offload_ops

    progress = terminal_progress(request.config)
    return ensure_offload_ops(progress)


def test_zi_nvme(zero_inference, nvme_ai, offload_target, deepspeed_ops):
    spec = InferenceSpec(model="%(model)s", batch_size=1, offload="nvme", prompt_len=32, gen_len=8, loops=3, warmup=1)
    result = zero_inference.run(spec)
    assert result.ok, f"{result.outcome}: {result.error}"
    assert all(lp.read_bytes > 0 for lp in result.loops), "an NVMe-offloaded loop read nothing from the target"
"""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextmanager
def heavy_lock(path: Path) -> Iterator[float]:
    """The shared lock, for one session; yields how long we waited for it."""
    t0 = time.monotonic()
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield time.monotonic() - t0
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def disk_of(path: Path) -> str:
    """MAJ:MIN of the whole disk behind `path` (blkio throttles whole disks, not partitions)."""
    st = os.stat(path)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    sys_dev = Path("/sys/dev/block") / dev
    if (sys_dev / "partition").exists():
        dev = (sys_dev.resolve().parent / "dev").read_text().strip()
    return dev


@contextmanager
def read_cap(disk: str, bps: int | None, tag: str) -> Iterator[Path | None]:
    """A cgroup v1 blkio child capping reads from `disk` at `bps`; removed afterwards (it must be empty)."""
    if bps is None:
        yield None
        return
    cg = BLKIO / f"nvme-ai-gate-bench-{tag}"
    cg.mkdir()
    try:
        (cg / "blkio.throttle.read_bps_device").write_text(f"{disk} {int(bps)}")
        yield cg
    finally:
        for _ in range(50):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.2)   # the child's last processes are still leaving


def fio_bw(target: Path, work: Path) -> float:
    """Sequential-read bandwidth of the target right now (bs 1M, qd 16, direct, 3 s), uncapped."""
    sys.path.insert(0, str(REPO))
    from pytest_nvme_ai.measure.fio.runner import FioJob, run_fio

    d = target / ".gate-bench-fio"
    d.mkdir(exist_ok=True)
    data = d / "bw.bin"
    if not data.exists():
        run_fio(FioJob(name="layout", rw="write", bs="1M", iodepth=16, size="512M", filename=str(data)),
                d, d, timeout=300, stem="layout")
    res = run_fio(FioJob(name="bw", bs="1M", iodepth=16, size="512M", filename=str(data), runtime=3,
                         time_based=True), d, d, timeout=120, stem="bw")
    return float(res.bw_bytes)


def run_session(args: argparse.Namespace, kind: str, index: int, cap_fraction: float | None) -> dict[str, Any]:
    work, target = Path(args.work), Path(args.target)
    zi = work / "test_zi_case.py"
    cmd = [sys.executable, "-m", "pytest", str(REPO / "suites" / "test_seq_read.py"), str(zi),
           "-p", "no:cacheprovider", "-q", "-rA", "--nvme-ai-target", str(target),
           "--nvme-ai-baseline-dir", str(work / "baselines"), "--nvme-ai-baseline-name", BASELINE,
           "--nvme-ai-report-dir", str(work / "reports"), "--nvme-ai-baseline-window", str(args.window_size)]
    if kind == "window":
        cmd.append("--nvme-ai-save-baseline")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rec: dict[str, Any] = {"kind": kind, "index": index, "cap_fraction": cap_fraction, "queued": now_iso()}
    with heavy_lock(Path(args.lock)) as waited:
        rec["lock_wait_s"] = round(waited, 1)
        bps = None
        if cap_fraction is not None:
            rec["fio_bw_before"] = fio_bw(target, work)
            bps = int(rec["fio_bw_before"] * cap_fraction)
            rec["cap_bps"] = bps
        rec["started"] = now_iso()
        t0 = time.monotonic()
        with read_cap(disk_of(target), bps, f"{os.getpid()}-{index}") as cg:
            def enter_cgroup() -> None:
                if cg is not None:
                    (cg / "cgroup.procs").write_text(str(os.getpid()))
            proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=args.session_timeout,
                                  preexec_fn=enter_cgroup)
        rec["duration_s"] = round(time.monotonic() - t0, 1)
    (work / "logs").mkdir(exist_ok=True)
    log = work / "logs" / f"{index:03d}-{kind}{'-' + str(cap_fraction) if cap_fraction else ''}.txt"
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    rec["rc"], rec["log"] = proc.returncode, str(log)
    results = work / "reports" / "latest" / "results.json"
    data = json.loads(results.read_text()) if results.exists() else {}
    # What the run said beforehand: the header's (or, under -q, the pre-test) warning lines, and results.json's
    # copy of the gate's warnings (the plugin works them out at session start).
    rec["warnings"] = [ln for ln in proc.stdout.splitlines() if ln.startswith("nvme-ai WARNING")] + \
        [f"nvme-ai WARNING {w}" for w in data.get("run", {}).get("gate_warnings", [])]
    rec["run_id"] = data.get("run", {}).get("id")
    rec["checks"] = []
    for t in data.get("tests", []):
        for name, c in ((t.get("baseline") or {}).get("metrics") or {}).items():
            if not c.get("gated"):
                continue
            warned = any(f"{t['key']} {name}:" in w for w in rec["warnings"])
            rec["checks"].append({"key": t["key"], "suite": "fio" if "seq_read" in t["key"] else "zero_inference",
                                  "metric": name, "verdict": c.get("verdict"), "method": c.get("method"),
                                  "delta": c.get("delta"), "mdc": c.get("min_detectable_change"),
                                  "blind": c.get("blind"), "window_sessions": c.get("window_sessions"),
                                  "drift_pct": c.get("drift_pct"), "warned": warned, "outcome": t.get("outcome")})
    return rec


def schedule(args: argparse.Namespace) -> list[tuple[str, float | None]]:
    """Window first; then unchanged and capped sessions interleaved."""
    plan: list[tuple[str, float | None]] = [("window", None)] * args.window
    caps = [f for _ in range(args.capped) for f in (0.7, 0.5)]
    rest: list[tuple[str, float | None]] = []
    unchanged = args.unchanged
    while unchanged or caps:
        if unchanged:
            rest.append(("unchanged", None))
            unchanged -= 1
        if caps:
            rest.append(("capped", caps.pop(0)))
    return plan + rest


def _pct(a: int, b: int) -> str:
    return f"{a}/{b} ({a / b:.0%})" if b else "0/0"


def report(work: Path) -> None:
    lines = [json.loads(ln) for ln in (work / "sessions.jsonl").read_text().splitlines() if ln.strip()]
    kinds = {k: [r for r in lines if r["kind"] == k] for k in ("window", "unchanged", "capped")}
    print(f"\ngate across sessions: {len(kinds['window'])} window sessions, {len(kinds['unchanged'])} unchanged, "
          f"{len(kinds['capped'])} capped; work dir {work}")
    for r in lines:
        cap = f" cap {r['cap_fraction']:.0%} of {r['fio_bw_before'] / 1e9:.2f} GB/s" if r.get("cap_fraction") else ""
        regs = sum(c["verdict"] == "regression" for c in r["checks"])
        print(f"  {r['index']:>3} {r['kind']:<9} {r['started']} rc {r['rc']} {r['duration_s']:>6.0f} s "
              f"(lock wait {r['lock_wait_s']:.0f} s){cap}: {len(r['checks'])} gated checks, {regs} regression")
    print(f"\n{'condition':<34} {'suite':<15} {'checks':>7}  result")
    for suite in ("fio", "zero_inference"):
        un = [c for r in kinds["unchanged"] for c in r["checks"] if c["suite"] == suite]
        win = [c for c in un if c["method"] == "session-window"]
        print(f"{'unchanged: false regressions':<34} {suite:<15} {len(un):>7}  "
              f"{_pct(sum(c['verdict'] == 'regression' for c in un), len(un))}"
              f"  (session-window rule on {len(win)}; median MDC "
              f"{_median([c['mdc'] for c in win if c['mdc'] is not None])})")
    for frac in (0.5, 0.7):
        for suite in ("fio", "zero_inference"):
            cs = [c for r in kinds["capped"] if r["cap_fraction"] == frac for c in r["checks"] if c["suite"] == suite]
            caught = sum(c["verdict"] == "regression" for c in cs)
            line = f"{f'cap {frac:.0%}: caught':<34} {suite:<15} {len(cs):>7}  {_pct(caught, len(cs))}"
            if frac == 0.7:
                seen = [c for c in cs if c["mdc"] is not None and c["mdc"] < 30]
                other = [c for c in cs if not (c["mdc"] is not None and c["mdc"] < 30)]
                # announced: the header warned, or the gate flagged the check blind from the window alone (the
                # same test, limit > tolerance, made before this session's data: the table's '!'), or no MDC
                announced = [c for c in other if c["warned"] or c.get("blind") or c["mdc"] is None]
                line += (f"; MDC<30%: caught {_pct(sum(c['verdict'] == 'regression' for c in seen), len(seen))}; "
                         f"others announced blind or drift-unknown {_pct(len(announced), len(other))}"
                         f" (by a warning line {sum(bool(c['warned']) for c in other)})")
            print(line)


def _median(xs: list[float]) -> str:
    if not xs:
        return "-"
    s = sorted(xs)
    return f"{s[len(s) // 2]:.0f}%"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=int, default=8, help="sessions building the window (K, default 8)")
    ap.add_argument("--window-size", type=int, default=10, help="--nvme-ai-baseline-window (default 10)")
    ap.add_argument("--unchanged", type=int, default=6, help="unchanged sessions (M, default 6)")
    ap.add_argument("--capped", type=int, default=2, help="capped sessions per cap level (70%% and 50%%)")
    ap.add_argument("--gap-s", type=float, default=60.0, help="pause between sessions, seconds")
    ap.add_argument("--stop-at", help="HH:MM UTC: start no session after this time (then report)")
    ap.add_argument("--work", default="/var/tmp/gate-across-sessions")
    ap.add_argument("--target", help="target directory (default WORK/target)")
    ap.add_argument("--model", default="opt-125m")
    ap.add_argument("--lock", default="/work/heavy.lock")
    ap.add_argument("--session-timeout", type=int, default=900)
    ap.add_argument("--report", action="store_true", help="only print the table from WORK/sessions.jsonl")
    args = ap.parse_args()
    work = Path(args.work)
    if args.report:
        report(work)
        return 0
    work.mkdir(parents=True, exist_ok=True)
    args.target = args.target or str(work / "target")
    Path(args.target).mkdir(parents=True, exist_ok=True)
    (work / "test_zi_case.py").write_text(ZI_TEST % {"model": args.model})
    out = work / "sessions.jsonl"
    done = len(out.read_text().splitlines()) if out.exists() else 0   # resume where a cut-short run stopped
    plan = schedule(args)
    for i, (kind, frac) in enumerate(plan):
        if i < done:
            continue
        if args.stop_at and datetime.now(timezone.utc).strftime("%H:%M") >= args.stop_at:
            print(f"stop time {args.stop_at} reached before session {i}", flush=True)
            break
        rec = run_session(args, kind, i, frac)
        with out.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        regs = sum(c["verdict"] == "regression" for c in rec["checks"])
        print(f"[{now_iso()}] session {i} {kind}{' cap ' + str(frac) if frac else ''}: rc {rec['rc']}, "
              f"{rec['duration_s']} s, lock wait {rec['lock_wait_s']} s, {len(rec['checks'])} checks, {regs} regression",
              flush=True)
        if i + 1 < len(plan):
            time.sleep(args.gap_s)
    report(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
