"""What the installed DeepSpeed parses, read from package metadata (no import of deepspeed).

DeepSpeed renamed the aio thread knob: since 0.16.4 it reads `intra_op_parallelism`
and silently ignores `thread_count` (falling back to 1). Emitting the wrong name
would make a tuned setting a no-op without any error, so every aio block this
project writes goes through `aio_block`.
"""
from __future__ import annotations

from importlib import metadata
from typing import Any

from packaging.version import Version

RENAME_VERSION = Version("0.16.4")

# DeepSpeed's own defaults (deepspeed/runtime/swap_tensor/constants.py, 0.19.x).
DS_AIO_DEFAULTS: dict[str, Any] = {"block_size": 1 << 20, "queue_depth": 8, "intra_op_parallelism": 1,
                                   "single_submit": False, "overlap_events": True}


def deepspeed_version() -> Version | None:
    try:
        return Version(metadata.version("deepspeed"))
    except metadata.PackageNotFoundError:
        return None


def thread_key(version: Version | None = None) -> str:
    """The aio key for I/O parallelism in the given (default: installed) DeepSpeed version."""
    v = version if version is not None else deepspeed_version()
    if v is None or v >= RENAME_VERSION:
        return "intra_op_parallelism"
    return "thread_count"


def aio_block(*, block_size: int, queue_depth: int, parallelism: int, single_submit: bool = False,
              overlap_events: bool = True, use_gds: bool = False, version: Version | None = None) -> dict[str, Any]:
    """A DeepSpeed `aio` config block in the key names `version` parses."""
    if block_size <= 0 or block_size % 4096:
        raise ValueError(f"aio block_size {block_size} must be a positive multiple of 4096 (O_DIRECT alignment)")
    if queue_depth < 1 or parallelism < 1:
        raise ValueError("aio queue_depth and parallelism must be at least 1")
    block: dict[str, Any] = {"block_size": int(block_size), "queue_depth": int(queue_depth),
                             thread_key(version): int(parallelism), "single_submit": bool(single_submit),
                             "overlap_events": bool(overlap_events)}
    if use_gds:
        block["use_gds"] = True
    return block


def default_aio_block(version: Version | None = None) -> dict[str, Any]:
    d = DS_AIO_DEFAULTS
    return aio_block(block_size=d["block_size"], queue_depth=d["queue_depth"], parallelism=d["intra_op_parallelism"],
                     single_submit=d["single_submit"], overlap_events=d["overlap_events"], version=version)
