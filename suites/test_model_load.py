"""Cold model load: a model's weights read from the drive the way a serving node starting up reads them.

A model (OPT, random float16 weights built locally, no hub) is written once per session as one
safetensors file into the target's private workdir, with its config.json and a per-tensor CRC-32
manifest. Each test is one loader on one model; each of its rounds (`--nvme-ai-repeat`, default from the
profile) evicts the model from the page cache (fsync + posix_fadvise DONTNEED, then mincore must count
zero resident pages, or the load is refused), loads it in a fresh child process (after a warm-up load of
a micro model of the same architecture: lazy imports and thread start-ups are not the drive's), checks
every tensor against the manifest, and reads the same file with fio (direct, sequential, DeepSpeed aio's default block
size and queue depth), alternating which goes first. Loaders:

* `safetensors`      – `safetensors.torch.load_file` (mmap, copied into tensors)
* `from_pretrained`  – transformers `AutoModelForCausalLM.from_pretrained(local_files_only=True)`, then
                       greedy generation of a few tokens: `ttft_cold` is load start to first token
* `fastsafetensors`  – `fastsafe_open(nogds=True)` (no GPUDirect Storage); skipped when not installed
* `deepspeed_aio`    – DeepSpeed's aio handle, `sync_pread` into one 4 KiB-aligned, padded, page-locked
                       buffer, tensors placed by parsing the safetensors header

Metrics: `load_bw` (B/s), `load_vs_fio` (ratio, one per round), `ttft_cold` (s, from_pretrained),
`target_read_bytes` (what the child had storage read over the load, /proc/self/io). Models by profile:
quick OPT-350m (662 MB), standard OPT-1.3b and 6.7b, full OPT-13b/30b/66b; one that does not fit the
target or 60% of available memory skips with the figures.
"""
from __future__ import annotations

from typing import Any

import pytest

from pytest_nvme_ai.measure.fio.runner import DirectIOUnsupported
from pytest_nvme_ai.measure.model_load.models import models_for
from pytest_nvme_ai.measure.model_load.runner import ModelLoadRunner, NotHere, loader_missing_reason
from pytest_nvme_ai.measure.model_load.spec import LOADERS
from pytest_nvme_ai.run.session import profile_of


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"model", "loader"} <= set(metafunc.fixturenames):
        models = models_for(profile_of(metafunc.config))
        metafunc.parametrize("model,loader", [(m, ld) for m in models for ld in LOADERS],
                             ids=[f"{m}-{ld}" for m in models for ld in LOADERS])


@pytest.fixture
def model_load(offload_target: Any, nvme_ai: Any, loader: str) -> ModelLoadRunner:
    """Cold loads of a model on the target with `loader`; skips with the reason when the loader can't run here."""
    from pytest_nvme_ai.fixtures import terminal_progress

    reason = loader_missing_reason(loader, terminal_progress(nvme_ai.config))
    if reason:
        pytest.skip(reason)
    return ModelLoadRunner(offload_target, nvme_ai)


def test_model_load(model_load: ModelLoadRunner, offload_target: Any, nvme_ai: Any, model: str, loader: str) -> None:
    try:
        files = model_load.model_files(model)
    except (NotHere, DirectIOUnsupported) as exc:
        pytest.skip(str(exc))
    assert offload_target.workdir.resolve() in files.weights.resolve().parents  # writes only inside the target

    run = model_load.measure(files, loader, rounds=nvme_ai.repeat)

    assert len(run.loads) == nvme_ai.repeat
    for i, ld in enumerate(run.loads, 1):
        assert ld.tensors_verified == files.tensors, f"round {i}: {ld.tensors_verified} of {files.tensors} checked"
        assert ld.file_bytes == files.file_bytes and ld.load_seconds > 0
    assert nvme_ai.metrics()["load_bw"].n == nvme_ai.repeat
    if loader == "from_pretrained":
        assert all(ld.new_tokens and ld.ttft_seconds and ld.ttft_seconds > ld.load_seconds for ld in run.loads)
        assert nvme_ai.metrics()["ttft_cold"].n == nvme_ai.repeat
    if run.facts.get("fio_missing") is None:
        for f in run.fio:
            assert f is not None and f.error == 0 and f.io_bytes > 0 and f.bw_bytes > 0
        assert nvme_ai.metrics()["load_vs_fio"].n == nvme_ai.repeat
