"""Is the KV tier live on the drive? Judged from one run's record, in the parent.

A disk tier that never reaches the drive looks healthy from the serving side: LMCache stores and
hits as usual when its directory is on tmpfs, when its disk backend is switched off and the memory
tier serves the hits, or when reads come from the page cache. For now the judgment uses what the
child counted (LMCache's bytes, the kernel's storage-layer bytes for the process) and the file system
type of the cache directory; block-layer bytes per child (measure/blkio) are the next witness.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pytest_nvme_ai.measure.kv_cache.result import KvResult

MEMORY_FS = frozenset({"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"})
KERNEL_TOLERANCE = 0.10   # the kernel's storage bytes may fall short of LMCache's by this much at most


@dataclass(frozen=True)
class TierVerdict:
    live: bool
    reasons: tuple[str, ...]            # why it is not live (empty when live)

    def to_dict(self) -> dict[str, Any]:
        return {"live": self.live, "reasons": list(self.reasons)}

    @property
    def text(self) -> str:
        return "live on the drive" if self.live else "never reaches the drive: " + "; ".join(self.reasons)


def judge_tier(result: KvResult, tolerance: float = KERNEL_TOLERANCE) -> TierVerdict:
    """Live when LMCache wrote and read chunk files, some reuse came from them, the directory is not a
    memory file system, and the kernel saw (nearly) those bytes at the storage layer."""
    spec: Mapping[str, Any] = result.spec
    t = result.tier
    reasons = []
    if not spec.get("disk_tier", True):
        reasons.append("LMCache's disk tier is switched off (no local_disk backend)")
    if result.fs_type in MEMORY_FS:
        reasons.append(f"the cache directory {result.cache_dir} is on {result.fs_type} (memory), not on the drive")
    if t.bytes_written == 0:
        reasons.append("LMCache wrote no chunk file")
    if t.bytes_read == 0 or t.tokens_hit_disk == 0:
        reasons.append("no reuse was read from the drive (hits came from the memory tier, or nothing hit)")
    if t.bytes_written and t.proc_write_bytes < (1 - tolerance) * t.bytes_written:
        reasons.append(f"the kernel accounted {t.proc_write_bytes} B written to storage for LMCache's "
                       f"{t.bytes_written} B: the writes stayed in memory")
    if t.bytes_read and t.proc_read_bytes < (1 - tolerance) * t.bytes_read:
        reasons.append(f"the kernel accounted {t.proc_read_bytes} B read from storage for LMCache's "
                       f"{t.bytes_read} B: the reads were served from memory (page cache or tmpfs)")
    return TierVerdict(not reasons, tuple(reasons))
