"""What the parent asks a model-load child to do, and what the child answers: frozen records, JSON both ways.

One child does one thing: write a model (`WriteSpec` -> `WriteResult`) or load it cold once with one
loader (`LoadSpec` -> `LoadResult`). The records cross the process boundary as JSON files
(`python -m pytest_nvme_ai.measure.model_load JOB.json RESULT.json`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from pytest_nvme_ai.measure.deepspeed.version import DS_AIO_DEFAULTS

LOADERS = ("safetensors", "from_pretrained", "fastsafetensors", "deepspeed_aio")
# What each loader needs importable in the child (checked in the parent without importing it).
LOADER_MODULES: dict[str, tuple[str, ...]] = {
    "safetensors": ("torch", "safetensors"),
    "from_pretrained": ("torch", "transformers", "safetensors"),
    "fastsafetensors": ("torch", "fastsafetensors"),
    "deepspeed_aio": ("torch", "deepspeed"),
}
LOADER_INSTALL: dict[str, str] = {
    "safetensors": "pip install safetensors",
    "from_pretrained": "pip install transformers safetensors",
    "fastsafetensors": "pip install fastsafetensors (runs without CUDA or GDS on the CPU path)",
    "deepspeed_aio": "pip install 'pytest-nvme-ai[inference]' and apt-get install libaio-dev",
}


@dataclass(frozen=True)
class AioLoadSettings:
    """DeepSpeed aio handle settings for the aio loader and its fio twin (DeepSpeed's defaults unless set)."""

    block_size: int = int(DS_AIO_DEFAULTS["block_size"])
    queue_depth: int = int(DS_AIO_DEFAULTS["queue_depth"])
    parallelism: int = int(DS_AIO_DEFAULTS["intra_op_parallelism"])


@dataclass(frozen=True)
class WriteSpec:
    model: str                                   # a name for messages and ids (opt-350m)
    config: Mapping[str, Any] = field(hash=False)  # the Hugging Face config.json contents
    model_dir: str                               # created by the child; inside the target's workdir
    seed: int = 0

    op = "write"

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "model": self.model, "config": dict(self.config), "model_dir": self.model_dir,
                "seed": self.seed}


@dataclass(frozen=True)
class LoadSpec:
    loader: str                                  # one of LOADERS
    model_dir: str
    aio: AioLoadSettings = AioLoadSettings()
    prompt_tokens: int = 8                       # from_pretrained: the time-to-first-token prompt
    new_tokens: int = 4                          # ... and how many tokens it generates

    op = "load"

    def __post_init__(self) -> None:
        if self.loader not in LOADERS:
            raise ValueError(f"unknown loader {self.loader!r}: one of {', '.join(LOADERS)}")

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "loader": self.loader, "model_dir": self.model_dir, "aio": asdict(self.aio),
                "prompt_tokens": self.prompt_tokens, "new_tokens": self.new_tokens}


def spec_from_dict(d: Mapping[str, Any]) -> WriteSpec | LoadSpec:
    if d.get("op") == "write":
        return WriteSpec(str(d["model"]), dict(d["config"]), str(d["model_dir"]), int(d.get("seed", 0)))
    if d.get("op") == "load":
        return LoadSpec(str(d["loader"]), str(d["model_dir"]), AioLoadSettings(**d.get("aio", {})),
                        int(d.get("prompt_tokens", 8)), int(d.get("new_tokens", 4)))
    raise ValueError(f"job has op {d.get('op')!r}: expected 'write' or 'load'")


@dataclass(frozen=True)
class WriteResult:
    weights: str                 # path of the safetensors file
    file_bytes: int
    tensors: int
    seconds: float               # write + fsync

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "WriteResult":
        return cls(str(d["weights"]), int(d["file_bytes"]), int(d["tensors"]), float(d["seconds"]))


@dataclass(frozen=True)
class LoadResult:
    """One cold load, verified: the child refuses to answer with tensors that differ from the file."""

    loader: str
    file_bytes: int              # the safetensors file's size: what a load must bring in
    load_seconds: float          # wall time of the load call alone (imports done before, checks after)
    read_bytes: int              # /proc/self/io read_bytes over the load: bytes this process had storage read
    tensors_verified: int
    cached_before: int           # bytes of the model's files in the page cache before eviction (then 0)
    device: str                  # where the loaded tensors live (cpu, cuda:0)
    version: str | None          # the loader's package version
    ttft_seconds: float | None = None   # from_pretrained: from the start of the load to the first new token
    new_tokens: int | None = None
    facts: Mapping[str, Any] = field(default_factory=dict, hash=False)  # loader details (aio alloc time, ...)
    # Bytes the block layer read for this child: device truth, filled by the launcher once the
    # block-accounting module (measure/blkio.py) runs each child in its own cgroup; None until then.
    device_read_bytes: int | None = None

    @property
    def bw(self) -> float:
        return self.file_bytes / self.load_seconds

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["facts"] = dict(self.facts)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LoadResult":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)
