"""Models: the shipped OPT configurations, local checkpoints, and building them under ZeRO-3.

Shipped names (configs/*.json, real Hugging Face OPTConfig values) always get
random ("dummy") weights built here, with no hub access: a benchmark of
offloaded inference measures data movement, not answers, and the seed study
ran run_model.py with `--dummy` too. A local directory with a `config.json`
and weight files loads its real weights (`from_pretrained(local_files_only=True)`);
a directory with only a `config.json` gets dummy weights for that architecture.

Everything but `build_model` is plain JSON arithmetic (no torch), so the
runner can size DeepSpeed buffers in the pytest process.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Mapping

from pytest_nvme_ai.measure.deepspeed.errors import SpecError

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model*.safetensors.index.json")


class UnknownModel(SpecError):
    pass


@dataclass(frozen=True)
class ModelInfo:
    name: str                       # shipped name or the local directory
    hf_config: Mapping[str, Any] = field(hash=False)  # the config.json contents (keys starting "_" removed)
    weights_dir: Path | None = None  # a local checkpoint with real weights; None = dummy weights

    @property
    def model_type(self) -> str:
        return str(self.hf_config.get("model_type", "opt"))

    @property
    def hidden_size(self) -> int:
        c = self.hf_config
        return int(c.get("hidden_size") or c.get("n_embd") or c["d_model"])

    @property
    def vocab_size(self) -> int:
        return int(self.hf_config["vocab_size"])

    @property
    def num_layers(self) -> int:
        c = self.hf_config
        return int(c.get("num_hidden_layers") or c.get("n_layer") or c["num_layers"])

    @property
    def ffn_dim(self) -> int:
        c = self.hf_config
        return int(c.get("ffn_dim") or c.get("intermediate_size") or 4 * self.hidden_size)

    @property
    def embed_dim(self) -> int:
        """OPT-350m embeds at 512 and projects to 1024; everything else embeds at hidden size."""
        return int(self.hf_config.get("word_embed_proj_dim") or self.hidden_size)

    @property
    def max_position(self) -> int:
        c = self.hf_config
        return int(c.get("max_position_embeddings") or c.get("n_positions") or 2048)

    @property
    def largest_param_numel(self) -> int:
        """Elements of the largest single parameter: the swap buffer must hold it whole.

        For OPT that is the (tied) token embedding, vocab x embed_dim; the MLP matrices
        (ffn x h) and a fused QKV (3h x h, other architectures) are bounded by 4h^2.
        """
        h = self.hidden_size
        return max(self.vocab_size * self.embed_dim, self.ffn_dim * h, 4 * h * h)

    @property
    def param_count(self) -> int:
        """Parameters of an OPT decoder (weights, biases, layer norms, embeddings; lm_head is tied)."""
        h, f, w = self.hidden_size, self.ffn_dim, self.embed_dim
        per_layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 4 * h
        embeddings = self.vocab_size * w + (self.max_position + 2) * h
        projections = 2 * w * h if w != h else 0
        # OPT-350m (post-layer-norm) has no final layer norm.
        final_norm = 2 * h if self.hf_config.get("do_layer_norm_before", True) else 0
        return self.num_layers * per_layer + embeddings + projections + final_norm


@lru_cache(maxsize=None)
def shipped_models() -> dict[str, Mapping[str, Any]]:
    """Shipped configs by name (configs/<name>.json)."""
    out: dict[str, Mapping[str, Any]] = {}
    for entry in resources.files(__package__).joinpath("configs").iterdir():
        if entry.name.endswith(".json"):
            out[entry.name.removesuffix(".json")] = json.loads(entry.read_text(encoding="utf-8"))
    return dict(sorted(out.items(), key=lambda kv: _size_order(kv[1])))


def _size_order(cfg: Mapping[str, Any]) -> tuple[int, int]:
    return int(cfg.get("hidden_size", 0)), int(cfg.get("num_hidden_layers", 0))


def _public(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def resolve_model(name_or_path: str) -> ModelInfo:
    """A shipped name (also accepted as 'facebook/<name>') or a local directory; UnknownModel otherwise."""
    shipped = shipped_models()
    short = name_or_path.removeprefix("facebook/")
    if short in shipped:
        return ModelInfo(name=short, hf_config=_public(shipped[short]))
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        cfg = read_local_config(path / "config.json")
        has_weights = any(any(path.glob(p)) for p in WEIGHT_PATTERNS)
        return ModelInfo(name=str(path), hf_config=_public(cfg), weights_dir=path if has_weights else None)
    hint = " (a directory was given but it has no config.json)" if path.is_dir() else ""
    raise UnknownModel(
        f"unknown model {name_or_path!r}{hint}: use one of the shipped configs ({', '.join(shipped)}) "
        "or a local directory holding a Hugging Face config.json (and weights); nothing is downloaded"
    )


# Sizes the runner computes with (swap buffers, parameter count): each must be a whole number.
_INT_FIELDS = ("hidden_size", "n_embd", "d_model", "vocab_size", "num_hidden_layers", "n_layer", "num_layers",
               "ffn_dim", "intermediate_size", "word_embed_proj_dim", "max_position_embeddings", "n_positions",
               "num_attention_heads")
_REQUIRED = (("hidden_size", "n_embd", "d_model"), ("vocab_size",), ("num_hidden_layers", "n_layer", "num_layers"))


def read_local_config(path: Path) -> dict[str, Any]:
    """A local config.json, checked: a bad field is a message naming the file and field, not an int() traceback."""
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{path} is not valid JSON ({exc}): fix the model's config.json") from None
    if not isinstance(cfg, dict):
        raise SpecError(f"{path} is not a JSON object: a Hugging Face config.json maps field names to values")
    for key in _INT_FIELDS:
        v = cfg.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise SpecError(f"{path}: field {key!r} is {v!r}, not a positive whole number: fix the model's config.json")
    for names in _REQUIRED:
        if not any(cfg.get(n) for n in names):
            raise SpecError(f"{path}: no {' / '.join(repr(n) for n in names)} field: the runner needs it to size "
                            "DeepSpeed's buffers; fix the model's config.json")
    return cfg


# ---- building (child process only: heavy imports inside) ------------------------------------------

@contextlib.contextmanager
def _without_hf_weight_init() -> Iterator[None]:
    """Skip transformers' `_init_weights` pass while building under zero.Init.

    Under zero.Init each module's parameters are partitioned (emptied, swapped out)
    as soon as its __init__ ends, so transformers' later init pass indexes empty
    tensors and fails; its ZeRO-3 variant would gather and re-swap the whole model
    (for OPT-66B on NVMe: another 130 GB written). torch's per-layer defaults, run
    before partitioning, already give finite random weights, all a dummy run needs.
    """
    from transformers.modeling_utils import PreTrainedModel

    original = PreTrainedModel._initialize_weights

    def mark_only(self: Any, module: Any, *args: Any, **kwargs: Any) -> None:
        module._is_hf_initialized = True

    PreTrainedModel._initialize_weights = mark_only  # type: ignore[method-assign]
    try:
        yield
    finally:
        PreTrainedModel._initialize_weights = original  # type: ignore[method-assign]


DUMMY_FILLS = ("tile", "torch")  # how dummy weights are drawn: fast_random_init (default), or torch's own init
FILL_TILE = 1_000_003  # elements of the random tile fast_random_init repeats; a prime, so no row lines up with it


@contextlib.contextmanager
def fast_random_init() -> Iterator[None]:
    """torch's default layer inits (kaiming-uniform weights, uniform biases, normal embeddings), drawn once
    per dtype as a tile of FILL_TILE random values and copied across each tensor, at their own bounds.

    A dummy run measures data movement and compute, and neither depends on the weights' values (dense
    kernels, no sparsity), so weights need only be finite and of the right scale. Drawing every element
    is what made the build slow: `uniform_` on bf16 weights took 1.2 s of opt-125m's 3 s build on the
    build VM, ~9 ns per parameter (10 min for OPT-66B), where a copy costs a fraction of that
    (benchmarks/zi_suite_share.py build measures both). Seeded from torch's seed, which the worker
    sets from the spec.
    """
    import math

    import torch
    from torch.nn import init

    tiles: dict[tuple[str, Any, Any], Any] = {}

    def tile(kind: str, like: Any) -> Any:
        key = (kind, like.dtype, like.device)
        if key not in tiles:
            g = torch.Generator().manual_seed(torch.initial_seed() + (kind == "normal"))
            t = torch.randn(FILL_TILE, generator=g) if kind == "normal" else torch.rand(FILL_TILE, generator=g)
            tiles[key] = t.to(like.dtype).to(like.device)
        return tiles[key]

    def fill(tensor: Any, kind: str, scale: float, shift: float) -> Any:
        with torch.no_grad():
            flat = tensor.view(-1)
            values = tile(kind, tensor) * scale + shift
            whole = flat.numel() // FILL_TILE
            if whole:
                flat[:whole * FILL_TILE].view(whole, FILL_TILE).copy_(values.expand(whole, FILL_TILE))
            rest = flat.numel() - whole * FILL_TILE
            flat[whole * FILL_TILE:].copy_(values[:rest])
        return tensor

    def uniform_(tensor: Any, a: float = 0.0, b: float = 1.0, generator: Any = None) -> Any:
        return fill(tensor, "uniform", b - a, a)

    def normal_(tensor: Any, mean: float = 0.0, std: float = 1.0, generator: Any = None) -> Any:
        return fill(tensor, "normal", std, mean)

    def kaiming_uniform_(tensor: Any, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                         generator: Any = None) -> Any:
        fan = init._calculate_correct_fan(tensor, mode)  # type: ignore[arg-type]
        bound = math.sqrt(3.0) * init.calculate_gain(nonlinearity, a) / math.sqrt(fan)  # type: ignore[arg-type]
        return fill(tensor, "uniform", 2 * bound, -bound)

    originals = {name: getattr(init, name) for name in ("uniform_", "normal_", "kaiming_uniform_")}
    init.uniform_, init.normal_, init.kaiming_uniform_ = uniform_, normal_, kaiming_uniform_
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(init, name, fn)


def hf_config_object(info: ModelInfo) -> Any:
    from transformers import AutoConfig

    cfg = dict(info.hf_config)
    model_type = cfg.pop("model_type", "opt")
    return AutoConfig.for_model(model_type, **cfg)


def build_model(info: ModelInfo, ds_config: Mapping[str, Any], torch_dtype: Any,
                fill: str = "tile") -> tuple[Any, Any]:
    """The model, partitioned as ZeRO-3 says (offloaded params never all in host memory at once).

    Returns (model, keepalive): with real weights transformers needs its DeepSpeed
    config object alive while loading (it holds only a weak reference).
    """
    import deepspeed
    from transformers import AutoModelForCausalLM

    if info.weights_dir is not None:
        from transformers.integrations import HfDeepSpeedConfig

        keepalive = HfDeepSpeedConfig(dict(ds_config))  # makes from_pretrained load straight into zero.Init
        model = AutoModelForCausalLM.from_pretrained(str(info.weights_dir), local_files_only=True, dtype=torch_dtype)
        return model.eval(), keepalive
    if fill not in DUMMY_FILLS:
        raise ValueError(f"dummy_fill {fill!r}: use one of {', '.join(DUMMY_FILLS)}")
    config = hf_config_object(info)
    # fill "torch" draws every element with torch's own init, as builds did before the tile fill: for
    # benchmarks/zi_suite_share.py build, which times both side by side.
    init = contextlib.nullcontext() if fill == "torch" else fast_random_init()
    with _without_hf_weight_init(), init, deepspeed.zero.Init(config_dict_or_path=dict(ds_config)):
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    return model.eval(), None


# ---- what DeepSpeed swaps at a given aio block (plain arithmetic) ---------------------------------

MIN_AIO_BYTES = 1 << 20  # DeepSpeed's swap_tensor.utils.MIN_AIO_BYTES


def weight_matrix_numels(info: ModelInfo) -> list[int]:
    """Elements of each distinct weight-matrix shape of an OPT decoder (biases and norms are far smaller)."""
    h, f, w = info.hidden_size, info.ffn_dim, info.embed_dim
    shapes = [h * h, f * h, info.vocab_size * w, (info.max_position + 2) * h]
    if w != h:
        shapes.append(w * h)
    return shapes


def equal_offload_max_block(info: ModelInfo, bytes_per_element: float, candidates: "list[int] | tuple[int, ...]") -> int:
    """The largest aio block size among `candidates` that swaps the same tensors as DeepSpeed's default.

    DeepSpeed swaps a tensor only if it has at least max(1 MiB, block_size) bytes: a block above the
    smallest swapped matrix keeps that matrix in memory, so a tuner comparing read bandwidth alone
    would "win" by offloading less. Quantized sizes are estimated as numel × bits / 8 (scales ignored).
    """
    swapped = [n * bytes_per_element for n in weight_matrix_numels(info) if n * bytes_per_element >= MIN_AIO_BYTES]
    limit = min(swapped) if swapped else MIN_AIO_BYTES
    fitting = [b for b in candidates if b <= max(limit, MIN_AIO_BYTES)]
    return max(fitting) if fitting else min(candidates)
