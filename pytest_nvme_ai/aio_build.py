"""Build (or load from cache) DeepSpeed's AsyncIO op, visibly.

The JIT build takes minutes on 2 cores the first time; a silent pytest during
that time looks like a hang. `python -m pytest_nvme_ai.aio_build` is run by
scripts/setup.sh, and `ensure_built()` is what the suites call before first use.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

_BUILT: list[object] = []


def ensure_built(progress: Callable[[str], None] | None = None) -> object:
    """Load the op (building it when no cached build exists); raises RuntimeError with what to do."""
    if _BUILT:
        return _BUILT[0]
    say = progress or (lambda m: print(m, file=sys.__stderr__, flush=True))
    if not Path("/usr/include/libaio.h").exists():
        raise RuntimeError("DeepSpeed's AsyncIO op needs libaio headers: apt-get install libaio-dev")
    os.environ.setdefault("DS_BUILD_OPS", "0")
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("AsyncIOBuilder")
    if builder is None or not builder.is_compatible(verbose=False):
        raise RuntimeError("DeepSpeed's AsyncIO op is not compatible with this machine (libaio missing?): "
                           "apt-get install libaio-dev, then rerun")
    t0 = time.monotonic()
    say("nvme-ai: loading DeepSpeed AsyncIO op (the first time it is compiled: a few minutes on 2 cores)…")
    try:
        op = builder.load(verbose=False)
    except Exception as exc:  # the C++ build's own error is long; keep its last line
        raise RuntimeError(f"DeepSpeed AsyncIO op failed to build: {str(exc).strip().splitlines()[-1:]}") from exc
    say(f"nvme-ai: DeepSpeed AsyncIO op ready ({time.monotonic() - t0:.0f} s)")
    _BUILT.append(op)
    return op


def main() -> int:
    try:
        ensure_built()
    except (RuntimeError, ImportError) as exc:
        print(f"nvme-ai: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
