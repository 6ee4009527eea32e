"""The models this workload writes and loads: OPT shapes by name, sized by the profile.

Interim: the OPT configurations live in measure/zero_inference/models.py (configs/*.json), which a
sibling workload must not import, and the toolkit (measure/deepspeed/) is taking them over. Until it
has, the few fields that fix an OPT's tensor shapes are repeated here (real Hugging Face OPTConfig
values); once merged this module should take its configs from the toolkit and keep only the profile's
choice of models.

Everything but `tensor_layout` is plain data (no torch), so the parent can size files and memory.
"""
from __future__ import annotations

from typing import Any, Mapping

from pytest_nvme_ai.core.profiles import Profile

_OPT_COMMON: dict[str, Any] = {
    "model_type": "opt", "architectures": ["OPTForCausalLM"], "activation_function": "relu",
    "attention_dropout": 0.0, "dropout": 0.1, "layerdrop": 0.0, "init_std": 0.02, "enable_bias": True,
    "layer_norm_elementwise_affine": True, "do_layer_norm_before": True, "bos_token_id": 2, "eos_token_id": 2,
    "pad_token_id": 1, "use_cache": True, "vocab_size": 50272, "max_position_embeddings": 2048,
}


def _opt(hidden: int, layers: int, heads: int, ffn: int, embed: int | None = None, **over: Any) -> dict[str, Any]:
    return {**_OPT_COMMON, "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
            "ffn_dim": ffn, "word_embed_proj_dim": embed or hidden, **over}


OPT_CONFIGS: dict[str, dict[str, Any]] = {
    # a test-sized model (well under 1 MB): a real run of every loader in seconds
    "opt-micro": _opt(64, 2, 2, 128, vocab_size=512, max_position_embeddings=128),
    "opt-tiny": _opt(256, 4, 4, 1024),
    "opt-125m": _opt(768, 12, 12, 3072),
    "opt-350m": _opt(1024, 24, 16, 4096, 512, do_layer_norm_before=False),
    "opt-1.3b": _opt(2048, 24, 32, 8192),
    "opt-6.7b": _opt(4096, 32, 32, 16384),
    "opt-13b": _opt(5120, 40, 40, 20480),
    "opt-30b": _opt(7168, 48, 56, 28672),
    "opt-66b": _opt(9216, 64, 72, 36864),
}

# Interim per-profile choice (profiles.py is the home of every per-profile knob: the lead moves this into
# `Profile.model_load_models`, which `models_for` already prefers when it exists).
_PROFILE_MODELS: dict[str, tuple[str, ...]] = {
    "quick": ("opt-350m",),                       # one 662 MB file: a few hundred MB, as CI affords
    "standard": ("opt-1.3b", "opt-6.7b"),         # 2.6 and 13 GB
    "full": ("opt-13b", "opt-30b", "opt-66b"),    # the seed study's models: 26, 60 and 132 GB
}


def micro_variant(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """`cfg`'s architecture at opt-micro's sizes: a model of the same kind, under 1 MB, for warm-up loads."""
    sizes = ("hidden_size", "num_hidden_layers", "num_attention_heads", "ffn_dim", "word_embed_proj_dim",
             "vocab_size", "max_position_embeddings")
    return {**cfg, **{k: OPT_CONFIGS["opt-micro"][k] for k in sizes}}


def models_for(profile: Profile) -> tuple[str, ...]:
    chosen = getattr(profile, "model_load_models", None)
    if chosen:
        return tuple(chosen)
    return _PROFILE_MODELS.get(profile.name, _PROFILE_MODELS["quick"])


def opt_config(name: str) -> dict[str, Any]:
    try:
        return dict(OPT_CONFIGS[name])
    except KeyError:
        raise ValueError(f"unknown model {name!r}: one of {', '.join(OPT_CONFIGS)}") from None


def param_count(cfg: Mapping[str, Any]) -> int:
    """Parameters an OPT decoder stores (lm_head is tied to the token embedding, so not stored twice)."""
    h, layers, ffn = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"]), int(cfg["ffn_dim"])
    embed, vocab, pos = int(cfg["word_embed_proj_dim"]), int(cfg["vocab_size"]), int(cfg["max_position_embeddings"])
    per_layer = 4 * (h * h + h) + (h * ffn + ffn) + (ffn * h + h) + 2 * 2 * h
    total = vocab * embed + (pos + 2) * h + layers * per_layer
    if embed != h:
        total += 2 * h * embed  # project_in / project_out (no bias)
    if cfg.get("do_layer_norm_before", True):
        total += 2 * h          # final layer norm
    return total


def weight_bytes(cfg: Mapping[str, Any]) -> int:
    """Bytes of the float16 weights file's data (header excluded): what every loader reads."""
    return 2 * param_count(cfg)


def tensor_layout(cfg: Mapping[str, Any]) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, "F16", shape) of every tensor transformers saves for this config, in the model's order.

    The model is built on the meta device (no memory, no init), so this costs the same for OPT-66b as for
    a toy. named_parameters() drops tied duplicates (lm_head.weight), as save_pretrained does."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(cfg)
    model_type = fields.pop("model_type", "opt")
    config = AutoConfig.for_model(model_type, **fields)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float16)
    # OPT has no persistent buffers: its state dict is its parameters plus the tied lm_head.weight.
    return [(name, "F16", tuple(p.shape)) for name, p in model.named_parameters()]
