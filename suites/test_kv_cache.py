"""The KV cache on the drive: LMCache's `local_disk` tier on the target, measured as storage.

Serving engines now write KV cache to local NVMe themselves (LMCache's local_disk, vLLM's offloading
connector, SGLang HiCache); their users' complaint is a tier that silently does nothing. Each case
runs LMCache 0.5.6 in a child process (the KV environment, scripts/setup_kv.sh) with its disk
backend in the target's private area, O_DIRECT on, and an in-memory tier smaller than the working
set, so reuse has to come from the drive:

* `test_kv_serving` – a small Llama (random weights, built locally) serves multi-round conversations
  sharing a system prompt; time to first token warm from the tiers vs a full prefill of the same
  prompt (`kv_ttft_warm`, `kv_ttft_cold`, `kv_ttft_warm_vs_cold`), hit rate, and the first token
  after each restore checked against the full prefill's.
* `test_kv_storage` – KV of Llama-3-8B's size (128 KiB per token; 70B's in standard/full) stored and
  retrieved without the model: cached tokens/s both ways, retrieve time at the device (P50/P95/P99)
  apart from the host's, bytes written and read per cached token, every byte checked.

Both fail when the tier never reaches the drive (a memory file system, the disk tier off, reads the
kernel did not see at the storage layer) and when LMCache's chunk files were not opened O_DIRECT.
"""
from __future__ import annotations

from typing import Any

import pytest

from pytest_nvme_ai.run.session import profile_of

VLLM_CPU_REASON = ("vLLM's KV tiers need a GPU: on CPU, vllm-cpu 0.32.0's OffloadingConnector raises 'CPU Offloading "
                   "is currently only supported on CUDA-alike and XPU GPUs', its kv_offload_backend 'disk' fails on a "
                   "CUDA stream attribute, and LMCache's connector finds no CPU connector (measured, REFERENCE.md)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kv_spec" not in metafunc.fixturenames:
        return
    from pytest_nvme_ai.measure.kv_cache.spec import specs_for

    case = "serving" if "serving" in metafunc.function.__name__ else "storage"
    specs = [s for s in specs_for(profile_of(metafunc.config)) if s.case == case]
    metafunc.parametrize("kv_spec", [pytest.param(s, id=s.id.removeprefix(f"{case}-")) for s in specs])


@pytest.fixture
def kv_cache(offload_target: Any, nvme_ai: Any) -> Any:
    """Run KV-cache specs in a child with LMCache's disk tier on the target (skips without the KV environment)."""
    from pytest_nvme_ai.measure.kv_cache.runner import KvCacheRunner, kv_missing_reason

    reason = kv_missing_reason()
    if reason:
        pytest.skip(reason)
    return KvCacheRunner(offload_target, nvme_ai)


def check_live(run: Any) -> None:
    """A run that did not finish, a tier that never reaches the drive, or chunk files without O_DIRECT fail."""
    r = run.result
    if not r.ok:
        pytest.fail(f"KV cache {r.spec.get('case')}: outcome {r.outcome}: {r.error}\n"
                    f"--- log tail ({run.log_path}) ---\n{run.log_tail}", pytrace=False)
    if not run.verdict.live:
        pytest.fail(f"the KV tier {run.verdict.text}", pytrace=False)
    if r.spec.get("odirect", True) and not r.tier.odirect_verified:
        pytest.fail(f"LMCache's chunk files were not all opened with O_DIRECT ({r.tier.opens_direct} with, "
                    f"{r.tier.opens_buffered} without; checked by {r.odirect_how})", pytrace=False)


def test_kv_serving(kv_spec: Any, kv_cache: Any, nvme_ai: Any) -> None:
    run = kv_cache.run(kv_spec)
    check_live(run)
    reuse = [q for q in run.result.serving if q.round >= 1]
    assert len(run.result.serving) == kv_spec.users * kv_spec.rounds and reuse
    assert all(q.hit_tokens > 0 for q in reuse), "a returning user's prefix was not found in LMCache"
    mismatched = [(q.user, q.round) for q in reuse if not q.token_match]
    assert not mismatched, f"the first token after a restore differs from a full prefill's for (user, round) {mismatched}"
    m = nvme_ai.metrics()
    assert m["kv_ttft_warm"].value < m["kv_ttft_cold"].value, (
        f"restoring the prefix from the tiers ({m['kv_ttft_warm'].value:.3f} s) was not faster than "
        f"recomputing it ({m['kv_ttft_cold'].value:.3f} s)")


def test_kv_storage(kv_spec: Any, kv_cache: Any, nvme_ai: Any) -> None:
    run = kv_cache.run(kv_spec)
    check_live(run)
    seqs, t = run.result.storage, run.result.tier
    assert len(seqs) == kv_spec.sequences
    assert all(s.hit_tokens == s.tokens for s in seqs), "a stored sequence was not retrieved whole"
    assert all(s.bit_exact for s in seqs), "a retrieved sequence differs from what was stored"
    # Every token stored once, and every retrieved token read from the drive once, at the model's KV size.
    assert t.bytes_written == kv_spec.sequences * kv_spec.seq_tokens * kv_spec.kv.bytes_per_token
    assert t.bytes_read == t.tokens_hit_disk * kv_spec.kv.bytes_per_token
    assert "kv_retrieve_device_p95" in nvme_ai.metrics()


def test_kv_vllm() -> None:
    """The same workload through vLLM with LMCache or vLLM's own disk tier, where a GPU is present (not marked
    `gpu`: the marker's generic skip would hide why vLLM's tiers cannot run on CPU)."""
    import importlib.util

    torch_spec = importlib.util.find_spec("torch")
    cuda = False
    if torch_spec is not None:
        import torch

        cuda = torch.cuda.is_available()
    if not cuda:
        pytest.skip(VLLM_CPU_REASON)
    pytest.skip("the vLLM + LMCache case is not built yet: only the Python-API cases run (issue 25)")
