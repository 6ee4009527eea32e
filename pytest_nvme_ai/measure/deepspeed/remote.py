"""Child side: what every workload's child process (one-shot or persistent worker) needs around its run.

Nothing here runs in pytest. A child runs one workload in its own process because DeepSpeed keeps
global state (the process group, patched torch functions, pinned buffers), a run can exhaust memory
or hang, and the kernel's OOM killer must hit the child, not pytest. The parent reads the child's
record (`write_result`); when the child dies before writing it, the parent decides the outcome
from the exit status and the log (launch.finish_run).
"""
from __future__ import annotations

import json
import os
import resource
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from pytest_nvme_ai.measure.deepspeed.job import Job, read_job
from pytest_nvme_ai.measure.deepspeed.outcome import EXIT_ERROR, EXIT_OK, EXIT_OOM, EXIT_USAGE
from pytest_nvme_ai.measure.deepspeed.record import ChildRecord

HUB_OFFLINE = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def say(message: str) -> None:
    print(f"[nvme-ai] {message}", flush=True)


def io_bytes() -> tuple[int, int]:
    """(read_bytes, write_bytes) this process (all its threads: DeepSpeed's aio threads too) made the
    block layer move; DeepSpeed's swap I/O is O_DIRECT, so it is counted."""
    out = {"read_bytes": 0, "write_bytes": 0}
    with open("/proc/self/io", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in out:
                out[key] = int(value)
    return out["read_bytes"], out["write_bytes"]


def read_bytes() -> int:
    return io_bytes()[0]


def peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup_single_process_env() -> None:
    """What a launcher would set for one rank; a free port so parallel sessions don't collide.
    Set, not defaulted: values inherited from a launcher around pytest would make this single-rank
    child wait for ranks that never come."""
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(free_port())
    for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        os.environ[key] = value
    for key in HUB_OFFLINE:
        os.environ.setdefault(key, "1")  # never reach for a hub: the machine may have none


def obey_test_hook(hook: str | None) -> None:
    """Test-only misbehaviour, before any heavy import so that tests of the parent stay fast."""
    if not hook:
        return
    name, _, arg = hook.partition(":")
    say(f"test hook {hook!r}")
    if name == "sleep":
        time.sleep(float(arg or 3600))
    elif name == "memory_error":
        raise MemoryError("test hook: simulated allocation failure")
    elif name == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)  # what the kernel OOM killer does
    elif name == "crash":
        raise RuntimeError("test hook: simulated crash")


def torch_dtype_of(name: str) -> Any:
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}[name]


def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for pkg in ("torch", "deepspeed", "transformers", "accelerate"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def list_swap_files(nvme_path: str | Path | None) -> list[dict[str, Any]]:
    """DeepSpeed's swap files under a run's nvme_path: parameters (zero_stage_3/<dtype>params/rank0/)
    and optimizer states (zero_stage_3/optimizer/rank0/), with their size and allocated bytes."""
    if not nvme_path:
        return []
    root = Path(nvme_path)
    out = []
    for p in sorted(root.rglob("*.swp")):
        st = p.stat()
        out.append({"path": str(p.relative_to(root)), "bytes": st.st_size, "allocated": st.st_blocks * 512})
    return out


def write_result(path: Path, record: ChildRecord) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # the parent never reads half a result


def one_shot_main(argv: list[str], *, module: str, run: Callable[[Job], ChildRecord],
                  failed: Callable[[BaseException], ChildRecord]) -> int:
    """`python -m MODULE JOB.json RESULT.json`: one run in this process, its record written whatever
    happens (an exception becomes an `oom` or `error` record, with the matching exit status)."""
    if len(argv) != 2:
        print(f"usage: python -m {module} JOB.json RESULT.json", file=sys.stderr)
        return EXIT_USAGE
    job, result_path = read_job(Path(argv[0])), Path(argv[1])
    try:
        record = run(job)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a recorded outcome
        if isinstance(exc, KeyboardInterrupt):
            raise
        traceback.print_exc()
        record = failed(exc)
        write_result(result_path, record)
        sys.stdout.flush()
        return EXIT_OOM if record.outcome == "oom" else EXIT_ERROR
    write_result(result_path, record)
    say("done")
    return EXIT_OK
