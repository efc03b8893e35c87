"""The paper's two-layer transformer as a ``laser_jax`` model family named "synthetic".

Role: the model contract of :mod:`laser_jax.models.base` (embed,
attention_stage, mlp, head) for the synthetic task, parameter init, and the
trainable/frozen split. Because the block matrices live in
``params["blocks"]`` under their LASER τ names (``k_proj, v_proj, out_proj,
fc_in, fc_out`` and ``q_proj`` when W_Q is learned), the same
:mod:`laser_jax.laser` code truncates it as a pretrained model.

Paper configuration (official ``ihead_basic_model.py`` with
``script_k1_noise05.sh``): d = 256, one head per layer, W_Q = I, bias-free
W_K, W_V, W_O, scores scaled by 1/sqrt(d), no LayerNorm; frozen N(0, 1) token
and positional embeddings and a frozen untied output layer; each block is
``h = x + Attn(x)``, ``out = h + W2 ReLU(W1 h)`` with a 4d hidden layer.
Weights start as PyTorch's ``nn.Linear`` (uniform in ±1/sqrt(fan_in)).

Options beyond the paper:

- ``ff`` per layer: ``"relu"`` (the paper), ``"linear"`` (the same two
  matrices with no activation, i.e. a factored linear map), or ``"none"``.
  Every layer stores ``fc_in``/``fc_out`` when any layer has an FF (stacked
  leaves need one shape); two frozen per-layer scalars ``ff_gate`` and
  ``ff_relu`` say what each layer does with them.
- ``layer_norm``: pre-LN on the attention and FF inputs (trainable scale and
  bias) and a parameter-free final LN.
- ``residual=False``: no skip connection around attention (the official
  ``no_residual``); the FF keeps its skip.
- ``train_embeddings`` / ``train_output``: make ``params["embed"]`` /
  ``params["final"]`` trainable (frozen by default).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

from laser_jax.errors import ConfigError
from laser_jax.model import Model
from laser_jax.models import base

MODEL_TYPE = "laser_jax_synthetic"  # not a Hugging Face model type: these models load from laser-jax checkpoints only
FF_KINDS = ("relu", "linear", "none")
FROZEN_BLOCK_LEAVES = ("ff_gate", "ff_relu")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    vocab_size: int = 65
    seq_len: int = 256
    d_model: int = 256
    n_heads: int = 1
    mlp_ratio: int = 4
    ff: tuple[str, ...] = ("relu", "relu")  # one entry per layer
    learned_q: bool = False
    layer_norm: bool = False
    residual: bool = True
    train_embeddings: bool = False
    train_output: bool = False
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        bad = [kind for kind in self.ff if kind not in FF_KINDS]
        if bad or not self.ff:
            raise ConfigError(f"ff kinds must be a non-empty tuple of {FF_KINDS}, got {self.ff!r}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")

    @property
    def n_layers(self) -> int:
        return len(self.ff)

    @property
    def d_mlp(self) -> int:
        return self.mlp_ratio * self.d_model

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def has_ff(self) -> bool:
        return any(kind != "none" for kind in self.ff)

    @property
    def taus(self) -> tuple[str, ...]:
        attn = ("q_proj",) if self.learned_q else ()
        return attn + ("k_proj", "v_proj", "out_proj") + (("fc_in", "fc_out") if self.has_ff else ())


# ----------------------------------------------------------------------------- forward


def embed(params, cfg: SyntheticConfig, ids, ctx: base.Context):
    p = params["embed"]
    return p["tok"][ids] + p["pos"][ctx.positions]


def _norm(p, cfg: SyntheticConfig, h, which: str):
    if not cfg.layer_norm:
        return h
    return base.layer_norm(h, p[f"{which}_scale"], p[f"{which}_bias"], cfg.layer_norm_eps)


def _qkv(p, cfg: SyntheticConfig, x, select):
    """Heads of q (at the ``select`` rows), k and v from the block input x."""
    xq = base.gather_positions(x, select)
    q = base.linear(xq, p["q_proj"]) if cfg.learned_q else xq
    k, v = base.linear(x, p["k_proj"]), base.linear(x, p["v_proj"])
    return tuple(base.split_heads(t, cfg.n_heads) for t in (q, k, v))


def attention_stage(p, cfg: SyntheticConfig, h, ctx: base.Context, select=None):
    x = _norm(p, cfg, h, "ln_1")
    q, k, v = _qkv(p, cfg, x, select)
    attn = base.attention(q, k, v, ctx, base.query_index(ctx, select), base.default_scale(cfg.head_dim))
    out = base.linear(base.merge_heads(attn), p["out_proj"])
    residual = base.gather_positions(h, select) + out if cfg.residual else out
    return residual, _norm(p, cfg, residual, "ln_2")


def mlp(p, cfg: SyntheticConfig, x):
    if not cfg.has_ff:
        return jnp.zeros_like(x)
    z = base.linear(x, p["fc_in"])
    z = jnp.where(p["ff_relu"] > 0, jax.nn.relu(z), z)
    return p["ff_gate"].astype(x.dtype) * base.linear(z, p["fc_out"])


def head(params, cfg: SyntheticConfig, h):
    if cfg.layer_norm:
        h = base.layer_norm(h, jnp.ones(h.shape[-1], h.dtype), None, cfg.layer_norm_eps)
    return base.linear(h, params["final"]["out"])


def attention_probs(p, cfg: SyntheticConfig, h, ctx: base.Context, select=None):
    """The block's attention probabilities [B, A, H, T], through :func:`laser_jax.models.base.attention`
    with one-hot values (so masking and scaling are exactly those of the forward pass)."""
    q, k, _ = _qkv(p, cfg, _norm(p, cfg, h, "ln_1"), select)
    batch, length = h.shape[:2]
    onehot = jnp.broadcast_to(jnp.eye(length, dtype=h.dtype)[None, :, None, :], (batch, length, cfg.n_heads, length))
    return base.attention(q, k, onehot, ctx, base.query_index(ctx, select), base.default_scale(cfg.head_dim))


# ----------------------------------------------------------------------------- the family


def to_config_dict(cfg: SyntheticConfig) -> dict:
    """The config as JSON (what a laser-jax checkpoint's manifest stores)."""
    return {"model_type": MODEL_TYPE, **{k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}}


def from_config_dict(raw: dict) -> SyntheticConfig:
    """The inverse of :func:`to_config_dict`; unknown fields are an error."""
    fields = {f.name for f in dataclasses.fields(SyntheticConfig)}
    unknown = sorted(set(raw) - fields - {"model_type"})
    if unknown:
        raise ConfigError(f"synthetic config has unknown field {unknown[0]!r}")
    return SyntheticConfig(**{k: tuple(v) if k == "ff" else v for k, v in raw.items() if k in fields})


def family_name(taus: tuple[str, ...]) -> str:
    """"synthetic" for the paper's matrices; a suffix for each option that changes them."""
    suffix = ("-learned-q" if "q_proj" in taus else "") + ("" if "fc_in" in taus else "-no-ff")
    return "synthetic" + suffix


@functools.lru_cache(maxsize=None)
def _family(taus: tuple[str, ...]) -> base.Family:
    return base.Family(
        name=family_name(taus), hf_model_types=(), taus=taus,
        embed=embed, attention_stage=attention_stage, mlp=mlp, head=head,
        from_hf_config=from_config_dict, to_hf_config=to_config_dict,
    )


def family(cfg: SyntheticConfig) -> base.Family:
    """The synthetic family for this config (one object per τ set, so jit caches are shared).

    It is not a Hugging Face port, so it is not in :data:`laser_jax.models.FAMILIES`;
    :func:`laser_jax.models.get_family` finds it by name through :func:`family_named`,
    so ``laser_jax.checkpoint.save`` / ``laser_jax.load_model`` write and read
    synthetic models like any other family.
    """
    return _family(cfg.taus)


def family_named(name: str):
    """The synthetic family called ``name`` (see :func:`family_name`), or None."""
    for learned_q in (False, True):
        for ff in (("relu",), ("none",)):
            fam = family(SyntheticConfig(ff=ff, learned_q=learned_q))
            if fam.name == name:
                return fam
    return None


def as_model(cfg: SyntheticConfig, params, source: str = "synthetic") -> Model:
    """A :class:`laser_jax.Model` over one seed's parameters."""
    return Model(family=family(cfg), config=cfg, params=params, tokenizer=None, source=source)


def forward(cfg: SyntheticConfig, params, ids, select=None):
    """Logits [B, T, V] (or [B, A, V] at ``select``); pure, for use inside jit/vmap."""
    return base.forward(family(cfg), cfg, params, ids, None, select)


# ----------------------------------------------------------------------------- parameters


def init_params(key, cfg: SyntheticConfig) -> dict:
    """PyTorch-style init: N(0, 1) embeddings; ``nn.Linear`` uniform(±1/sqrt(fan_in)) matrices.

    All matrices come from one uniform draw and both embeddings from one normal
    draw (cut into pieces), which keeps compilation short.
    """
    d, f, layers = cfg.d_model, cfg.d_mlp, cfg.n_layers
    shapes = {"q_proj": (d, d), "k_proj": (d, d), "v_proj": (d, d), "out_proj": (d, d), "fc_in": (d, f), "fc_out": (f, d)}
    uniform_shapes = {tau: (layers, *shapes[tau]) for tau in cfg.taus} | {"out": (d, cfg.vocab_size)}
    normal_shapes = {"tok": (cfg.vocab_size, d), "pos": (cfg.seq_len, d)}
    k_uniform, k_normal = jax.random.split(key)
    uniform = _pieces(jax.random.uniform(k_uniform, (_total(uniform_shapes),), jnp.float32, -1.0, 1.0), uniform_shapes)
    normal = _pieces(jax.random.normal(k_normal, (_total(normal_shapes),), jnp.float32), normal_shapes)
    blocks = {name: w / math.sqrt(w.shape[-2]) for name, w in uniform.items() if name != "out"}
    if cfg.has_ff:
        blocks["ff_gate"] = jnp.asarray([kind != "none" for kind in cfg.ff], jnp.float32)
        blocks["ff_relu"] = jnp.asarray([kind == "relu" for kind in cfg.ff], jnp.float32)
    if cfg.layer_norm:
        for name in ("ln_1", "ln_2"):
            blocks[f"{name}_scale"] = jnp.ones((layers, d), jnp.float32)
            blocks[f"{name}_bias"] = jnp.zeros((layers, d), jnp.float32)
    return {"embed": normal, "blocks": blocks, "final": {"out": uniform["out"] / math.sqrt(d)}}


def _total(shapes: dict) -> int:
    return sum(math.prod(shape) for shape in shapes.values())


def _pieces(flat, shapes: dict) -> dict:
    out, start = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        out[name] = flat[start:start + size].reshape(shape)
        start += size
    return out


def trainable_mask(cfg: SyntheticConfig, params) -> dict:
    """True at the leaves the optimizer updates; the frozen ones are masked out of it."""
    return {
        "embed": jax.tree.map(lambda _: cfg.train_embeddings, params["embed"]),
        "blocks": {name: name not in FROZEN_BLOCK_LEAVES for name in params["blocks"]},
        "final": jax.tree.map(lambda _: cfg.train_output, params["final"]),
    }
