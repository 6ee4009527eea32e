"""What one KV-cache run is: which case, which KV shape, how much data, and the tiers it uses.

A `KvSpec` is plain data (no torch, no LMCache): the suite builds it from the profile
(`specs_for`), the runner validates it and writes it as JSON for the child, the result keeps it.

Two cases share the tiers (LMCache's in-memory tier, smaller than the working set, in front of its
`local_disk` backend on the target with O_DIRECT):
* `serving` - a small Llama (random weights, built locally) serves a multi-round conversation
  workload (a shared system prompt, per-user histories that grow each round; the shape of LMCache's
  multi-round QA benchmark); time to first token warm from the tiers against a full prefill.
* `storage` - KV tensors with the per-token size of a real model are stored and retrieved through
  LMCache without the model, so the drive sees that model's chunk sizes and volumes.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, Mapping

Case = Literal["serving", "storage"]
CASES = ("serving", "storage")
MiB = 1 << 20
# Test-only hooks the child obeys before any heavy import (timeouts and crashes are tested fast).
TEST_HOOKS = ("sleep", "crash", "sigkill")


class SpecError(ValueError):
    """The spec is wrong: the message names the field and what is accepted."""


@dataclass(frozen=True)
class KvShape:
    """The KV cache of one token in one model: 2 (K and V) x layers x kv_heads x head_dim x dtype bytes."""

    layers: int
    kv_heads: int
    head_dim: int
    dtype_bytes: int = 2          # bf16/fp16, as served

    @property
    def bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes


# Shapes from the models' published configs (num_hidden_layers, num_key_value_heads, head_dim).
KV_SHAPES: dict[str, KvShape] = {
    "tiny-llama": KvShape(layers=8, kv_heads=4, head_dim=64),        # the serving case's model: 8 KiB/token
    "llama-3-8b": KvShape(layers=32, kv_heads=8, head_dim=128),      # 128 KiB/token
    "llama-3-70b": KvShape(layers=80, kv_heads=8, head_dim=128),     # 320 KiB/token
}
# The serving case's model beyond its KV shape (LlamaConfig fields); built with random weights in the child.
TINY_LLAMA: dict[str, Any] = {"hidden_size": 512, "intermediate_size": 1408, "num_attention_heads": 8, "vocab_size": 32000}


@dataclass(frozen=True)
class KvSpec:
    case: Case
    shape: str = "tiny-llama"      # a key of KV_SHAPES
    chunk_size: int = 256          # LMCache's chunk (tokens per chunk file)
    cpu_tier_mib: int = 32         # LMCache's in-memory tier (also its staging pool): smaller than the working set
    disk_tier: bool = True         # False: LMCache without its local_disk backend (the dead-tier check)
    odirect: bool = True           # local_disk extra_config.use_odirect
    # serving: users x rounds requests, visited round-robin so a user's history leaves the memory tier
    # (system + question a chunk multiple: a user's first chunks beyond the shared ones hold their question)
    users: int = 4
    rounds: int = 3
    system_tokens: int = 448
    question_tokens: int = 64
    answer_tokens: int = 192
    # storage: sequences x seq_tokens tokens stored, then retrieved in the same order (oldest first)
    sequences: int = 4
    seq_tokens: int = 1024
    seed: int = 1234
    test_hook: str | None = None

    # ---- derived -----------------------------------------------------------------------------
    @property
    def kv(self) -> KvShape:
        return KV_SHAPES[self.shape]

    @property
    def chunk_bytes(self) -> int:
        return self.kv.bytes_per_token * self.chunk_size

    def prompt_tokens(self, round_: int) -> int:
        """Tokens of a user's prompt in round r (0-based): system prompt, r earlier turns, a question."""
        return self.system_tokens + round_ * (self.question_tokens + self.answer_tokens) + self.question_tokens

    @property
    def working_set_tokens(self) -> int:
        """Distinct tokens the tiers must hold for every prefix to stay reusable."""
        if self.case == "storage":
            return self.sequences * self.seq_tokens
        return self.system_tokens + self.users * (self.prompt_tokens(self.rounds - 1) - self.system_tokens)

    @property
    def working_set_bytes(self) -> int:
        return self.working_set_tokens * self.kv.bytes_per_token

    @property
    def largest_request_bytes(self) -> int:
        tokens = self.seq_tokens if self.case == "storage" else self.prompt_tokens(self.rounds - 1)
        return tokens * self.kv.bytes_per_token

    @property
    def disk_tier_bytes(self) -> int:
        """LMCache's disk quota: the working set with room, so nothing is evicted from the drive."""
        return self.working_set_bytes + self.working_set_bytes // 4 + 4 * self.chunk_bytes

    @property
    def id(self) -> str:
        size = (f"u{self.users}r{self.rounds}" if self.case == "serving"
                else f"n{self.sequences}x{self.seq_tokens}")
        parts = [self.case, self.shape, size, f"mem{self.cpu_tier_mib}M"]
        if not self.disk_tier:
            parts.append("nodisk")
        if not self.odirect:
            parts.append("buffered")
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts))

    def params(self) -> dict[str, Any]:
        """The result's params: what moves the figures, so a baseline with other settings is not compared."""
        p: dict[str, Any] = {"case": self.case, "kv_shape": self.shape, "kv_bytes_per_token": self.kv.bytes_per_token,
                             "chunk_size": self.chunk_size, "cpu_tier_mib": self.cpu_tier_mib,
                             "disk_tier": self.disk_tier, "odirect": self.odirect,
                             "working_set_bytes": self.working_set_bytes}
        if self.case == "serving":
            p.update(users=self.users, rounds=self.rounds, system_tokens=self.system_tokens,
                     question_tokens=self.question_tokens, answer_tokens=self.answer_tokens)
        else:
            p.update(sequences=self.sequences, seq_tokens=self.seq_tokens)
        return p

    def with_(self, **changes: Any) -> "KvSpec":
        return replace(self, **changes)

    # ---- validation --------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise SpecError naming the bad field and what is accepted."""
        if self.case not in CASES:
            raise SpecError(f"case {self.case!r} is not one of {', '.join(CASES)}")
        if self.shape not in KV_SHAPES:
            raise SpecError(f"shape {self.shape!r} is not one of {', '.join(KV_SHAPES)}")
        for name in ("chunk_size", "cpu_tier_mib", "users", "rounds", "system_tokens", "question_tokens",
                     "answer_tokens", "sequences", "seq_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SpecError(f"{name} must be a positive integer, not {value!r}")
        if self.case == "serving" and self.shape != "tiny-llama":
            raise SpecError("the serving case runs the locally built tiny-llama model: shape must be 'tiny-llama'")
        if self.case == "storage" and self.seq_tokens % self.chunk_size:
            # LMCache stores only full chunks (save_unfull_chunk off); a partial one would be recomputed
            raise SpecError(f"seq_tokens {self.seq_tokens} must be a multiple of chunk_size {self.chunk_size}")
        if self.case == "serving" and self.rounds < 2:
            raise SpecError("rounds must be at least 2: reuse from the tiers starts in a user's second round")
        # The memory tier is LMCache's staging pool too: one request's chunks must fit in it at once.
        if self.cpu_tier_mib * MiB < self.largest_request_bytes + self.chunk_bytes:
            raise SpecError(f"cpu_tier_mib {self.cpu_tier_mib} is too small to stage one request "
                            f"({self.largest_request_bytes / MiB:.0f} MiB of KV): raise it")
        if self.disk_tier and self.cpu_tier_mib * MiB >= self.working_set_bytes:
            raise SpecError(f"cpu_tier_mib {self.cpu_tier_mib} holds the whole working set "
                            f"({self.working_set_bytes / MiB:.0f} MiB): reuse would never come from the drive; "
                            "lower it or grow the workload")
        if self.test_hook is not None and self.test_hook.split(":", 1)[0] not in TEST_HOOKS:
            raise SpecError(f"test_hook {self.test_hook!r} is not one of {', '.join(TEST_HOOKS)}")

    # ---- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "KvSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"unknown spec key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(known))}")
        return cls(**dict(d))


def _serving(users: int, rounds: int, system: int) -> KvSpec:
    spec = KvSpec(case="serving", users=users, rounds=rounds, system_tokens=system)
    # The memory tier: the largest request and two chunks (staging for a retrieve and the store after it),
    # well under the working set, so a user's history is gone from memory by the time the user comes back.
    return spec.with_(cpu_tier_mib=-(-(spec.largest_request_bytes + 2 * spec.chunk_bytes) // MiB))


def _storage(shape: str, sequences: int, seq_tokens: int) -> KvSpec:
    spec = KvSpec(case="storage", shape=shape, sequences=sequences, seq_tokens=seq_tokens)
    # One sequence and a quarter in memory: every retrieve of an older sequence has to read the drive.
    return spec.with_(cpu_tier_mib=-(-(spec.largest_request_bytes * 5 // 4) // MiB) + 2)


# Sizes per profile are Profile knobs (core/profiles.py owns every per-profile value): `kv_serving`
# (users, rounds, system_tokens) and `kv_storage` ((shape, sequences, seq_tokens), ...).


def specs_from(serving: tuple[int, int, int], storage: tuple[tuple[str, int, int], ...]) -> tuple[KvSpec, ...]:
    """The serving spec and the storage specs for these sizes, memory tiers sized to need the drive."""
    return (_serving(*serving), *(_storage(*s) for s in storage))


def specs_for(profile: Any) -> tuple[KvSpec, ...]:
    """The KV-cache specs of a `core.profiles.Profile` (its kv_serving/kv_storage knobs)."""
    return specs_from(tuple(profile.kv_serving), tuple(tuple(s) for s in profile.kv_storage))
