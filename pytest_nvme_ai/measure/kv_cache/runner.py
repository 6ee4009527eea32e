"""Run a KV-cache spec in a child process (the KV environment's interpreter) and record what it measured.

Parent side, inside pytest. The child runs `python -m pytest_nvme_ai.measure.kv_cache JOB RESULT`
with the interpreter that has LMCache (`kv_python`: $NVME_AI_KV_PYTHON, else the project's
`.venv-kv/`, else this interpreter if LMCache is importable here), under the test's timeout, in its
own session (core.procutil). Outcomes are ok / oom / timeout / error with the log tail. LMCache's
chunk files live in `<target.workdir>/kv_cache/<test function>-<spec.id>/` and are removed after each run,
also when the child was killed.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from pytest_nvme_ai.core import procutil
from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.core.text import file_tail
from pytest_nvme_ai.measure.kv_cache.metrics import kv_metrics
from pytest_nvme_ai.measure.kv_cache.result import OUTCOMES, KvResult
from pytest_nvme_ai.measure.kv_cache.spec import KvSpec
from pytest_nvme_ai.measure.kv_cache.tier import TierVerdict, judge_tier

if TYPE_CHECKING:
    from pytest_nvme_ai.core.recorder import Recorder
    from pytest_nvme_ai.core.targets import Target

CHILD_MODULE = "pytest_nvme_ai.measure.kv_cache"
PROJECT_ROOT = Path(__file__).resolve().parents[3]
KV_VENV = PROJECT_ROOT / ".venv-kv"
SETUP_HINT = "run scripts/setup_kv.sh (it builds .venv-kv/ with torch, transformers and lmcache==0.5.6)"


# ---- the KV environment ---------------------------------------------------------------------------
def kv_python() -> Path:
    """The interpreter for KV children: $NVME_AI_KV_PYTHON, the project's .venv-kv, or this one."""
    env = os.environ.get("NVME_AI_KV_PYTHON")
    if env:
        return Path(env)
    venv = KV_VENV / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


@functools.lru_cache(maxsize=4)
def _missing(python: str) -> str | None:
    probe = ("import importlib.util as u, sys; "
             "sys.exit(0 if all(u.find_spec(m) for m in ('lmcache', 'torch', 'transformers')) else 3)")
    try:
        rc, _, err = procutil.run([python, "-c", probe], timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the KV interpreter {python} does not run ({exc}): {SETUP_HINT}"
    if rc != 0:
        return f"LMCache, torch or transformers is not importable by {python}: {SETUP_HINT}"
    return None


def kv_missing_reason() -> str | None:
    """None when the KV interpreter has LMCache, torch and transformers; else why, and what to do."""
    python = kv_python()
    if not python.exists():
        return f"the KV interpreter {python} does not exist: {SETUP_HINT}"
    return _missing(str(python))


# ---- the launch (one function: the lead swaps it for the toolkit's launcher) ------------------------
@dataclass(frozen=True)
class ChildExit:
    returncode: int | None
    timed_out: bool
    seconds: float


def launch_child(python: Path, job: Path, result: Path, log: Path, timeout: float) -> ChildExit:
    """`python -m pytest_nvme_ai.measure.kv_cache JOB RESULT` in its own session, output to `log`,
    stopped (with its whole group) past `timeout` s or when pytest is interrupted."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONHASHSEED", "0")   # LMCache's chunk keys use hash(): one seed, the same keys every run
    t0 = time.monotonic()
    with open(log, "w", encoding="utf-8") as fh:
        proc = procutil.start([str(python), "-m", CHILD_MODULE, str(job), str(result)],
                              stdout=fh, stderr=subprocess.STDOUT, env=env)
        try:
            procutil.finish(proc, timeout, grace_s=10.0, interrupt_grace_s=2.0)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
    return ChildExit(proc.returncode, timed_out, time.monotonic() - t0)


def classify(exit_: ChildExit, data: Mapping[str, Any] | None, log_tail: str) -> tuple[str, str | None]:
    """(outcome, why) from how the child ended."""
    if exit_.timed_out:
        return "timeout", f"the run did not finish in {exit_.seconds:.0f} s; its process group was killed"
    if data is not None and data.get("outcome") in OUTCOMES:
        return str(data["outcome"]), data.get("error")
    if exit_.returncode == -signal.SIGKILL:
        return "oom", "the child was killed by SIGKILL (most likely the kernel OOM killer)"
    if re.search(r"out of memory|MemoryError|OutOfMemoryError", log_tail):
        return "oom", "the log reports an out-of-memory error"
    if exit_.returncode is not None and exit_.returncode < 0:
        return "error", f"the child died of signal {signal.Signals(-exit_.returncode).name}"
    return "error", f"the child exited with status {exit_.returncode} without writing a result"


# ---- the runner -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class KvRun:
    """One run as the parent sees it: the child's record, how it ended, the tier verdict, the log."""

    result: KvResult
    verdict: TierVerdict
    log_path: Path
    log_tail: str
    exit: ChildExit
    metrics: Mapping[str, Metric]

    @property
    def ok(self) -> bool:
        return self.result.ok


class KvCacheRunner:
    """`run(spec)` -> KvRun, recorded into the test."""

    def __init__(self, target: "Target", recorder: "Recorder") -> None:
        self.target = target
        self.recorder = recorder

    def run_dir(self, spec: KvSpec, root: Path | None) -> Path:
        """<root or workdir/kv_cache>/<test function>-<spec.id>/, fresh."""
        test = self.recorder.nodeid.rsplit("::", 1)[-1].split("[", 1)[0]
        slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", test).strip("_")[:60]
        name = f"{slug}-{spec.id}" if slug else spec.id
        d = (root / name) if root is not None else self.target.inside("kv_cache", name)
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def run(self, spec: KvSpec, *, cache_root: Path | None = None, record: bool = True) -> KvRun:
        """Run `spec` with LMCache's disk tier under `cache_root` (default: the target's private area)."""
        spec.validate()
        art = Path(self.recorder.artifact_dir)
        job, result_path, log = art / f"{spec.id}.job.json", art / f"{spec.id}.result.json", art / f"{spec.id}.log"
        result_path.unlink(missing_ok=True)
        cache_dir = self.run_dir(spec, cache_root)
        job.write_text(json.dumps({"spec": spec.to_dict(), "cache_dir": str(cache_dir)}, indent=2), encoding="utf-8")
        try:
            exit_ = launch_child(kv_python(), job, result_path, log, float(self.recorder.timeout))
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)   # the chunk files: the whole working set
        tail = file_tail(log, 60, chars=6000)
        data = json.loads(result_path.read_text(encoding="utf-8")) if result_path.exists() else None
        outcome, error = classify(exit_, data, tail)
        result = (KvResult.from_dict({**data, "outcome": outcome, "error": error}) if data
                  else KvResult(spec=spec.to_dict(), outcome=outcome, error=error, cache_dir=str(cache_dir)))
        run = KvRun(result, judge_tier(result), log, tail, exit_, kv_metrics(result) if result.ok else {})
        if record:
            self.record(spec, run)
        return run

    def record(self, spec: KvSpec, run: KvRun) -> None:
        rec, r = self.recorder, run.result
        rec.set_params(**spec.params())
        t = r.tier
        for key, value in (("run_outcome", r.outcome), ("run_error", r.error),
                           ("log_tail", run.log_tail if not r.ok else run.log_tail[-1500:]),
                           ("kv_python", str(kv_python())), ("versions", dict(r.versions)),
                           ("cache_fs_type", r.fs_type), ("tier", run.verdict.to_dict()),
                           ("odirect_verified", t.odirect_verified), ("odirect_how", r.odirect_how),
                           ("lmcache_bytes", {"written": t.bytes_written, "read": t.bytes_read,
                                              "files_written": t.chunk_files_written, "files_read": t.chunk_files_read}),
                           ("kernel_bytes", {"written": t.proc_write_bytes, "read": t.proc_read_bytes,
                                             "source": "/proc/<child>/io read_bytes/write_bytes"}),
                           ("chunk_bytes", r.chunk_bytes), ("setup_seconds", r.setup_seconds),
                           ("wall_seconds", run.exit.seconds)):
            rec.set_extra(key, value)
        if r.serving:
            rec.set_extra("requests", [dict(q.__dict__) for q in r.serving])
        if r.storage:
            rec.set_extra("sequences", [dict(s.__dict__) for s in r.storage])
        for metric in run.metrics.values():
            rec.record(metric)
        rec.add_artifact(f"{spec.id} log", run.log_path)
