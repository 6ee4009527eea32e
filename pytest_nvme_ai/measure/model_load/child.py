"""The child process: `python -m pytest_nvme_ai.measure.model_load JOB.json RESULT.json`.

One job per process. A write job builds the model's tensor layout on the meta device and streams random
float16 weights into `model.safetensors` (plus config.json and the checksum manifest). A load job loads
the model cold with one loader, so no loader inherits another's page cache, allocator or memory:

    imports (torch, the loader)       not timed: a serving process has them before it loads
    evict + mincore check             refuse (StillCached) if any page of the model's files stays cached
    load                              timed; /proc/self/io read_bytes taken around it
    first token (from_pretrained)     generate a few tokens; time to the first one, from the load's start
    verify                            every tensor's dtype, shape and CRC-32 against the manifest

RESULT.json is {"outcome": "ok", "result": {...}} or {"outcome": "error", "error": "<message>"}.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping

from pytest_nvme_ai.measure.model_load.models import micro_variant, tensor_layout
from pytest_nvme_ai.measure.model_load.pagecache import evict_verified
from pytest_nvme_ai.measure.model_load.safetensors_file import (WEIGHTS_NAME, Header, Manifest, read_header,
                                                                tensors_from_buffer, verify_tensors,
                                                                write_safetensors)
from pytest_nvme_ai.measure.model_load.spec import LoadResult, LoadSpec, WriteResult, WriteSpec, spec_from_dict

ALIGN = 4096   # O_DIRECT: buffer address, file offset and length in whole logical blocks
Loaded = tuple[Mapping[str, Any], Any, dict[str, Any]]   # (name -> tensor, the loaded object, facts)


def say(message: str) -> None:
    print(f"[nvme-ai model_load] {message}", file=sys.stderr, flush=True)


def read_bytes() -> int:
    """Bytes this process (every thread: DeepSpeed's aio threads too) had the block layer read."""
    with open("/proc/self/io", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    return 0


def version_of(pkg: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


# ---- write ----------------------------------------------------------------------------------------

def write_model(spec: WriteSpec) -> WriteResult:
    model_dir = Path(spec.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    layout = tensor_layout(spec.config)
    t0 = time.perf_counter()
    header, crcs = write_safetensors(model_dir / WEIGHTS_NAME, layout, spec.seed)
    seconds = time.perf_counter() - t0
    (model_dir / "config.json").write_text(json.dumps({**spec.config, "dtype": "float16"}, indent=1) + "\n")
    Manifest(WEIGHTS_NAME, header.file_bytes, crcs, spec.model).save(model_dir)
    return WriteResult(str(model_dir / WEIGHTS_NAME), header.file_bytes, len(header.tensors), seconds)


def warm_up(spec: LoadSpec) -> float:
    """Load a micro model of the same architecture once, verified, before the measured load.

    A loader's first call pays one-off costs that are not the drive's: transformers imports the model's
    code and its loading machinery lazily (20 s on a loaded 2-core VM against 0.2 MB of weights),
    fastsafetensors starts its copier threads, DeepSpeed spawns its aio threads. A serving process has
    paid them before it loads; the warm-up pays them here, before the clock. The micro model is written
    next to the real one (inside the target) and removed. Returns the warm-up's wall time."""
    import shutil
    import tempfile

    model_dir = Path(spec.model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    config.pop("dtype", None)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=".warm-up-", dir=model_dir.parent))
    try:
        write_model(WriteSpec("warm-up", micro_variant(config), str(tmp), seed=1))
        _load_once(replace(spec, model_dir=str(tmp)), evict=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return time.perf_counter() - t0


# ---- the loaders: each import is done by prepare, the returned callable is what gets timed -----------

def prepare_safetensors(spec: LoadSpec, path: Path, header: Header) -> Callable[[], Loaded]:
    from safetensors.torch import load_file

    def load() -> Loaded:
        tensors = load_file(str(path), device="cpu")
        return tensors, tensors, {}

    return load


def prepare_fastsafetensors(spec: LoadSpec, path: Path, header: Header) -> Callable[[], Loaded]:
    import importlib

    # through importlib: an optional package without stubs, absent where mypy runs (pyproject lists no override)
    fastsafe_open = importlib.import_module("fastsafetensors").fastsafe_open

    def load() -> Loaded:
        # nogds: read with pread into host memory (no GPUDirect Storage); tensors stay valid after close.
        with fastsafe_open(filenames=[str(path)], nogds=True, device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return tensors, tensors, {"copier": "nogds"}

    return load


def prepare_from_pretrained(spec: LoadSpec, path: Path, header: Header) -> Callable[[], Loaded]:
    import torch
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"   # load where it will generate, as serving does

    def load() -> Loaded:
        placed = {"device_map": device} if device != "cpu" else {}   # device_map needs accelerate
        model = AutoModelForCausalLM.from_pretrained(path.parent, local_files_only=True, dtype=torch.float16,
                                                     **placed)
        return model.state_dict(), model, {"device": device}

    return load


def prepare_deepspeed_aio(spec: LoadSpec, path: Path, header: Header) -> Callable[[], Loaded]:
    import torch

    from pytest_nvme_ai.measure.deepspeed.ops import load_aio_op

    op = load_aio_op(progress=say)
    size, par = path.stat().st_size, spec.aio.parallelism
    # DeepSpeed splits one read into `par` equal O_DIRECT slices, so the aio part is a whole number of
    # par x 4 KiB blocks; the tail (< par x 4 KiB) is read with a plain pread into the same buffer.
    body = size - size % (par * ALIGN)

    def load() -> Loaded:
        t0 = time.perf_counter()
        handle = op.aio_handle(spec.aio.block_size, spec.aio.queue_depth, False, True, par)
        padded = -(-size // ALIGN) * ALIGN     # 4 KiB-aligned, padded: a plain tensor silently read short
        buf = handle.new_cpu_locked_tensor(padded, torch.empty(0, dtype=torch.uint8))
        if buf.data_ptr() == 0 or buf.data_ptr() % ALIGN:
            raise MemoryError(f"DeepSpeed could not give a page-locked, 4 KiB-aligned buffer of {padded} B "
                              "(mlock failed?): raise `ulimit -l` or free memory")
        alloc = time.perf_counter() - t0
        if body:
            done = handle.sync_pread(buf[:body], str(path))
            if done != 1:
                raise OSError(f"deepspeed_aio: sync_pread({path}) returned {done}, expected 1 completed op")
        if size > body:
            with open(path, "rb", buffering=0) as fh:
                tail = os.pread(fh.fileno(), size - body, body)
            buf[body:size].copy_(torch.frombuffer(bytearray(tail), dtype=torch.uint8))
        facts = {"alloc_seconds": alloc, "aio_bytes": body, "tail_bytes": size - body,
                 "block_size": spec.aio.block_size, "queue_depth": spec.aio.queue_depth, "parallelism": par}
        return tensors_from_buffer(buf, header), (handle, buf), facts

    return load


PREPARE: dict[str, Callable[[LoadSpec, Path, Header], Callable[[], Loaded]]] = {
    "safetensors": prepare_safetensors,
    "from_pretrained": prepare_from_pretrained,
    "fastsafetensors": prepare_fastsafetensors,
    "deepspeed_aio": prepare_deepspeed_aio,
}
VERSION_OF = {"safetensors": "safetensors", "from_pretrained": "transformers", "fastsafetensors": "fastsafetensors",
              "deepspeed_aio": "deepspeed"}


class FirstToken:
    """A generate() streamer that notes when the first new token arrives (its first put() is the prompt)."""

    def __init__(self) -> None:
        self.puts = 0
        self.first_at: float | None = None

    def put(self, value: Any) -> None:
        self.puts += 1
        if self.puts == 2 and self.first_at is None:
            self.first_at = time.perf_counter()

    def end(self) -> None:
        pass


def first_token(model: Any, spec: LoadSpec) -> tuple[float, int]:
    """(time the first new token arrived, new tokens generated) for a fixed prompt, greedy."""
    import torch

    vocab = int(model.config.vocab_size)
    ids = torch.tensor([[2] + [4 + (i * 7919) % (vocab - 4) for i in range(spec.prompt_tokens - 1)]],
                       device=model.device)
    streamer = FirstToken()
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=spec.new_tokens,
                             min_new_tokens=spec.new_tokens, do_sample=False, streamer=streamer,
                             pad_token_id=int(model.config.pad_token_id or 1))
    if streamer.first_at is None:
        raise RuntimeError("from_pretrained: generate() produced no token")
    return streamer.first_at, int(out.shape[1] - ids.shape[1])


def load_model(spec: LoadSpec) -> LoadResult:
    warm_s = warm_up(spec)
    result = _load_once(spec, evict=True)
    return replace(result, facts={**result.facts, "warm_up_seconds": warm_s})


def _load_once(spec: LoadSpec, *, evict: bool) -> LoadResult:
    model_dir = Path(spec.model_dir)
    manifest = Manifest.load(model_dir)
    path = model_dir / manifest.weights
    header = read_header(path)
    load = PREPARE[spec.loader](spec, path, header)
    files = [path, *(p for p in (model_dir / "config.json",) if p.exists())]
    cached = sum(evict_verified(files).values()) if evict else 0
    io0, t0 = read_bytes(), time.perf_counter()
    tensors, obj, facts = load()
    t1 = time.perf_counter()
    io1 = read_bytes()
    ttft = new = None
    if spec.loader == "from_pretrained":
        first_at, new = first_token(obj, spec)
        ttft = first_at - t0
    verified = verify_tensors(spec.loader, manifest, header, tensors)
    device = str(next(iter(tensors.values())).device) if tensors else "cpu"
    return LoadResult(spec.loader, header.file_bytes, t1 - t0, io1 - io0, verified, cached, device,
                      version_of(VERSION_OF[spec.loader]), ttft, new, facts)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m pytest_nvme_ai.measure.model_load JOB.json RESULT.json", file=sys.stderr)
        return 2
    job, result = Path(argv[0]), Path(argv[1])
    try:
        spec = spec_from_dict(json.loads(job.read_text(encoding="utf-8")))
        say(f"{spec.op}: {spec}")
        data: dict[str, Any] = {"outcome": "ok", "result": (write_model(spec).__dict__ if isinstance(spec, WriteSpec)
                                                              else load_model(spec).to_dict())}
        code = 0
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent as a message
        traceback.print_exc()
        data, code = {"outcome": "error", "error": f"{type(exc).__name__}: {exc}"}, 1
    tmp = result.with_name(result.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, result)   # the parent never reads half a result
    sys.stderr.flush()
    # Skip interpreter teardown: DeepSpeed's aio handle joins its threads in a destructor, and a 100 GB
    # state dict is freed page by page; the kernel reclaims both at once.
    os._exit(code)
