"""The serving case, in the child: a small Llama with random weights serves multi-round conversations
through LMCache, and each first token is timed warm (prefix restored from the tiers) and cold (full
prefill of the same prompt).

Users are visited round-robin, round by round (LMCache's multi-round QA benchmark's shape): a prompt
is the shared system prompt, the user's earlier turns and a new question. After each request the
prompt's KV is stored, as a serving engine would; by the time a user comes back, the memory tier has
seen every other user's requests, so the user's history comes from the drive.

The connector between transformers' DynamicCache and LMCache is `cache_to_flat`/`flat_to_cache`:
LMCache's chunk layout [2, layers, tokens, kv_heads*head_dim] to and from per-layer [1, heads, tokens, dim].
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pytest_nvme_ai.measure.kv_cache.child_engine import Engine, proc_io, tier_stats, wait_for_puts
from pytest_nvme_ai.measure.kv_cache.result import KvResult, ServingRequest
from pytest_nvme_ai.measure.kv_cache.spec import TINY_LLAMA, KvSpec


def build_model(spec: KvSpec) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    kv = spec.kv
    torch.manual_seed(spec.seed)
    cfg = LlamaConfig(num_hidden_layers=kv.layers, num_key_value_heads=kv.kv_heads, head_dim=kv.head_dim,
                      max_position_embeddings=max(4096, spec.prompt_tokens(spec.rounds - 1) + 64), **TINY_LLAMA)
    model: Any = LlamaForCausalLM(cfg)
    return model.to(torch.bfloat16).eval()


def cache_to_flat(cache: Any, n: int) -> Any:
    """DynamicCache -> LMCache's layout for the first n tokens."""
    import torch

    k = torch.stack([layer.keys[0, :, :n] for layer in cache.layers])      # [L, H, n, D]
    v = torch.stack([layer.values[0, :, :n] for layer in cache.layers])
    kv = torch.stack([k, v]).permute(0, 1, 3, 2, 4)                         # [2, L, n, H, D]
    return kv.reshape(kv.shape[0], kv.shape[1], n, -1).contiguous()


def flat_to_cache(flat: Any, n: int, heads: int) -> Any:
    """LMCache's layout (first n tokens) -> a DynamicCache the model continues from."""
    from transformers import DynamicCache

    x = flat[:, :, :n].reshape(2, flat.shape[1], n, heads, -1).permute(0, 1, 3, 2, 4)   # [2, L, H, n, D]
    return DynamicCache(ddp_cache_data=[(x[0, i][None].contiguous(), x[1, i][None].contiguous())
                                        for i in range(flat.shape[1])])


def conversation(spec: KvSpec) -> dict[int, list[Any]]:
    """Each user's turns as token tensors: [question_0, answer_0, question_1, ...], seeded."""
    import torch

    g = torch.Generator().manual_seed(spec.seed)
    vocab = int(TINY_LLAMA["vocab_size"])
    turns: dict[int, list[Any]] = {}
    for u in range(spec.users):
        turns[u] = []
        for _ in range(spec.rounds):
            turns[u].append(torch.randint(0, vocab, (spec.question_tokens,), generator=g))
            turns[u].append(torch.randint(0, vocab, (spec.answer_tokens,), generator=g))
    return turns


def first_token(model: Any, ids: Any, cache: Any = None) -> tuple[int, Any]:
    out = model(input_ids=ids[None], cache=cache, use_cache=True)   # transformers 5.25 names it `cache`
    return int(out.logits[0, -1].argmax()), out.cache


def serve(spec: KvSpec, eng: Engine, model: Any, prompt: Any, user: int, round_: int) -> ServingRequest:
    import torch

    kv, n = spec.kv, len(prompt)
    mark = eng.audit.mark()
    t0 = time.perf_counter()
    flat = torch.empty(2, kv.layers, n - 1, kv.kv_heads * kv.head_dim, dtype=torch.bfloat16)
    hit = int(eng.engine.retrieve(prompt[: n - 1], kv=flat).sum())   # the last token is always computed
    t_retrieved = time.perf_counter()
    warm_token, cache = first_token(model, prompt[hit:], flat_to_cache(flat, hit, kv.kv_heads) if hit else None)
    t1 = time.perf_counter()
    disk_chunks = sum(1 for op, *_ in eng.audit.since(mark) if op == "read")
    eng.engine.store(prompt, kv=cache_to_flat(cache, n))
    wait_for_puts(eng)
    t2 = time.perf_counter()
    cold_token, _ = first_token(model, prompt)
    t3 = time.perf_counter()
    return ServingRequest(user=user, round=round_, prompt_tokens=n, hit_tokens=hit, disk_chunks=disk_chunks,
                          ttft_warm=t1 - t0, ttft_cold=t3 - t2, retrieve_seconds=t_retrieved - t0,
                          store_seconds=t2 - t1, token_match=warm_token == cold_token)


def unique_chunk_tokens(spec: KvSpec) -> int:
    """Tokens in distinct full chunks stored: chunk keys chain the prefix, so only the chunks inside the
    system prompt are shared between users."""
    ch = spec.chunk_size
    shared = spec.system_tokens // ch * ch
    return shared + spec.users * (spec.prompt_tokens(spec.rounds - 1) // ch * ch - shared)


def run_serving(spec: KvSpec, eng: Engine, cache_dir: Path | None, setup_started: float) -> KvResult:
    import torch

    model = build_model(spec)
    turns = conversation(spec)
    system = torch.randint(0, int(TINY_LLAMA["vocab_size"]), (spec.system_tokens,),
                           generator=torch.Generator().manual_seed(spec.seed + 1))
    with torch.inference_mode():
        first_token(model, system[:64])          # first-call allocations stay out of every timed request
        setup = time.perf_counter() - setup_started
        io0 = proc_io()
        requests = []
        for r in range(spec.rounds):
            for u in range(spec.users):
                prompt = torch.cat([system, *turns[u][: 2 * r + 1]])
                requests.append(serve(spec, eng, model, prompt, u, r))
    stored = unique_chunk_tokens(spec)
    hit = sum(q.hit_tokens for q in requests)
    hit_disk = min(hit, sum(q.disk_chunks for q in requests) * spec.chunk_size)
    tier = tier_stats(eng, io0, tokens_stored=stored, tokens_hit=hit, tokens_hit_disk=hit_disk, cache_dir=cache_dir)
    return KvResult(spec=spec.to_dict(), outcome="ok", tier=tier, serving=tuple(requests), setup_seconds=setup)
