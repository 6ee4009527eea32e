"""The models this workload writes and loads: OPT shapes by name, sized by the profile.

The configurations are the toolkit's shipped ones (measure/deepspeed/configs/*.json, the same files
ZeRO-Inference builds its models from), plus `opt-micro`, a test-sized model of the same architecture
that only this workload needs (a real run of every loader in seconds, and the untimed warm-up loads).

Everything but `tensor_layout` is plain data (no torch), so the parent can size files and memory.
"""
from __future__ import annotations

from typing import Any, Mapping

from pytest_nvme_ai.core.profiles import Profile
from pytest_nvme_ai.measure.deepspeed.models import shipped_models

# opt-micro: opt-tiny's fields at toy sizes (well under 1 MB of weights).
_MICRO_SIZES: dict[str, int] = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "ffn_dim": 128,
                                "word_embed_proj_dim": 64, "vocab_size": 512, "max_position_embeddings": 128}


def _configs() -> dict[str, dict[str, Any]]:
    shipped = {name: {k: v for k, v in cfg.items() if not k.startswith("_")} for name, cfg in shipped_models().items()}
    return {"opt-micro": {**shipped["opt-tiny"], **_MICRO_SIZES}, **shipped}


OPT_CONFIGS: dict[str, dict[str, Any]] = _configs()

def micro_variant(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """`cfg`'s architecture at opt-micro's sizes: a model of the same kind, under 1 MB, for warm-up loads."""
    sizes = ("hidden_size", "num_hidden_layers", "num_attention_heads", "ffn_dim", "word_embed_proj_dim",
             "vocab_size", "max_position_embeddings")
    return {**cfg, **{k: OPT_CONFIGS["opt-micro"][k] for k in sizes}}


def models_for(profile: Profile) -> tuple[str, ...]:
    return tuple(profile.model_load_models)


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
