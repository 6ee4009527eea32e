"""DeepSpeed config blocks every workload shares (any process: plain JSON arithmetic, no torch).

* `stage3_block`: the ZeRO-3 bucket sizes DeepSpeedExamples' run_model.py derives from the hidden size h:
  prefetch bucket 2h², persistence threshold h (biases and layer norms stay resident), max live 2h².
* `buffer_elements`: `offload_param.buffer_size` counts **elements**, not bytes, and each pinned swap
  buffer must hold the largest single parameter whole; too small and DeepSpeed asserts mid-run.
* `normalize_aio` / `parse_aio_json`: a user's or the tuner's aio block (`--nvme-ai-aio`), checked and
  written in the installed DeepSpeed's key names (the thread key changed name in 0.16.4).
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from packaging.version import Version

from pytest_nvme_ai.measure.deepspeed.version import DS_AIO_DEFAULTS, aio_block, thread_key

# Swap buffers are rounded up to whole MiB-elements: a stable, readable number in the saved
# config, and a size that stays aligned for O_DIRECT whatever the element size or block size.
BUFFER_ALIGN_ELEMENTS = 1 << 20
PARALLELISM_KEYS = ("intra_op_parallelism", "thread_count")
AIO_KEYS = ("block_size", "queue_depth", *PARALLELISM_KEYS, "single_submit", "overlap_events", "use_gds")


class AioSettingError(ValueError):
    pass


def buffer_elements(largest_numel: int, requested: int | None = None) -> int:
    """`offload_param.buffer_size` in elements: the requested size, or the largest parameter rounded up."""
    if largest_numel < 1:
        raise ValueError(f"largest parameter numel must be positive, not {largest_numel}")
    if requested is not None:
        if requested < largest_numel:
            raise ValueError(
                f"offload buffer_size {requested} elements is smaller than the largest parameter "
                f"({largest_numel} elements); buffer_size counts elements, not bytes, and must hold "
                "one whole parameter (leave it unset to size it automatically)"
            )
        return int(requested)
    return -(-largest_numel // BUFFER_ALIGN_ELEMENTS) * BUFFER_ALIGN_ELEMENTS


def stage3_block(hidden_size: int) -> dict[str, Any]:
    h = int(hidden_size)
    return {
        "stage": 3,
        "stage3_prefetch_bucket_size": 2 * h * h,
        "stage3_param_persistence_threshold": h,
        "stage3_max_live_parameters": 2 * h * h,
    }


# ---- the --nvme-ai-aio value ------------------------------------------------------------------------

def normalize_aio(block: Mapping[str, Any], version: Version | None = None) -> dict[str, Any]:
    """A user or tuner aio block, checked and rewritten in the installed DeepSpeed's key names.

    Missing keys take DeepSpeed's defaults; `thread_count` and `intra_op_parallelism`
    are both accepted and written as whichever the version parses.
    """
    unknown = sorted(set(block) - set(AIO_KEYS))
    if unknown:
        raise AioSettingError(f"unknown aio key(s) {', '.join(repr(k) for k in unknown)}; "
                              f"accepted: {', '.join(AIO_KEYS)}")
    given = {k: block[k] for k in PARALLELISM_KEYS if k in block}
    if len(set(given.values())) > 1:
        raise AioSettingError(f"aio gives both {' and '.join(f'{k}={v}' for k, v in given.items())}; "
                              f"they are the same knob (DeepSpeed >= 0.16.4 reads intra_op_parallelism): give one")
    parallelism = next(iter(given.values()), DS_AIO_DEFAULTS["intra_op_parallelism"])
    merged = {**DS_AIO_DEFAULTS, **{k: v for k, v in block.items() if k not in PARALLELISM_KEYS}}
    for key in ("block_size", "queue_depth"):
        _check_int(key, merged[key])
    _check_int("intra_op_parallelism", parallelism)
    for key in ("single_submit", "overlap_events", "use_gds"):
        if key in merged and not isinstance(merged[key], bool):
            raise AioSettingError(f"aio {key} must be true or false, not {merged[key]!r}")
    try:
        return aio_block(block_size=merged["block_size"], queue_depth=merged["queue_depth"],
                         parallelism=parallelism, single_submit=merged["single_submit"],
                         overlap_events=merged["overlap_events"], use_gds=bool(merged.get("use_gds", False)),
                         version=version)
    except ValueError as exc:
        raise AioSettingError(str(exc)) from None


def parse_aio_json(text: str, version: Version | None = None) -> dict[str, Any]:
    """`--nvme-ai-aio '{"block_size": 8388608, ...}'` -> a checked aio block."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AioSettingError(f"--nvme-ai-aio is neither 'default', 'auto' nor valid JSON ({exc.msg} at "
                              f"column {exc.colno}); example: "
                              '\'{"block_size": 1048576, "queue_depth": 32, "intra_op_parallelism": 8}\'') from None
    if not isinstance(data, dict):
        raise AioSettingError(f"--nvme-ai-aio JSON must be an object of aio keys ({', '.join(AIO_KEYS)}), "
                              f"not {type(data).__name__}")
    return normalize_aio(data, version)


def _check_int(key: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise AioSettingError(f"aio {key} must be a positive integer, not {value!r}")


__all__ = ["AIO_KEYS", "AioSettingError", "buffer_elements", "normalize_aio", "parse_aio_json", "stage3_block",
           "thread_key"]
