"""Launching a workload's child and reading how it went (pytest side, parent process).

One path for every DeepSpeed workload: the job file is written (`job.write_job`), the child
`python -m <workload> JOB.json RESULT.json` runs in its own session under a timeout (`run_child`),
its swap folder is removed whatever happened, its record is read back (`read_record`), and the
outcome is classified (`finish_run`, the same rules for a persistent worker's case). The spec, the
exact DeepSpeed config and the log are kept with the test (`keep_run_artifacts`).

Swap files live in `<target.workdir>/<workload>/<test-slug>[-prefix]/` (`offload_dir`: one slug rule).
"""
from __future__ import annotations

import importlib.util
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
from typing import TYPE_CHECKING, Any, Generic, Sequence, TypeVar

from pytest_nvme_ai.core import procutil
from pytest_nvme_ai.core.text import file_tail, safe_name
from pytest_nvme_ai.measure.deepspeed.job import Job, write_job
from pytest_nvme_ai.measure.deepspeed.outcome import OUTCOMES, ChildExit, KillCause, sigkill_cause
from pytest_nvme_ai.measure.deepspeed.record import ChildRecord

if TYPE_CHECKING:
    from pytest_nvme_ai.core.recorder import Recorder
    from pytest_nvme_ai.core.targets import Target

R = TypeVar("R", bound=ChildRecord)
REQUIRED = ("torch", "deepspeed", "transformers")
LOG_TAIL_LINES = 40


def missing_reason() -> str | None:
    """None when torch, DeepSpeed and transformers are importable (checked without importing them)."""
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        return (f"needs {', '.join(REQUIRED)} (missing: {', '.join(missing)}): run scripts/setup.sh "
                "or pip install 'pytest-nvme-ai[inference]'")
    return None


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def tail_of(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    return file_tail(path, lines, chars=6000)


def run_stem(spec_id: str, prefix: str | None) -> str:
    """The artifacts' file stem of one run: `[prefix-]spec-id`."""
    return f"{prefix}-{spec_id}" if prefix else spec_id


def offload_dir(target: Target, workload: str, nodeid: str, prefix: str | None) -> Path:
    """<workdir>/<workload>/<test-slug>[-prefix]/: a run's swap files, removed after it."""
    slug = safe_name(nodeid.rsplit("::", 1)[-1], 80)
    d = target.inside(workload, f"{slug}-{prefix}" if prefix else slug)
    d.mkdir(parents=True, exist_ok=True)
    return d


def run_child(job: Path, result: Path, log: Path, timeout: float, wrap: Sequence[str] = (), *,
              module: str) -> ChildExit:
    """`python -m MODULE JOB RESULT` under `timeout` s. `wrap` prefixes the command: measure.throttle's
    wrapper joins a cgroup before it execs the child, so every byte the child reads is throttled."""
    t0 = time.monotonic()
    with open(log, "w", encoding="utf-8") as fh:
        # Its own session, so a stop reaches DeepSpeed's helpers too. A Ctrl-C in pytest, which the child
        # would not see, takes it down with us (a shorter grace) instead of leaving it running.
        proc = procutil.start([*wrap, sys.executable, "-m", module, str(job), str(result)],
                              stdout=fh, stderr=subprocess.STDOUT, env=child_env())
        try:
            procutil.finish(proc, timeout, grace_s=10.0, interrupt_grace_s=2.0)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
    return ChildExit(proc.returncode, timed_out, time.monotonic() - t0)


def read_record(path: Path, record_type: type[R]) -> R | None:
    """The child's record from RESULT.json; None when it wrote none (it died first)."""
    if not path.exists():
        return None
    return record_type.from_dict(json.loads(path.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class ChildRun(Generic[R]):
    """One child run seen from the parent: the child's record (None when it wrote none), how it ended,
    its log, and the outcome classified from both."""

    record: R | None
    exit: ChildExit
    log: Path
    outcome: str
    error: str | None


def classify(returncode: int | None, timed_out: bool, record: ChildRecord | None,
             log_tail: str, kill_cause: KillCause | None = None) -> tuple[str, str | None]:
    """(outcome, why) from how the child ended and what it reported (None: it wrote nothing).
    `kill_cause`: who sent a SIGKILL (outcome.sigkill_cause); `oom` only when the OOM killer did or when
    this machine cannot tell (as before), `error` when someone else did."""
    if timed_out:
        return "timeout", "the run did not finish in time; its process group was killed"
    if record is not None and record.outcome in OUTCOMES:
        return record.outcome, record.error
    if returncode == -signal.SIGKILL:
        cause = kill_cause or KillCause(None, "killed by SIGKILL (most likely the kernel OOM killer; not looked up)")
        return ("error" if cause.oom is False else "oom"), f"the child was {cause.why}"
    if re.search(r"out of memory|MemoryError|OutOfMemoryError", log_tail):
        return "oom", "the log reports an out-of-memory error"
    if returncode is not None and returncode < 0:
        return "error", f"the child died of signal {signal.Signals(-returncode).name}"
    return "error", f"the child exited with status {returncode} without writing a result"


def finish_run(record: R | None, exit_: ChildExit, log: Path, timeout: float) -> ChildRun[R]:
    """Classify a run (one-shot child or a worker's case alike)."""
    cause = (sigkill_cause(exit_.seconds, exit_.pid)
             if exit_.returncode == -signal.SIGKILL and not exit_.timed_out and record is None else None)
    outcome, error = classify(exit_.returncode, exit_.timed_out, record, tail_of(log), cause)
    if exit_.timed_out:
        error = f"killed after {timeout:g} s ({error})"
    return ChildRun(record, exit_, log, outcome, error)


def run_one_shot(job: Job, record_type: type[R], *, artifact_dir: Path, stem: str, timeout: float, module: str,
                 wrap: Sequence[str] = (), swap_dir: Path | None = None) -> ChildRun[R]:
    """A one-shot child for `job`; its artifacts are `<stem>.{job.json,result.json,log}` in
    `artifact_dir`, and `swap_dir` (as large as the model) is removed afterwards, also after a kill."""
    art = Path(artifact_dir)
    job_path, result_path, log = art / f"{stem}.job.json", art / f"{stem}.result.json", art / f"{stem}.log"
    result_path.unlink(missing_ok=True)
    write_job(job_path, job)
    try:
        exit_ = run_child(job_path, result_path, log, timeout, wrap, module=module)
    finally:
        if swap_dir is not None:
            shutil.rmtree(swap_dir, ignore_errors=True)
    return finish_run(read_record(result_path, record_type), exit_, log, timeout)


def keep_run_artifacts(recorder: Recorder, spec_id: str, spec_json: str, ds_config: Any,
                       log_path: Path | str | None, prefix: str | None) -> None:
    """Keep a child run's spec, exact DeepSpeed config and log with the test (every workload alike)."""
    stem = run_stem(spec_id, prefix)
    art = Path(recorder.artifact_dir)
    spec_file, ds_file = art / f"{stem}.spec.json", art / f"{stem}.ds_config.json"
    spec_file.write_text(spec_json + "\n", encoding="utf-8")
    ds_file.write_text(json.dumps(ds_config, indent=2) + "\n", encoding="utf-8")
    label = f"{prefix}_" if prefix else ""
    for name, path in (("spec", spec_file), ("ds_config", ds_file), ("log", log_path)):
        if path is not None and Path(path).exists():
            recorder.add_artifact(f"{label}{name}", path)
