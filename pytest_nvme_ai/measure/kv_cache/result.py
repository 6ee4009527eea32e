"""One KV-cache run as data, the same record on both sides of the pipe: the child writes it as JSON,
the runner reads it back (`KvResult.to_dict` / `KvResult.from_dict`).

What the tier did is counted twice, so the two can be compared: by LMCache's disk backend (the bytes
of the chunk files it wrote and read) and by the kernel for the child process (`/proc/self/io`
`read_bytes`/`write_bytes`: bytes that went to or came from the storage layer; a tier on tmpfs, or
one served from the page cache, moves none). Block-layer bytes per child come later (measure/blkio).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

OUTCOMES = ("ok", "oom", "timeout", "error")


@dataclass(frozen=True)
class TierStats:
    """What LMCache's disk backend did over the measured phases, and what the kernel saw of it."""

    chunk_files_written: int = 0
    chunk_files_read: int = 0
    bytes_written: int = 0               # LMCache's count: the chunk buffers it wrote ...
    bytes_read: int = 0                  # ... and read (the local_disk backend's write_file/read_file)
    opens_direct: int = 0                # chunk-file descriptors whose kernel flags (/proc/self/fdinfo) had O_DIRECT
    opens_buffered: int = 0              # ... and those without it
    proc_write_bytes: int = 0            # /proc/self/io write_bytes over the measured phases
    proc_read_bytes: int = 0             # /proc/self/io read_bytes over the measured phases
    tokens_stored: int = 0               # tokens whose KV LMCache stored
    tokens_hit: int = 0                  # prefix tokens LMCache returned on retrieves
    tokens_hit_disk: int = 0             # ... of which read from the drive (the rest: the memory tier)
    files_left: int = 0                  # chunk files in the cache directory at the end (before cleanup)

    @property
    def odirect_verified(self) -> bool:
        """Every chunk file LMCache opened had O_DIRECT in its kernel flags, and there was at least one."""
        return self.opens_direct > 0 and self.opens_buffered == 0


@dataclass(frozen=True)
class ServingRequest:
    """One request of the serving case: a prompt, what the tiers gave back, and both first tokens."""

    user: int
    round: int
    prompt_tokens: int
    hit_tokens: int                      # prefix tokens restored from LMCache
    disk_chunks: int                     # chunks read from the drive for this request
    ttft_warm: float                     # s: retrieve + prefill of the rest + the first token
    ttft_cold: float                     # s: full prefill of the same prompt (what serving pays without the tier)
    retrieve_seconds: float
    store_seconds: float                 # s: storing the prompt's KV (until it is on the drive)
    token_match: bool                    # the first token after the restore == the one after a full prefill


@dataclass(frozen=True)
class StorageSequence:
    """One sequence of the storage case: its store, and its retrieve split into device and host time."""

    tokens: int
    store_seconds: float                 # s: store call until every chunk file is written
    retrieve_seconds: float              # s: the retrieve call, wall clock
    retrieve_device_seconds: float       # s: time in it with at least one chunk read in flight (the I/O)
    retrieve_host_seconds: float         # s: the rest (hashing, allocation, copies into the KV layout)
    hit_tokens: int
    disk_chunks: int
    bit_exact: bool                      # the retrieved KV equals what was stored, bit for bit


@dataclass(frozen=True)
class KvResult:
    spec: Mapping[str, Any] = field(hash=False)
    outcome: str                         # ok | oom | timeout | error
    error: str | None = None
    cache_dir: str = ""
    fs_type: str = ""                    # file system type of cache_dir (from /proc/self/mountinfo)
    chunk_bytes: int = 0
    versions: Mapping[str, str] = field(default_factory=dict, hash=False)
    tier: TierStats = field(default_factory=TierStats)
    serving: tuple[ServingRequest, ...] = ()
    storage: tuple[StorageSequence, ...] = ()
    chunk_read_seconds: tuple[float, ...] = ()   # every chunk read's I/O time (device side, per file)
    odirect_how: str = ""                # how O_DIRECT was checked
    setup_seconds: float = 0.0           # imports, engine (and model) construction

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spec"] = dict(self.spec)
        d["versions"] = dict(self.versions)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "KvResult":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["tier"] = TierStats(**dict(d.get("tier") or {}))
        kw["serving"] = tuple(ServingRequest(**r) for r in d.get("serving") or ())
        kw["storage"] = tuple(StorageSequence(**s) for s in d.get("storage") or ())
        kw["chunk_read_seconds"] = tuple(float(x) for x in d.get("chunk_read_seconds") or ())
        if kw.get("outcome") not in OUTCOMES:
            raise ValueError(f"result outcome {kw.get('outcome')!r} is not one of {', '.join(OUTCOMES)}")
        return cls(**kw)

    @classmethod
    def read(cls, path: Path) -> "KvResult":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
