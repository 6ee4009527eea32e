"""The aio worker, child side: `python -m pytest_nvme_ai.measure.aio.worker`, started by `aio.AioWorker`.

It loads DeepSpeed's AsyncIO op (building it on first use) and then serves reads
until its stdin closes. DeepSpeed's op is C++ full of `assert`s, so it is only
ever loaded here, never in pytest: an abort ends this process, not the session.

The protocol is JSON lines. On stdout, one object per line with an "event":
"progress" (message: a line for the terminal, e.g. while the op builds), "ready"
(load_s, pid), "result" (nbytes, seconds, verified, recycle, handle) or "error"
(message). On stdin, one request per line: {"op": "read", "file", "nbytes",
"repeat", and `aio.AioSettings`' fields}. Everything else the process writes goes
to stderr, which the parent keeps as the worker's log.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from pytest_nvme_ai.measure.aio.runner import ALIGN
from pytest_nvme_ai.measure.deepspeed.ops import BUILD_MESSAGE, aio_op_is_cached, load_aio_op


class _IoState:
    """The worker's op, its current handle and one page-locked buffer, all reused between reads.

    A handle is kept while the settings stay the same (DeepSpeed keeps its handles for the life of
    the process too). A retired handle is *not* destroyed: its destructor joins every aio thread,
    each waiting out an io_destroy (an RCU grace period, ~35 ms), while holding the GIL: 0.5 s for
    16 threads, more than a short read. Retired handles pile up instead, and past a bound the
    worker exits with os._exit (the kernel tears every aio context down at once, ~50 ms) and the
    parent starts a fresh one on the next read.
    """

    MAX_RETIRED_THREADS = 256
    MAX_RETIRED_EVENTS = 16384  # of fs.aio-max-nr (65536 by default), shared with the whole machine

    def __init__(self, op: Any) -> None:
        self.op = op
        self.key: tuple[Any, ...] | None = None
        self.handle: Any = None
        self.buffer: Any = None
        self.retired: list[Any] = []
        self.retired_threads = self.retired_events = 0

    @property
    def should_recycle(self) -> bool:
        return self.retired_threads > self.MAX_RETIRED_THREADS or self.retired_events > self.MAX_RETIRED_EVENTS

    def handle_for(self, req: dict[str, Any]) -> Any:
        key = tuple(req[k] for k in ("block_size", "queue_depth", "single_submit", "overlap_events", "parallelism"))
        if key != self.key:
            if self.handle is not None:
                self.retired.append(self.handle)
                par, qd = int(self.key[4]), int(self.key[1])  # type: ignore[index]  # set with handle
                self.retired_threads += par
                self.retired_events += 2 * par * max(qd, 8)  # the kernel reserves about twice what io_setup asks
            self.handle = self.op.aio_handle(int(key[0]), int(key[1]), bool(key[2]), bool(key[3]), int(key[4]))
            self.key = key
        return self.handle

    def buffer_of(self, nbytes: int) -> Any:
        import torch

        if self.buffer is None or self.buffer.numel() < nbytes:
            self.release()
            t = self.handle.new_cpu_locked_tensor(nbytes, torch.empty(0, dtype=torch.uint8))
            if t.data_ptr() == 0:  # DeepSpeed returns a null-backed tensor when mlock fails
                raise MemoryError(f"could not page-lock {nbytes} B (mlock failed): raise `ulimit -l`, "
                                  "or use a smaller file")
            self.buffer = t
        return self.buffer[:nbytes]

    def release(self) -> None:
        if self.buffer is not None and self.handle is not None:
            self.handle.free_cpu_locked_tensor(self.buffer)  # the manager is shared by every handle
        self.buffer = None


def _verify(buf: Any, file: str, nbytes: int, samples: int = 16) -> bool:
    """Compare evenly spaced 4 KiB blocks (first and last included) with a plain read of the file."""
    blocks = nbytes // ALIGN
    idx = sorted({round(i * (blocks - 1) / max(samples - 1, 1)) for i in range(samples)})
    with open(file, "rb", buffering=0) as fh:
        for b in idx:
            want = os.pread(fh.fileno(), ALIGN, b * ALIGN)
            if bytes(buf[b * ALIGN:(b + 1) * ALIGN].numpy()) != want:
                return False
    return True


def _serve_read(state: _IoState, req: dict[str, Any]) -> dict[str, Any]:
    file, nbytes, repeat = req["file"], int(req["nbytes"]), int(req["repeat"])
    handle = state.handle_for(req)
    buf = state.buffer_of(nbytes)
    seconds, verified = [], True
    for _ in range(repeat):
        buf.fill_(0xA5)  # poison: a silently short read cannot pass verification with stale data
        t0 = time.perf_counter()
        ops = handle.sync_pread(buf, file)
        seconds.append(time.perf_counter() - t0)
        if ops != 1:
            raise OSError(f"sync_pread({file}) returned {ops} (expected 1 completed op)")
        verified = verified and _verify(buf, file, nbytes)
    return {"nbytes": nbytes, "seconds": seconds, "verified": verified, "recycle": state.should_recycle,
            "handle": {"block_size": handle.get_block_size(), "queue_depth": handle.get_queue_depth(),
                       "parallelism": handle.get_intra_op_parallelism()}}


def _worker_main() -> int:
    # The protocol gets a private copy of stdout; fd 1 then points at the log, because the C++ op
    # writes diagnostics to std::cout and they must not corrupt the JSON lines.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def emit(**msg: Any) -> None:
        proto.write(json.dumps(msg) + "\n")
        proto.flush()

    try:
        if not aio_op_is_cached():
            emit(event="progress", message=BUILD_MESSAGE)
        t0 = time.monotonic()
        op = load_aio_op(progress=lambda m: print(m, file=sys.stderr, flush=True))
    except Exception as exc:  # noqa: BLE001 - any load failure goes back to the parent as an error event
        emit(event="error", message=f"{type(exc).__name__}: {exc}")
        return 3
    emit(event="ready", load_s=time.monotonic() - t0, pid=os.getpid())
    state = _IoState(op)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            emit(event="result", **_serve_read(state, json.loads(line)))
        except Exception as exc:  # noqa: BLE001 - a Python-level failure keeps the worker; a C++ abort ends it
            emit(event="error", message=f"{type(exc).__name__}: {exc}")
        if state.should_recycle:
            break
    sys.stderr.flush()
    os._exit(0)  # skip the handles' destructors (see _IoState); the kernel reclaims everything at once


if __name__ == "__main__":
    sys.exit(_worker_main())
