"""The KV-cache child process: `python -m pytest_nvme_ai.measure.kv_cache JOB.json RESULT.json`.

Runs in the KV environment (LMCache's; see scripts/setup_kv.sh), never in pytest. It builds one
LMCache engine (child_engine: its in-memory tier in front of its `local_disk` backend in the job's
cache directory, O_DIRECT on, audited), runs the spec's case (child_serving / child_storage), and
writes a `KvResult` as JSON. Cold and warm are measured in this one process: LMCache's disk index
lives in memory, so a new process finds no hits on the chunk files an earlier one left.
"""
from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

from pytest_nvme_ai.measure.kv_cache.child_engine import build_engine, close_engine, fs_type, quiet_lmcache_env, versions
from pytest_nvme_ai.measure.kv_cache.result import KvResult
from pytest_nvme_ai.measure.kv_cache.spec import KvSpec

ODIRECT_HOW = "kernel flags (/proc/self/fdinfo) of every chunk-file descriptor LMCache's disk backend opened"


# ---- main -----------------------------------------------------------------------------------------
def obey_test_hook(hook: str | None) -> None:
    if not hook:
        return
    name, _, arg = hook.partition(":")
    if name == "sleep":
        time.sleep(float(arg or 3600))
    elif name == "crash":
        raise RuntimeError("test hook: crash")
    elif name == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)


def run(spec: KvSpec, cache_dir: Path | None) -> KvResult:
    t0 = time.perf_counter()
    obey_test_hook(spec.test_hook)
    quiet_lmcache_env()
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    if spec.case == "serving":
        from pytest_nvme_ai.measure.kv_cache.child_serving import run_serving as run_case
    else:
        from pytest_nvme_ai.measure.kv_cache.child_storage import run_storage as run_case
    eng = build_engine(spec, cache_dir)
    try:
        result = run_case(spec, eng, cache_dir, setup_started=t0)
    finally:
        close_engine()
    return replace(result, cache_dir=str(cache_dir or ""), fs_type=fs_type(cache_dir) if cache_dir else "",
                   chunk_bytes=spec.chunk_bytes, versions=versions(), odirect_how=ODIRECT_HOW)


def main(argv: list[str]) -> int:
    """JOB.json: {"spec": {...}, "cache_dir": "..."}; RESULT.json: a KvResult (also on failure)."""
    import json

    if len(argv) != 2:
        print("usage: python -m pytest_nvme_ai.measure.kv_cache JOB.json RESULT.json", file=sys.stderr)
        return 2
    import faulthandler

    faulthandler.register(signal.SIGUSR1, all_threads=True)   # `kill -USR1` prints every thread's stack to the log
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    spec = KvSpec.from_dict(job["spec"])
    cache_dir = Path(job["cache_dir"]) if job.get("cache_dir") else None
    try:
        result = run(spec, cache_dir)
    except MemoryError as exc:
        result = KvResult(spec=spec.to_dict(), outcome="oom", error=f"MemoryError: {exc}")
    except Exception as exc:  # noqa: BLE001 - any failure is a recorded outcome with its traceback in the log
        traceback.print_exc()
        result = KvResult(spec=spec.to_dict(), outcome="error", error=f"{type(exc).__name__}: {exc}")
    Path(argv[1]).write_text(result.to_json(), encoding="utf-8")
    return 0 if result.ok else 1
