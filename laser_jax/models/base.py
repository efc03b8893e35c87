"""The model contract every family implements, and the layers they share.

A model is plain data: a frozen config dataclass, a parameter pytree, and a
:class:`Family` (a frozen bundle of pure functions). Forward passes are pure
functions over ``(family, config, params)``, so they jit with ``family`` and
``config`` static and vmap over any leaf of ``params``.

Parameter pytree layout, shared by all families::

    params = {
        "embed":  {...},   # family-specific (token table, learned positions)
        "blocks": {...},   # every leaf stacked with a leading n_layers axis
        "final":  {...},   # final norm and LM head
    }

Each block's weight matrices that LASER can target live in ``params["blocks"]``
under their τ name (``q_proj, k_proj, v_proj, out_proj, fc_in, fc_up, fc_out``)
as ``(in, out)`` matrices, i.e. ``y = x @ W``. Fused Hugging Face projections
(GPT-2 ``c_attn``, NeoX ``query_key_value``) are split into per-projection
``d_model x d_model`` maps at load time and fused again at export.

A block is two stages so that an edit of the MLP can share the attention stage:
``attention_stage(h) -> (residual, mlp_input)`` and ``block(h) = residual +
mlp(mlp_input)``. A sequential block returns ``(h + attn, ln2(h + attn))``; a
parallel-residual block returns ``(h + attn, ln(h))``.

Any matrix may be replaced by a :class:`LowRank` factorisation; every family
multiplies through :func:`linear`, which handles both.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from laser_jax.errors import ConfigError, InterventionError

TAUS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_up", "fc_out")
ATTENTION_TAUS = ("q_proj", "k_proj", "v_proj", "out_proj")
MLP_TAUS = ("fc_in", "fc_up", "fc_out")
# The matrices of a block whose MLP is fc_out(act(fc_in(x))) (GPT-2, NeoX, GPT-J).
TWO_MATRIX_MLP_TAUS = ATTENTION_TAUS + ("fc_in", "fc_out")

Params = dict
Array = jax.Array


@flax.struct.dataclass
class LowRank:
    """A matrix stored as ``(u * s) @ vt``; shapes ``(in, r), (r,), (r, out)``.

    Leading batch axes (layers, variants) are allowed on all three leaves.
    """

    u: Array
    s: Array
    vt: Array

    @property
    def shape(self):
        return (*self.u.shape[:-1], self.vt.shape[-1])

    @property
    def dtype(self):
        return self.u.dtype

    def dense(self) -> Array:
        return jnp.einsum("...ir,...r,...ro->...io", self.u, self.s, self.vt)


def linear(x: Array, w, b: Optional[Array] = None) -> Array:
    """``x @ w (+ b)`` for a dense ``(in, out)`` matrix or a :class:`LowRank`."""
    if isinstance(w, LowRank):
        y = ((x @ w.u.astype(x.dtype)) * w.s.astype(x.dtype)) @ w.vt.astype(x.dtype)
    else:
        y = x @ w.astype(x.dtype)
    if b is not None:
        y = y + b.astype(y.dtype)
    return y


@flax.struct.dataclass
class Context:
    """Per-batch attention facts: token positions and which keys are real."""

    positions: Array  # [B, T] int32
    key_mask: Array  # [B, T] bool, False at padding

    @property
    def length(self) -> int:
        return self.positions.shape[1]


def make_context(ids: Array, attention_mask: Optional[Array] = None) -> Context:
    """Positions count real tokens (so left and right padding both work)."""
    if attention_mask is None:
        attention_mask = jnp.ones(ids.shape, bool)
    mask = jnp.asarray(attention_mask).astype(bool)
    positions = jnp.maximum(jnp.cumsum(mask, axis=-1) - 1, 0).astype(jnp.int32)
    return Context(positions=positions, key_mask=mask)


def query_index(ctx: Context, select: Optional[Array]) -> Array:
    """Sequence indices of the query rows: all of them, or ``select`` [B, A]."""
    batch, length = ctx.positions.shape
    if select is None:
        return jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))
    return select


def gather_positions(x: Array, select: Optional[Array]) -> Array:
    """``x[b, select[b, a]]`` for x of shape [B, T, ...]; identity when select is None."""
    if select is None:
        return x
    return jnp.take_along_axis(x, select.reshape(select.shape + (1,) * (x.ndim - 2)), axis=1)


# ----------------------------------------------------------------------------- layers


def layer_norm(x: Array, scale: Array, bias: Optional[Array], eps: float) -> Array:
    xf = x.astype(jnp.float32)
    mean = xf.mean(-1, keepdims=True)
    var = jnp.square(xf - mean).mean(-1, keepdims=True)
    y = (xf - mean) * jax.lax.rsqrt(var + eps) * scale.astype(jnp.float32)
    if bias is not None:
        y = y + bias.astype(jnp.float32)
    return y.astype(x.dtype)


def rms_norm(x: Array, scale: Array, eps: float) -> Array:
    xf = x.astype(jnp.float32)
    y = xf * jax.lax.rsqrt(jnp.square(xf).mean(-1, keepdims=True) + eps)
    return (scale.astype(jnp.float32) * y.astype(x.dtype).astype(jnp.float32)).astype(x.dtype)


def gelu_new(x: Array) -> Array:
    return jax.nn.gelu(x, approximate=True)


def gelu_exact(x: Array) -> Array:
    return jax.nn.gelu(x, approximate=False)


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu_new": gelu_new,
    "gelu_pytorch_tanh": gelu_new,
    "gelu_fast": gelu_new,
    "gelu": gelu_exact,
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


def rotary_angles(positions: Array, rotary_dim: int, base: float) -> tuple[Array, Array]:
    """cos, sin of shape [B, T, rotary_dim // 2] (float32)."""
    inv_freq = 1.0 / (base ** (np.arange(0, rotary_dim, 2, dtype=np.float32) / rotary_dim))
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rotary(x: Array, cos: Array, sin: Array, rotary_dim: int, interleaved: bool) -> Array:
    """Rotate the first ``rotary_dim`` features of each head of x [B, T, H, Dh].

    ``interleaved=False`` is Hugging Face's ``rotate_half`` (LLaMA, NeoX): pairs
    are (i, i + rotary_dim/2). ``interleaved=True`` is GPT-J's
    ``rotate_every_two``: pairs are (2i, 2i + 1).
    """
    rot, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    rotf = rot.astype(jnp.float32)
    cos = cos[:, :, None, :]
    sin = sin[:, :, None, :]
    if interleaved:
        x1, x2 = rotf[..., 0::2], rotf[..., 1::2]
        out = jnp.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).reshape(rotf.shape)
    else:
        half = rotary_dim // 2
        x1, x2 = rotf[..., :half], rotf[..., half:]
        out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return jnp.concatenate([out.astype(x.dtype), rest], axis=-1)


def attention_mask(ctx: Context, q_index: Array, n_keys: int, window: Optional[int] = None) -> Array:
    """Which keys each query may see, [B, A, T] bool: causal, not padding, and within ``window``.

    ``window`` (Mistral's, and Gemma's local layers' ``sliding_window``) keeps
    the keys at sequence indices ``q - window < k <= q``, as transformers'
    sliding-window mask does; None keeps every earlier key. The window is a
    per-layer fact, so it is an argument here rather than part of the per-batch
    :class:`Context`.
    """
    key_index = jnp.arange(n_keys, dtype=jnp.int32)[None, None, :]
    allowed = (key_index <= q_index[:, :, None]) & ctx.key_mask[:, None, :]
    if window is not None:
        allowed = allowed & (key_index > q_index[:, :, None] - window)
    return allowed


def attention(q: Array, k: Array, v: Array, ctx: Context, q_index: Array, scale: float,
              window: Optional[int] = None) -> Array:
    """Causal multi-head (or grouped-query) attention with padding mask and optional sliding window.

    q [B, A, H, Dh] at sequence indices ``q_index`` [B, A]; k, v [B, T, Hkv, Dh].
    Returns [B, A, H, Dh]. Scores and softmax run in float32.
    """
    heads, kv_heads = q.shape[2], k.shape[2]
    if heads != kv_heads:
        k = jnp.repeat(k, heads // kv_heads, axis=2)
        v = jnp.repeat(v, heads // kv_heads, axis=2)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
    allowed = attention_mask(ctx, q_index, k.shape[1], window)
    scores = jnp.where(allowed[:, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", probs, v)


def self_attention(p: Params, x: Array, ctx: Context, select: Optional[Array], heads: int, kv_heads: int,
                   scale: float, rotary: Optional[tuple[int, float, bool]] = None, window: Optional[int] = None,
                   qk_norm: Optional[Callable[[Array, Array], Array]] = None) -> Array:
    """The attention sublayer on normed input x [B, T, d]: projections, RoPE, attention, output map.

    Reads ``q_proj k_proj v_proj out_proj`` and the optional biases ``q_bias k_bias
    v_bias out_bias`` from the block parameters ``p``. ``rotary`` is
    ``(rotary_dim, theta, interleaved)`` for rotary position embeddings, else None.
    ``window`` is a sliding attention window (see :func:`attention_mask`).
    ``qk_norm(x, scale)``, when given, normalises each query and key head before
    RoPE with the scales ``q_norm_scale`` and ``k_norm_scale`` of ``p``.
    Returns [B, T, d], or [B, A, d] at the sequence indices ``select``.
    """
    q = split_heads(linear(gather_positions(x, select), p["q_proj"], p.get("q_bias")), heads)
    k = split_heads(linear(x, p["k_proj"], p.get("k_bias")), kv_heads)
    v = split_heads(linear(x, p["v_proj"], p.get("v_bias")), kv_heads)
    if qk_norm is not None:
        q, k = qk_norm(q, p["q_norm_scale"]), qk_norm(k, p["k_norm_scale"])
    if rotary is not None:
        rotary_dim, theta, interleaved = rotary
        cos, sin = rotary_angles(ctx.positions, rotary_dim, theta)
        k = apply_rotary(k, cos, sin, rotary_dim, interleaved)
        q = apply_rotary(q, gather_positions(cos, select), gather_positions(sin, select), rotary_dim, interleaved)
    attn = attention(q, k, v, ctx, query_index(ctx, select), scale, window)
    return linear(merge_heads(attn), p["out_proj"], p.get("out_bias"))


def split_heads(x: Array, heads: int) -> Array:
    return x.reshape(*x.shape[:-1], heads, x.shape[-1] // heads)


def merge_heads(x: Array) -> Array:
    return x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])


def biased_mlp(p: Params, cfg, x: Array) -> Array:
    """The two-matrix MLP ``fc_out(act(fc_in(x)))`` with biases; ``cfg.activation`` names ``act``."""
    hidden = ACTIVATIONS[cfg.activation](linear(x, p["fc_in"], p["fc_in_bias"]))
    return linear(hidden, p["fc_out"], p["fc_out_bias"])


def gated_mlp(p: Params, cfg, x: Array) -> Array:
    """The gated MLP ``fc_out(act(fc_in(x)) * fc_up(x))`` (LLaMA's SwiGLU, Gemma's GeGLU); ``cfg.activation`` names ``act``."""
    gate = ACTIVATIONS[cfg.activation](linear(x, p["fc_in"]))
    return linear(gate * linear(x, p["fc_up"]), p["fc_out"])


def final_layer_norm(params: Params, cfg, h: Array) -> Array:
    """The final LayerNorm of the GPT families: ``params["final"]`` ``ln_f_scale``, ``ln_f_bias``."""
    p = params["final"]
    return layer_norm(h, p["ln_f_scale"], p["ln_f_bias"], cfg.layer_norm_eps)


# ----------------------------------------------------------------------------- families


@dataclasses.dataclass(frozen=True, eq=False)
class Family:
    """The pure functions and metadata that define one model family.

    Compared and hashed by identity, so it can be a static jit argument.

    - ``embed(params, cfg, ids, ctx) -> h [B, T, d]``
    - ``attention_stage(block_params, cfg, h, ctx, select) -> (residual, mlp_input)``;
      with ``select`` [B, A] the outputs are at those sequence indices only
      (keys and values still come from every position).
    - ``mlp(block_params, cfg, x) -> y``
    - ``head(params, cfg, h) -> logits``: final norm and LM head.
    - ``from_hf_config(dict) -> cfg``: refuses fields the port does not implement.
    - ``hf_rules(cfg) -> tuple[Rule, ...]``: the declarative name-mapping table.
    - ``to_hf_config(cfg) -> dict``: the inverse of ``from_hf_config``.
    - ``layer_constants(cfg) -> {"blocks/name": array [n_layers]}``: per-layer
      facts that come from the config, not the checkpoint (e.g. which layers
      use a sliding window). They are stored as block leaves so that code
      running with a traced layer index (``run_blocks``) reads them; export
      leaves them out, the config carries them.
    """

    name: str
    hf_model_types: tuple[str, ...]
    taus: tuple[str, ...]
    embed: Callable
    attention_stage: Callable
    mlp: Callable
    head: Callable
    from_hf_config: Optional[Callable] = None
    hf_rules: Optional[Callable] = None
    to_hf_config: Optional[Callable] = None
    ignored_hf_keys: tuple[str, ...] = ()  # regexes of buffers that carry no weights
    layer_constants: Optional[Callable] = None

    def __repr__(self) -> str:
        return f"Family({self.name!r})"


def block(family: Family, cfg, block_params: Params, h: Array, ctx: Context, select=None) -> Array:
    residual, mlp_input = family.attention_stage(block_params, cfg, h, ctx, select)
    return residual + family.mlp(block_params, cfg, mlp_input)


def n_layers(params: Params) -> int:
    return jax.tree.leaves(params["blocks"])[0].shape[0]


def layer_params(params: Params, layer) -> Params:
    """The parameters of one block (``layer`` may be a traced integer)."""
    return jax.tree.map(lambda leaf: jax.lax.dynamic_index_in_dim(leaf, layer, 0, keepdims=False), params["blocks"])


def run_blocks(family: Family, cfg, params: Params, h: Array, ctx: Context, start, stop) -> Array:
    """Blocks ``start <= i < stop`` on hidden state h; bounds may be traced."""

    def body(i, h):
        return block(family, cfg, layer_params(params, i), h, ctx)

    return jax.lax.fori_loop(start, stop, body, h)


def forward(family: Family, cfg, params: Params, ids: Array, attention_mask=None, select=None) -> Array:
    """Logits [B, T, V], or [B, A, V] at sequence indices ``select`` [B, A]."""
    ctx = make_context(ids, attention_mask)
    h = family.embed(params, cfg, ids, ctx)
    last = n_layers(params) - 1
    h = run_blocks(family, cfg, params, h, ctx, 0, last)
    h = block(family, cfg, layer_params(params, last), h, ctx, select)
    return family.head(params, cfg, h)


# ----------------------------------------------------------------------------- matrices


def check_tau(family: Family, tau: str) -> None:
    if tau not in TAUS:
        raise InterventionError(f"unknown matrix type tau={tau!r}; known: {', '.join(TAUS)}")
    if tau not in family.taus:
        raise InterventionError(f"family {family.name!r} has no {tau!r} matrix (it has {', '.join(family.taus)})")


def check_layer(params: Params, layer: int) -> None:
    count = n_layers(params)
    if not isinstance(layer, (int, np.integer)) or not 0 <= layer < count:
        raise InterventionError(f"layer {layer!r} out of range: the model has layers 0..{count - 1}")


def get_matrix(family: Family, params: Params, layer: int, tau: str):
    """The ``(in, out)`` matrix (dense or :class:`LowRank`) of τ in one block."""
    check_tau(family, tau)
    check_layer(params, layer)
    stacked = params["blocks"][tau]
    return jax.tree.map(lambda leaf: leaf[layer], stacked)


def set_matrix(family: Family, params: Params, layer: int, tau: str, matrix) -> Params:
    """A new params pytree with block ``layer``'s τ replaced; the input is untouched.

    A :class:`LowRank` replacement of a dense stack is densified, so the stack
    stays one array; use :func:`set_matrix_stack` to store factors.
    """
    check_tau(family, tau)
    check_layer(params, layer)
    stacked = params["blocks"][tau]
    if isinstance(matrix, LowRank) and not isinstance(stacked, LowRank):
        matrix = matrix.dense()
    if tuple(matrix.shape) != tuple(stacked.shape[1:]):
        raise InterventionError(f"replacement for layer {layer} {tau} has shape {tuple(matrix.shape)}, expected {tuple(stacked.shape[1:])}")
    new_stack = jax.tree.map(lambda s, m: s.at[layer].set(m.astype(s.dtype)), stacked, matrix)
    return set_matrix_stack(params, tau, new_stack)


def set_matrix_stack(params: Params, tau: str, stack) -> Params:
    """Replace the whole ``[n_layers, in, out]`` stack (dense or LowRank) of τ."""
    blocks = dict(params["blocks"])
    blocks[tau] = stack
    return {**params, "blocks": blocks}


def cast_params(params: Params, dtype) -> Params:
    """Cast floating leaves to ``dtype``."""
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, params)


def default_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)


def require(hf: dict, field: str, allowed, family: str, default=None) -> Any:
    """Read an HF config field and refuse values the port does not implement."""
    value = hf.get(field, default)
    allowed = allowed if isinstance(allowed, (tuple, list, set, frozenset)) else (allowed,)
    if value not in allowed:
        raise ConfigError(f"{family}: unsupported config {field}={value!r} (this port implements {', '.join(map(repr, allowed))})")
    return value


def grouped_heads(hf: dict, family: str) -> tuple[int, int]:
    """``(num_attention_heads, num_key_value_heads)`` of an HF config; the KV heads must divide the heads."""
    heads = hf["num_attention_heads"]
    kv_heads = hf.get("num_key_value_heads") or heads
    if heads % kv_heads:
        raise ConfigError(f"{family}: unsupported config num_key_value_heads={kv_heads} (must divide num_attention_heads={heads})")
    return heads, kv_heads


def sliding_window(hf: dict, family: str) -> Optional[int]:
    """An HF config's ``sliding_window``: None (no window) or a positive integer; anything else is refused."""
    window = hf.get("sliding_window")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise ConfigError(f"{family}: unsupported config sliding_window={window!r} (must be a positive integer or None)")
    return window


def rope_settings(hf: dict, family: str, theta_field: str = "rope_theta", fraction_field: Optional[str] = None,
                  default_theta: float = 10000.0, default_fraction: float = 1.0) -> tuple[float, float]:
    """``(theta, rotary fraction)`` of an HF config, new style or legacy; refuses scaled RoPE.

    transformers 5 writes ``rope_parameters: {rope_type, rope_theta, partial_rotary_factor}``;
    older configs have flat fields (``rope_theta``, NeoX's ``rotary_emb_base`` and
    ``rotary_pct``) and ``rope_scaling``, which like transformers we read first.
    ``fraction_field=None`` means the family always rotates whole heads.
    """
    params = dict(hf.get("rope_scaling") or hf.get("rope_parameters") or {})
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        raise ConfigError(f"{family}: unsupported config rope_type={rope_type!r} (this port implements 'default', unscaled RoPE)")
    theta = float(params.get("rope_theta", hf.get(theta_field, default_theta)))
    if fraction_field is None:
        return theta, 1.0
    return theta, float(params.get("partial_rotary_factor", hf.get(fraction_field, default_fraction)))


__all__ = [
    "TAUS", "ATTENTION_TAUS", "MLP_TAUS", "LowRank", "linear", "Context", "make_context", "gather_positions",
    "query_index", "layer_norm", "rms_norm", "ACTIVATIONS", "rotary_angles", "apply_rotary", "attention_mask",
    "attention", "self_attention", "biased_mlp", "gated_mlp", "final_layer_norm", "split_heads", "merge_heads", "Family", "block", "n_layers", "layer_params", "run_blocks", "forward",
    "check_tau", "check_layer", "get_matrix", "set_matrix", "set_matrix_stack", "cast_params", "require",
    "default_scale", "grouped_heads", "sliding_window", "rope_settings", "ConfigError",
]
