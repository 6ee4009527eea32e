"""How much of the ZeRO-Inference suite's wall time is measured loops, per-case children vs one worker per engine.

Steps (each one a separate command, so that each takes the heavy lock for a few minutes only):

  share   Run suites/test_zero_inference.py on quick, side by side, in the order given by --order:
          0 = `--nvme-ai-engine-reuse 0` (the old path: a fresh child per run), 1 = one worker per engine,
          forked from the fork server (the default), 2 = one worker per engine, each exec'd with its own
          imports (`--nvme-ai-fork-workers 0`). Prints per run: suite wall time, time in measured loops
          (every recorded run's total_latency samples, plus the loops of resident-weights reference runs
          that were measured for t_compute and not recorded as metrics), their share with and without
          those; the grid's distinct engines and runs; the bound with perfect reuse, loops ÷ (loops + one
          start-up per engine), with its arithmetic; and each test's total_throughput under every path
          with the ratio and the per-path spread (noise).
  order   The same case first on a fresh engine vs after two other cases on the same engine,
          interleaved over --trials rounds; prints both groups' decode throughput, the difference of
          medians, the within-group spread and a Mann-Whitney U p-value. --batch and --others choose
          the case and the ones before it; --control gives the "first" arm the same prior load on
          another engine, so that only the engine's history differs.
  grid    No runs: per profile, the suite's child runs and distinct engines, and the dummy-weight build time
          of each path projected from `build`'s measured rates (--builds; default: this VM's figures).
  start   The same case in a forked worker vs an exec'd one (--nvme-ai-fork-workers 0), interleaved over
          --trials rounds per offload device: decode throughput of both, the difference of medians, a
          Mann-Whitney U p-value, and each path's start-up.
  build   Dummy-weight build time of opt-125m, opt-350m and opt-1.3b (NVMe offload, bf16, in the worker
          the suite uses), with the tile fill and with torch's own init side by side (--fills); fits
          seconds = a + b × params, projects OPT-13b/30b/66b, and times both fills on one tensor.

Run:  .venv/bin/python benchmarks/zi_suite_share.py share --order 0,1,2,0
      .venv/bin/python benchmarks/zi_suite_share.py order --trials 5
      .venv/bin/python benchmarks/zi_suite_share.py order --trials 4 --batch 2 --others 1,1 --control
      .venv/bin/python benchmarks/zi_suite_share.py start --trials 4
      .venv/bin/python benchmarks/zi_suite_share.py build
Figures on the shared build VM are noisy; read the ratios, not the absolute seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "suites" / "test_zero_inference.py"
ENGINE_PARAMS = ("model", "dtype", "offload", "quant_bits", "aio", "pin_memory")


# ---- share --------------------------------------------------------------------------------------

PATHS = {"0": "per-case children", "1": "one forked worker per engine", "2": "one exec'd worker per engine"}


def run_suite(path: str, workdir: Path, deselect: str) -> dict[str, Any]:
    report = workdir / f"reports-{path}-{time.monotonic_ns()}"
    argv = [sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider", "-k", deselect,
            "--nvme-ai-report-dir", str(report), "--nvme-ai-engine-reuse", "0" if path == "0" else "1",
            "--nvme-ai-fork-workers", "1" if path == "1" else "0",
            "--basetemp", str(workdir / f"bt-{path}-{time.monotonic_ns()}")]
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    results = sorted(report.glob("*/results.json"))
    if not results:
        raise SystemExit(f"the suite wrote no results.json (exit {proc.returncode}):\n{proc.stdout[-3000:]}")
    return {"path": path, "wall": wall, "rc": proc.returncode, "tail": proc.stdout.strip().splitlines()[-1:],
            "results": json.loads(results[-1].read_text())}


def runs_of(test: dict[str, Any]) -> list[dict[str, Any]]:
    """Each ZeRO-Inference run in a test: its params, loop latencies, and the engine facts the worker left."""
    extra, metrics = test.get("extra") or {}, test.get("metrics") or {}
    out = []
    for prefix in ("", "nvme_", "cpu_", "none_", "compute_"):
        lat = metrics.get(f"{prefix}total_latency")
        if not lat:
            continue
        params = extra.get(f"{prefix}params") if prefix else test.get("params")
        out.append({"params": params or {}, "loops": list(lat.get("samples") or [lat["value"]]),
                    "engine": extra.get(f"{prefix}engine"), "init_s": extra.get(f"{prefix}init_seconds")})
    return out


def engine_of(params: dict[str, Any]) -> str:
    return json.dumps({k: params.get(k) for k in ENGINE_PARAMS}, sort_keys=True, default=str)


def reference_loops(tests: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[float]:
    """Loop seconds of the resident-weights reference runs (extra compute_reference) that are not a recorded
    run reused (a reused reference has exactly that run's loop times)."""
    recorded = {tuple(r["loops"]) for r in runs}
    out: list[float] = []
    for t in tests:
        ref = (t.get("extra") or {}).get("compute_reference") or {}
        loops = tuple(ref.get("loops_s") or ())
        if loops and loops not in recorded:
            out += loops
    return out


def summarize(run: dict[str, Any]) -> dict[str, Any]:
    tests = [t for t in run["results"]["tests"] if "test_zero_inference.py" in t["nodeid"]]
    runs = [r for t in tests for r in runs_of(t)]
    recorded_loops = sum(sum(r["loops"]) for r in runs)
    ref_loops = sum(reference_loops(tests, runs))
    loops = recorded_loops + ref_loops
    engines = {engine_of(r["params"]) for r in runs}
    # The worker path names every engine it used, the resident-weights references' (not recorded runs) included.
    keys = {v["key"] for t in tests for k, v in (t.get("extra") or {}).items()
            if k.endswith("engine") and isinstance(v, dict) and v.get("key")}
    if keys:
        engines = keys
    # One start-up per engine: an engine rebuilt after an eviction or a failure counts once (its first).
    firsts = {}
    for r in runs:
        if r["engine"] and not r["engine"].get("reused"):
            firsts.setdefault(r["engine"].get("key"), (r["engine"].get("import_s") or 0) + (r["init_s"] or 0))
    startups = list(firsts.values())
    for t in tests:  # the references' own engines (not recorded runs, so not in `runs`)
        ref = (t.get("extra") or {}).get("compute_reference") or {}
        eng = next((v for k, v in (t.get("extra") or {}).items() if k.startswith("compute_") and k.endswith("engine")
                    and isinstance(v, dict)), None)
        if eng and not eng.get("reused") and ref.get("init_s") is not None:
            startups.append((eng.get("import_s") or 0) + ref["init_s"])
    server = [v.get("fork_server_s") for t in tests for v in (t.get("extra") or {}).values()
              if isinstance(v, dict) and v.get("fork_server_s")]
    return {"tests": tests, "runs": len(runs), "engines": len(engines), "loops": loops, "wall": run["wall"],
            "recorded_loops": recorded_loops, "reference_loops": ref_loops,
            "share": loops / run["wall"], "recorded_share": recorded_loops / run["wall"], "startups": startups,
            "fork_server_wait_s": sum(server),
            "throughput": {t["nodeid"].split("::", 1)[1]: t["metrics"] for t in tests if t.get("metrics")}}


def spread(samples: Iterable[float]) -> float:
    s = list(samples)
    return (max(s) - min(s)) / statistics.median(s) if len(s) > 1 and statistics.median(s) else 0.0


def cmd_share(args: argparse.Namespace) -> None:
    """Runs the suite per --order, saving each run's summary under --out; then reports over every run saved
    there (so the runs can be made in separate commands, each holding the heavy lock for one run)."""
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    for path in [c for c in args.order.split(",") if c]:
        if path not in PATHS:
            raise SystemExit(f"--order: {path!r} is not one of {', '.join(f'{k} ({v})' for k, v in PATHS.items())}")
        r = run_suite(path, work, args.k)
        s = summarize(r)
        saved = {k: v for k, v in s.items() if k != "tests"}
        (work / f"run-{time.time_ns()}-{path}.json").write_text(json.dumps(saved, default=str))
        print(f"ran: {PATHS[path]}, exit {r['rc']}, {r['tail'][0] if r['tail'] else ''}", flush=True)
    summaries = [(p.stem.rsplit("-", 1)[1], json.loads(p.read_text())) for p in sorted(work.glob("run-*.json"))]
    stale = [p for p, s in summaries if "recorded_loops" not in s or p not in PATHS]
    if stale:  # saved by an earlier version of this script, when "1" meant another path
        raise SystemExit(f"{work} holds run summaries of an earlier version of this benchmark: use another --out")
    for path, s in summaries:
        print(f"{PATHS[path]:30s}: wall {s['wall']:.1f} s, measured loops {s['loops']:.1f} s "
              f"({s['recorded_loops']:.1f} recorded + {s['reference_loops']:.1f} in unrecorded references), "
              f"share {s['share']:.1%} (recorded runs only: {s['recorded_share']:.1%})")
    for path in ("1", "2"):
        mine = [s for p, s in summaries if p == path]
        if not mine:
            continue
        s = mine[-1]
        ups = sum(s["startups"]) + s["fork_server_wait_s"]
        bound = s["loops"] / (s["loops"] + ups)
        print(f"{PATHS[path]}: {s['runs']} recorded runs on {s['engines']} distinct engines; start-ups measured "
              f"(imports + build, s): {' + '.join(f'{x:.1f}' for x in s['startups'])}"
              + (f" + the fork server's imports waited for once, {s['fork_server_wait_s']:.1f}"
                 if s["fork_server_wait_s"] else "") + f" = {ups:.1f} s")
        print(f"  bound with perfect reuse = loops / (loops + one start-up per engine) = {s['loops']:.1f} / "
              f"({s['loops']:.1f} + {ups:.1f}) = {bound:.1%}; achieved {s['share']:.1%} = {s['share'] / bound:.0%} "
              f"of the bound; goal: >= 50%, or >= 90% of the bound where 50% is out of reach")
    base = [s for p, s in summaries if p == "0"]
    for path in ("1", "2"):
        mine = [s for p, s in summaries if p == path]
        if not (base and mine):
            continue
        print(f"\nper-test total_throughput (tokens/s, median of loops): per-case vs {PATHS[path]}, ratio, spreads")
        for test, metrics in mine[-1]["throughput"].items():
            for name in sorted(m for m in metrics if m.endswith("total_throughput")):
                new = metrics[name]
                olds = [b["throughput"].get(test, {}).get(name) for b in base]
                olds = [o for o in olds if o]
                if not olds:
                    continue
                old_v = statistics.median(o["value"] for o in olds)
                drift = (f", per-case run to run {olds[-1]['value'] / olds[0]['value']:.3f}" if len(olds) > 1 else "")
                print(f"  {test} {name}: {old_v:.3g} vs {new['value']:.3g}  ratio {new['value'] / old_v:.3f}  "
                      f"loop spread per-case {max(spread(o['samples']) for o in olds):.1%}, "
                      f"worker {spread(new['samples']):.1%}{drift}")
    print(f"\nraw: {work}/run-*.json")


# ---- order --------------------------------------------------------------------------------------

def bench_recorder(artifact_dir: Path, timeout: int = 900) -> Any:
    """The in-memory Recorder (core.recorder) that run_in_worker records into, outside pytest."""
    from pytest_nvme_ai.core.recorder import MemoryRecorder

    return MemoryRecorder(artifact_dir, nodeid="benchmarks/zi_suite_share.py::bench", timeout=timeout)


def bench_target(name: str) -> tuple[Path, Any]:
    """The ops checked (exit when NVMe offload cannot run here), and a fresh work directory with a target."""
    from pytest_nvme_ai.core.targets import Target
    from pytest_nvme_ai.measure.deepspeed.ops import ensure_offload_ops

    reason = ensure_offload_ops()
    if reason:
        raise SystemExit(reason)
    work = Path(tempfile.mkdtemp(prefix=f"zi-{name}-"))
    target = Target(path=work / "target", label="bench", run_id=name)
    target.path.mkdir()
    return work, target


def run_ok(spec: Any, target: Any, recorder: Any, fork: bool = True, **kw: Any) -> dict[str, Any]:
    """One case in its engine's worker; exits with the case's log tail unless it ended ok. The child's
    record as its dict (what the worker sent)."""
    from pytest_nvme_ai.measure.zero_inference.dispatch import run_in_worker

    run, _ = run_in_worker(spec, "cpu", None, target=target, recorder=recorder, timeout=float(recorder.timeout),
                           fork=fork, **kw)
    if run.record is None or run.outcome != "ok":
        raise SystemExit(f"{spec.id} failed: {run.outcome}: {run.error}\n{run.log.read_text()[-2000:]}")
    return run.record.to_dict()


def decode_tps(data: dict[str, Any], batch: int, gen: int) -> list[float]:
    return [batch * (gen - 1) / max(lp["total_latency"] - lp["prefill_latency"], 1e-9) for lp in data["loops"]]


def cmd_order(args: argparse.Namespace) -> None:
    from scipy.stats import mannwhitneyu

    from pytest_nvme_ai.measure.zero_inference.pool import shared_pool
    from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec

    work, target = bench_target("order")
    x = InferenceSpec(model=args.model, batch_size=args.batch, prompt_len=32, gen_len=8, offload="nvme",
                      loops=args.loops, warmup=1)
    others = [x.with_(batch_size=int(bs.split(":")[0]), gen_len=int((bs.split(":") + ["8"])[1]))
              for bs in args.others.split(",")]
    pool = shared_pool()

    def case(spec: InferenceSpec) -> dict[str, Any]:
        return run_ok(spec, target, bench_recorder(work))

    first: list[float] = []
    after: list[float] = []
    for trial in range(args.trials):
        for kind in (("first", "after") if trial % 2 == 0 else ("after", "first")):
            pool.close_all()                                   # a fresh worker and engine for each arm
            if kind == "after":
                for o in others:
                    case(o)
            elif args.control:  # the same load first, on another engine: only the engine's history differs
                for o in others:
                    case(o.with_(seed=x.seed + 1))
                pool.close_all()
            tps = decode_tps(case(x), x.batch_size, x.gen_len)
            (first if kind == "first" else after).append(statistics.median(tps))
            print(f"trial {trial + 1} {kind:5s}: decode {statistics.median(tps):.3f} tok/s "
                  f"(loops {', '.join(f'{v:.3f}' for v in tps)})", flush=True)
    pool.close_all()
    mf, ma = statistics.median(first), statistics.median(after)
    p = mannwhitneyu(first, after).pvalue
    print(f"\n{x.id}: first on its engine, median {mf:.3f} tok/s (spread {spread(first):.1%}); after others, "
          f"median {ma:.3f} tok/s (spread {spread(after):.1%}); difference {ma / mf - 1:+.1%}; "
          f"Mann-Whitney U p = {p:.3f} (n = {len(first)} + {len(after)})")


# ---- start --------------------------------------------------------------------------------------

def cmd_start(args: argparse.Namespace) -> None:
    """The same case in a forked worker vs an exec'd one, interleaved (ABBA), per offload device: forking
    from the server must not change what a case measures."""
    from scipy.stats import mannwhitneyu

    from pytest_nvme_ai.measure.zero_inference.pool import shared_pool
    from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec

    work, target = bench_target("start")
    pool = shared_pool()
    for offload in args.offloads.split(","):
        x = InferenceSpec(model=args.model, batch_size=1, prompt_len=32, gen_len=8, offload=offload,  # type: ignore[arg-type]
                          loops=args.loops, warmup=1)
        got: dict[bool, list[float]] = {True: [], False: []}
        init: dict[bool, list[float]] = {True: [], False: []}
        for trial in range(args.trials):
            for forked in ((True, False) if trial % 2 == 0 else (False, True)):
                pool.close_all()                                      # a fresh worker for each arm
                data = run_ok(x, target, bench_recorder(work), fork=forked)
                if bool(data.get("worker_forked")) != forked:
                    raise SystemExit(f"asked for a {'forked' if forked else 'exec'}'d worker, got the other")
                tps = statistics.median(decode_tps(data, x.batch_size, x.gen_len))
                got[forked].append(tps)
                init[forked].append(float(data.get("import_s") or 0) + float(data["init_seconds"]))
                print(f"{offload} trial {trial + 1} {'forked' if forked else 'exec' + chr(39) + 'd'}: decode "
                      f"{tps:.3f} tok/s, start-up (imports + build) {init[forked][-1]:.1f} s", flush=True)
        pool.close_all()
        f, e = statistics.median(got[True]), statistics.median(got[False])
        p = mannwhitneyu(got[True], got[False]).pvalue
        print(f"\n{x.id}: forked median {f:.3f} tok/s (spread {spread(got[True]):.1%}), exec'd {e:.3f} "
              f"(spread {spread(got[False]):.1%}); forked/exec'd {f / e - 1:+.1%}; Mann-Whitney U p = {p:.3f}; "
              f"start-up median forked {statistics.median(init[True]):.1f} s vs exec'd "
              f"{statistics.median(init[False]):.1f} s\n", flush=True)


# ---- build --------------------------------------------------------------------------------------

def cmd_build(args: argparse.Namespace) -> None:
    import numpy as np

    from pytest_nvme_ai.measure.deepspeed.models import resolve_model
    from pytest_nvme_ai.measure.zero_inference.pool import shared_pool
    from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec

    work, target = bench_target("build")
    params, seconds = [], []
    torch_fill: list[float] = []
    for model in args.models.split(","):
        spec = InferenceSpec(model=model, batch_size=1, prompt_len=8, gen_len=2, offload="nvme", loops=1, warmup=0)
        n = resolve_model(model).param_count
        for fill in args.fills.split(","):  # side by side: the tile fill (the default) and torch's own init
            shared_pool().close_all()
            data = run_ok(spec, target, bench_recorder(work), dummy_fill=fill)
            s = float(data["init_seconds"])
            swap = sum(f["bytes"] for f in data["swap_files"])
            if fill == "torch":
                torch_fill.append(s)
            else:
                params.append(n)
                seconds.append(s)
            print(f"{model} ({fill} fill): {n / 1e6:.0f} M params, build {s:.1f} s ({n / s / 1e6:.1f} M params/s), "
                  f"imports {data.get('import_s', 0):.1f} s, swap files {swap / 1e9:.2f} GB", flush=True)
    shared_pool().close_all()
    b, a = np.polyfit(params, seconds, 1)
    print(f"fit (tile fill): build ≈ {a:.1f} s + {b * 1e9:.1f} s per billion params")
    if len(torch_fill) == len(params) > 1:
        tb, ta = np.polyfit(params, torch_fill, 1)
        print(f"fit (torch's init, the build before the tile fill): build ≈ {ta:.1f} s + {tb * 1e9:.1f} s per "
              f"billion params")
    torch_ns, tile_ns = fill_rates()
    print(f"random fill of bf16 weights, side by side: torch's kaiming_uniform_ {torch_ns:.2f} ns/param, "
          f"the tile fill {tile_ns:.2f} ns/param ({torch_ns / tile_ns:.0f}x)")
    for model in ("opt-13b", "opt-30b", "opt-66b"):
        n = resolve_model(model).param_count
        print(f"  {model}: {n / 1e9:.1f} B params -> {a + b * n:.0f} s ({(a + b * n) / 60:.0f} min) per build "
              f"at this machine's rate (CPU random init + swap writes); the fill alone: "
              f"{n * torch_ns / 1e9:.0f} s with torch's init, {n * tile_ns / 1e9:.0f} s as a tile")


def fill_rates(numel: int = 64 << 20, rounds: int = 3) -> tuple[float, float]:
    """ns per parameter of torch's default Linear weight init vs models.fast_random_init, on one bf16 tensor."""
    import math

    import torch

    from pytest_nvme_ai.measure.deepspeed.models import fast_random_init

    w = torch.empty(numel // 4096, 4096, dtype=torch.bfloat16)
    best = {True: math.inf, False: math.inf}
    for _ in range(rounds):
        for tile in (False, True):
            t0 = time.perf_counter()
            if tile:
                with fast_random_init():
                    torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            else:
                torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            best[tile] = min(best[tile], time.perf_counter() - t0)
    return best[False] / numel * 1e9, best[True] / numel * 1e9


# Measured on the build VM, 2026-12-01, by `build` (NVMe offload, bf16, forked workers, the tile fill):
# seconds per build. With torch's own init, side by side: 2.8, 5.2 and 16.5 s.
MEASURED_BUILDS = "opt-125m=1.5,opt-350m=2.3,opt-1.3b=5.6"


def grid_runs(profile_name: str) -> tuple[list[Any], list[Any]]:
    """The child runs the suite makes on a profile: (per-case path, as run specs; distinct engines of them).

    Per-case path: one run per single case, plus its resident-weights reference (reused when an identical
    spec already ran: reuse=True), plus both sides of each pair (the NVMe side reused where the profile says
    zi_reuse_runs, as full does)."""
    import importlib.util

    from pytest_nvme_ai.core.profiles import PROFILES
    from pytest_nvme_ai.measure.zero_inference.remote_worker import engine_key

    spec_mod = importlib.util.spec_from_file_location("zi_suite", SUITE)
    assert spec_mod and spec_mod.loader
    suite = importlib.util.module_from_spec(spec_mod)
    spec_mod.loader.exec_module(suite)
    prof = PROFILES[profile_name]
    runs: list[Any] = []
    done: set[str] = set()

    def run(spec: Any, reuse: bool) -> None:
        if reuse and spec.id in done:
            return
        done.add(spec.id)
        runs.append(spec)

    for c in prof.zi_single:
        case = suite.Case(**{f: getattr(c, f) for f in c.__dataclass_fields__})
        sp = case.spec_for(case.offload, prof)
        if sp.kv_offload and not case.gpu:
            continue
        run(sp, False)
        if case.offload == "nvme":
            run(sp.with_(offload="none", aio=None), True)
    for c in prof.zi_pair:
        case = suite.Case(**{f: getattr(c, f) for f in c.__dataclass_fields__})
        run(case.spec_for("nvme", prof), prof.zi_reuse_runs)
        run(case.spec_for("cpu", prof), False)
    engines = {engine_key(sp): sp for sp in runs}
    return runs, list(engines.values())


def cmd_grid(args: argparse.Namespace) -> None:
    import numpy as np

    from pytest_nvme_ai.measure.deepspeed.models import resolve_model

    pts = [kv.split("=") for kv in args.builds.split(",")]
    params = [resolve_model(m).param_count for m, _ in pts]
    b, a = np.polyfit(params, [float(s) for _, s in pts], 1)
    print(f"build fit from {args.builds}: {a:.1f} s + {b * 1e9:.1f} s per billion params")
    for name in args.profiles.split(","):
        runs, engines = grid_runs(name)

        def build_s(specs: list[Any]) -> float:
            return sum(a + b * resolve_model(sp.model).param_count for sp in specs)

        before, after = build_s(runs), build_s(engines)
        print(f"{name}: {len(runs)} runs on {len(engines)} distinct engines; dummy-weight builds: per-case "
              f"{before / 3600:.2f} h, one per engine {after / 3600:.2f} h (saves {1 - after / before:.0%})")
        by_model: dict[str, list[int]] = {}
        for sp in runs:
            by_model.setdefault(sp.model, [0, 0])[0] += 1
        for sp in engines:
            by_model[sp.model][1] += 1
        print("    " + ", ".join(f"{m}: {r} runs / {e} engines" for m, (r, e) in by_model.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("share")
    s.add_argument("--order", default="0,1,2,0",
                   help="comma list of 0 (per-case) / 1 (forked worker per engine) / 2 (exec'd worker per engine) "
                        "suite runs; '' = report only")
    s.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "zi-share"), help="where run summaries are kept")
    s.add_argument("-k", default="not drive_speed", help="pytest -k expression (default: without test_drive_speed)")
    o = sub.add_parser("order")
    o.add_argument("--trials", type=int, default=5)
    o.add_argument("--loops", type=int, default=3)
    o.add_argument("--model", default="opt-125m")
    o.add_argument("--batch", type=int, default=1, help="batch size of the case measured")
    o.add_argument("--control", action="store_true",
                   help="the 'first' arm runs the same other cases before, on another engine (another seed), "
                        "then the case on a fresh one: separates the engine's history from the machine's")
    o.add_argument("--others", default="2,4:4", help="the cases run before it on the same engine: batch[:gen_len],...")
    st = sub.add_parser("start")
    st.add_argument("--trials", type=int, default=4)
    st.add_argument("--loops", type=int, default=3)
    st.add_argument("--model", default="opt-125m")
    st.add_argument("--offloads", default="nvme,cpu")
    b = sub.add_parser("build")
    b.add_argument("--models", default="opt-125m,opt-350m,opt-1.3b")
    b.add_argument("--fills", default="tile,torch", help="dummy-weight fills to time, side by side (tile = default)")
    g = sub.add_parser("grid")
    g.add_argument("--profiles", default="quick,standard,full")
    g.add_argument("--builds", default=MEASURED_BUILDS, help="model=seconds per build, measured by `build`")
    args = ap.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    {"share": cmd_share, "order": cmd_order, "start": cmd_start, "build": cmd_build, "grid": cmd_grid}[args.cmd](args)


if __name__ == "__main__":
    main()
