"""ZeRO-Inference DeepSpeed config builder and model configs (no DeepSpeed import needed)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from packaging.version import Version

from pytest_nvme_ai.measure.deepspeed.config_blocks import (
    AIO_KEYS,
    BUFFER_ALIGN_ELEMENTS,
    AioSettingError,
    buffer_elements,
    normalize_aio,
    parse_aio_json,
)
from pytest_nvme_ai.measure.zero_inference.ds_config import build_ds_config
from pytest_nvme_ai.measure.deepspeed.models import UnknownModel, resolve_model, shipped_models
from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec

OLD, NEW = Version("0.16.3"), Version("0.19.8")
NVME = "/tmp/nvme-ai-test/never-written"


def nvme_config(version: Version, **spec_kw: object) -> dict:
    spec = InferenceSpec(model="opt-tiny", offload="nvme", **spec_kw)  # type: ignore[arg-type]
    return build_ds_config(spec, resolve_model("opt-tiny"), accelerator="cpu", nvme_path=NVME, version=version)


# ---- aio block: key names follow the DeepSpeed version -----------------------------------------

def test_aio_thread_key_before_rename() -> None:
    aio = nvme_config(OLD)["aio"]
    assert "thread_count" in aio and "intra_op_parallelism" not in aio


def test_aio_thread_key_after_rename() -> None:
    aio = nvme_config(NEW)["aio"]
    assert "intra_op_parallelism" in aio and "thread_count" not in aio


def test_spec_aio_given_with_old_key_is_rewritten_for_new_deepspeed() -> None:
    # thread_count is silently ignored since 0.16.4: a tuned value would otherwise be a no-op.
    aio = nvme_config(NEW, aio={"block_size": 8 << 20, "queue_depth": 32, "thread_count": 8})["aio"]
    assert aio["intra_op_parallelism"] == 8 and "thread_count" not in aio
    assert aio["block_size"] == 8 << 20 and aio["queue_depth"] == 32


def test_normalize_aio_fills_deepspeed_defaults() -> None:
    aio = normalize_aio({"queue_depth": 64}, NEW)
    assert aio == {"block_size": 1 << 20, "queue_depth": 64, "intra_op_parallelism": 1,
                   "single_submit": False, "overlap_events": True}


def test_parse_aio_json_unknown_key_names_it_and_the_accepted_ones() -> None:
    with pytest.raises(AioSettingError) as exc:
        parse_aio_json('{"block_size": 1048576, "num_threads": 8}', NEW)
    msg = str(exc.value)
    assert "'num_threads'" in msg
    for key in AIO_KEYS:
        assert key in msg


@pytest.mark.parametrize("text, needle", [
    ("{not json", "valid JSON"),
    ("[1, 2]", "object"),
    ('{"thread_count": 4, "intra_op_parallelism": 8}', "same knob"),
    ('{"queue_depth": 0}', "queue_depth"),
    ('{"block_size": 1000}', "4096"),
    ('{"single_submit": "yes"}', "single_submit"),
])
def test_parse_aio_json_refuses_bad_values(text: str, needle: str) -> None:
    with pytest.raises(AioSettingError, match=needle):
        parse_aio_json(text, NEW)


def test_aio_only_for_nvme_offload() -> None:
    info = resolve_model("opt-tiny")
    for offload in ("none", "cpu"):
        cfg = build_ds_config(InferenceSpec(offload=offload), info, accelerator="cpu")  # type: ignore[arg-type]
        assert "aio" not in cfg


# ---- stage 3 settings from the hidden size (run_model.py) --------------------------------------

@pytest.mark.parametrize("model", ["opt-tiny", "opt-13b", "opt-66b"])
def test_stage3_buckets_from_hidden_size(model: str) -> None:
    info = resolve_model(model)
    h = info.hidden_size
    zero = build_ds_config(InferenceSpec(model=model, offload="cpu"), info, accelerator="cuda")["zero_optimization"]
    assert zero["stage"] == 3
    assert zero["stage3_prefetch_bucket_size"] == 2 * h * h
    assert zero["stage3_param_persistence_threshold"] == h
    assert zero["stage3_max_live_parameters"] == 2 * h * h


# ---- offload buffers count elements and hold the largest parameter ------------------------------

@pytest.mark.parametrize("model", list(shipped_models()))
def test_buffer_holds_largest_parameter(model: str) -> None:
    info = resolve_model(model)
    cfg = build_ds_config(InferenceSpec(model=model, offload="nvme"), info, accelerator="cuda", nvme_path=NVME)
    off = cfg["zero_optimization"]["offload_param"]
    # the tied embedding (vocab x embed dim) is OPT's largest tensor; the buffer counts elements
    assert off["buffer_size"] >= info.vocab_size * info.embed_dim
    assert off["buffer_size"] >= info.largest_param_numel
    assert off["buffer_size"] % BUFFER_ALIGN_ELEMENTS == 0
    assert off["buffer_size"] - info.largest_param_numel < BUFFER_ALIGN_ELEMENTS  # padded, not inflated
    assert off["buffer_count"] == 5 and off["device"] == "nvme" and off["nvme_path"] == NVME


def test_buffer_size_explicit_too_small_is_refused_in_elements() -> None:
    with pytest.raises(ValueError, match="elements, not bytes"):
        buffer_elements(50272 * 256, requested=1 << 20)
    assert buffer_elements(50272 * 256, requested=50272 * 256) == 50272 * 256


def test_nvme_offload_needs_a_path() -> None:
    with pytest.raises(ValueError, match="nvme_path"):
        build_ds_config(InferenceSpec(offload="nvme"), resolve_model("opt-tiny"), accelerator="cpu")


# ---- dtype, quantization, offload blocks ---------------------------------------------------------

def test_dtype_bf16_on_cpu_fp16_on_cuda() -> None:
    info = resolve_model("opt-tiny")
    cpu = build_ds_config(InferenceSpec(offload="cpu"), info, accelerator="cpu")
    cuda = build_ds_config(InferenceSpec(offload="cpu"), info, accelerator="cuda")
    assert cpu["bf16"]["enabled"] and not cpu["fp16"]["enabled"]
    assert cuda["fp16"]["enabled"] and not cuda["bf16"]["enabled"]


def test_four_bit_quantized_initialization() -> None:
    cfg = nvme_config(NEW, quant_bits=4)
    assert cfg["weight_quantization"] == {"quantized_initialization": {
        "num_bits": 4, "group_size": 64, "group_dim": 1, "symmetric": False}}
    assert "weight_quantization" not in nvme_config(NEW)


def test_offload_cpu_and_none_blocks() -> None:
    info = resolve_model("opt-tiny")
    cpu = build_ds_config(InferenceSpec(offload="cpu", pin_memory=True), info, accelerator="cuda")
    assert cpu["zero_optimization"]["offload_param"] == {"device": "cpu", "pin_memory": True}
    none = build_ds_config(InferenceSpec(offload="none"), info, accelerator="cuda")
    assert "offload_param" not in none["zero_optimization"]
    on_cpu = build_ds_config(InferenceSpec(offload="cpu", pin_memory=True), info, accelerator="cpu")
    assert on_cpu["zero_optimization"]["offload_param"]["pin_memory"] is False  # nothing to pin for


def test_micro_batch_is_the_batch_size() -> None:
    cfg = nvme_config(NEW, batch_size=7)
    assert cfg["train_micro_batch_size_per_gpu"] == 7


# ---- models ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, hidden, layers, heads, ffn", [
    ("opt-125m", 768, 12, 12, 3072), ("opt-350m", 1024, 24, 16, 4096), ("opt-1.3b", 2048, 24, 32, 8192),
    ("opt-6.7b", 4096, 32, 32, 16384), ("opt-13b", 5120, 40, 40, 20480), ("opt-30b", 7168, 48, 56, 28672),
    ("opt-66b", 9216, 64, 72, 36864), ("opt-tiny", 256, 4, 4, 1024),
])
def test_shipped_opt_configs(name: str, hidden: int, layers: int, heads: int, ffn: int) -> None:
    c = resolve_model(name).hf_config
    assert (c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"], c["ffn_dim"]) == (hidden, layers, heads, ffn)
    assert c["vocab_size"] == 50272 and c["max_position_embeddings"] == 2048 and c["model_type"] == "opt"


def test_param_counts_match_published_sizes() -> None:
    # exact for the released checkpoints: 125,239,296 (opt-125m); the rest by their names
    assert resolve_model("opt-125m").param_count == 125_239_296
    for name, billions in (("opt-1.3b", 1.3), ("opt-13b", 13), ("opt-30b", 30), ("opt-66b", 66)):
        assert abs(resolve_model(name).param_count / 1e9 - billions) / billions < 0.03


def test_param_count_and_largest_numel_match_transformers() -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from pytest_nvme_ai.measure.deepspeed.models import hf_config_object

    for name in shipped_models():
        info = resolve_model(name)
        with torch.device("meta"):  # shapes only: no memory, no time
            model = transformers.OPTForCausalLM(hf_config_object(info))
        params = list(model.parameters())
        assert sum(p.numel() for p in params) == info.param_count, name
        assert max(p.numel() for p in params) == info.largest_param_numel, name


def test_facebook_prefix_is_accepted() -> None:
    assert resolve_model("facebook/opt-13b").name == "opt-13b"


def test_unknown_model_lists_shipped_ones() -> None:
    with pytest.raises(UnknownModel) as exc:
        resolve_model("gpt-5-huge")
    msg = str(exc.value)
    assert "gpt-5-huge" in msg and "nothing is downloaded" in msg
    for name in shipped_models():
        assert name in msg


def test_local_directory_config_only_gets_dummy_weights(tmp_path: Path) -> None:
    cfg = dict(resolve_model("opt-tiny").hf_config, hidden_size=128)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    info = resolve_model(str(tmp_path))
    assert info.weights_dir is None and info.hidden_size == 128
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert resolve_model(str(tmp_path)).weights_dir == tmp_path


def test_local_directory_without_config_is_unknown(tmp_path: Path) -> None:
    with pytest.raises(UnknownModel, match="no config.json"):
        resolve_model(str(tmp_path))


def test_fast_random_init_keeps_torchs_bounds_and_scale() -> None:
    """The dummy weights' tile fill: each layer at torch's own init bounds, finite, not constant, and
    torch's functions are back afterwards."""
    import math

    import torch
    from torch import nn

    from pytest_nvme_ai.measure.deepspeed.models import FILL_TILE, fast_random_init

    original = nn.init.kaiming_uniform_
    torch.manual_seed(0)
    with fast_random_init():
        lin = nn.Linear(1024, 3 * 1024, dtype=torch.bfloat16)     # 3.1 M elements: three whole tiles and a rest
        emb = nn.Embedding(1000, 768, dtype=torch.bfloat16)
    assert nn.init.kaiming_uniform_ is original
    w, bound = lin.weight.detach().float(), 1 / math.sqrt(1024)              # kaiming_uniform(a=√5) = U(±1/√fan_in)
    assert w.numel() > 3 * FILL_TILE and torch.isfinite(w).all()
    assert w.abs().max() <= bound * 1.01 and w.std() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    b = lin.bias.detach().float()
    assert b.abs().max() <= bound * 1.01 and b.std() > 0
    e = emb.weight.detach().float()
    assert e.mean().abs() < 0.05 and e.std() == pytest.approx(1.0, rel=0.05)   # normal(0, 1), as torch's default
    flat = lin.weight.detach().view(-1)
    assert torch.equal(flat[:1000], flat[FILL_TILE:FILL_TILE + 1000])            # the tile, not torch's own draw


def test_swap_files_are_synced_and_timed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every listed swap file is fsynced before the first loop (the build's writes are on the drive)."""
    import os

    from pytest_nvme_ai.measure.zero_inference import remote as child

    rank = tmp_path / "zero_stage_3" / "bfloat16params" / "rank0"
    rank.mkdir(parents=True)
    files = []
    for i in (7, 8):
        (rank / f"{i}_param.tensor.swp").write_bytes(b"\0" * 4096)
        files.append({"path": f"zero_stage_3/bfloat16params/rank0/{i}_param.tensor.swp", "bytes": 4096,
                      "allocated": 4096})
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(child.os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")),
                                                       real_fsync(fd)))
    cfg = {"zero_optimization": {"offload_param": {"nvme_path": str(tmp_path)}}}
    assert child.sync_swap_files(cfg, files) >= 0.0
    assert sorted(synced) == sorted(str(tmp_path / f["path"]) for f in files)
    synced.clear()
    child.sync_swap_files({}, files)                                # no NVMe offload: nothing to sync
    assert not synced
    with pytest.raises(FileNotFoundError):                          # a listed file that vanished is an error
        child.sync_swap_files(cfg, [{**files[0], "path": "zero_stage_3/missing.swp"}])
