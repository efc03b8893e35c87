"""Gemma 3 (text): local/global attention, q/k norms, GeGLU, four norms per block, a scaled embedding.

As transformers' ``Gemma3ForCausalLM``:

- every RMSNorm scales by ``1 + w`` (the stored ``w`` is centred on 0) and
  multiplies in float32 before casting back;
- the token embedding is multiplied by ``sqrt(d_model)``, rounded to float32
  and then to the parameters' dtype (so in bfloat16 it is not exactly sqrt(d));
- each query and key head is RMS-normed (``q_norm``, ``k_norm``) before RoPE;
  the attention scale is ``query_pre_attn_scalar ** -0.5``;
- the layers ``layer_types`` marks ``sliding_attention`` see only the last
  ``sliding_window`` keys and rotate with ``rope_local_base_freq``; the
  ``full_attention`` layers see every key and rotate with ``rope_theta``.
  Which layer is which is the per-layer block leaf ``sliding`` (from
  :func:`layer_constants`), because blocks run with a traced layer index; the
  attention picks its branch with ``lax.cond``, so each layer computes one;
- the block is ``h + post_attn_norm(attn(ln_1(h)))`` then
  ``+ post_mlp_norm(mlp(ln_2(.)))``: the post-MLP norm is part of :func:`mlp`,
  so an edit of the MLP still shares the attention stage;
- the MLP is ``down(gelu_tanh(gate(x)) * up(x))``: ``fc_in`` is ``gate_proj``,
  ``fc_up`` is ``up_proj``, ``fc_out`` is ``down_proj``.

Soft-capping of attention or final logits, bidirectional attention and scaled
RoPE are refused.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from laser_jax.models import base, llama
from laser_jax.models.convert import Rule, vector_rule

SLIDING, FULL = "sliding_attention", "full_attention"
DEFAULT_PATTERN = 6  # transformers' default: every sixth layer is global


def layer_types_of(n_layers: int, pattern: int = DEFAULT_PATTERN) -> tuple[str, ...]:
    """The layer types transformers derives from the older ``sliding_window_pattern`` field."""
    return tuple(SLIDING if (i + 1) % pattern else FULL for i in range(n_layers))


@dataclasses.dataclass(frozen=True)
class Gemma3Config:
    vocab_size: int = 262144
    max_position_embeddings: int = 32768
    d_model: int = 640
    n_layers: int = 18
    n_heads: int = 4
    n_kv_heads: int = 1
    head_dim: int = 256
    d_mlp: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0  # full-attention (global) layers
    rope_local_theta: float = 10_000.0  # sliding-window (local) layers: HF rope_local_base_freq
    sliding_window: Optional[int] = 512
    layer_types: tuple[str, ...] = layer_types_of(18)
    query_pre_attn_scalar: float = 256
    activation: str = "gelu_pytorch_tanh"
    tie_embeddings: bool = True


PRESETS = {
    "gemma3-270m": Gemma3Config(),
}


def rope_thetas(hf: dict, family: str) -> tuple[float, float]:
    """``(global theta, local theta)``: transformers 5's per-layer-type ``rope_parameters``, or the older
    ``rope_theta`` / ``rope_local_base_freq`` / ``rope_scaling`` (which, like transformers, applies to global layers)."""
    nested = dict(hf.get("rope_parameters") or {})
    unknown = sorted(set(nested) - {FULL, SLIDING})
    if unknown:
        raise base.ConfigError(f"{family}: unsupported config rope_parameters key {unknown[0]!r} (expected {FULL!r} and {SLIDING!r})")
    full = {**(nested.get(FULL) or {}), **(hf.get("rope_scaling") or {})}
    local = dict(nested.get(SLIDING) or {})
    for kind, params in ((FULL, full), (SLIDING, local)):
        rope_type = params.get("rope_type", params.get("type", "default"))
        if rope_type != "default":
            raise base.ConfigError(f"{family}: unsupported config rope_type={rope_type!r} for {kind} layers "
                                   "(this port implements 'default', unscaled RoPE)")
    return (float(full.get("rope_theta", hf.get("rope_theta", 1_000_000.0))),
            float(local.get("rope_theta", hf.get("rope_local_base_freq", 10_000.0))))


def from_hf_config(hf: dict) -> Gemma3Config:
    name = "gemma3"
    base.require(hf, "model_type", "gemma3_text", name, "gemma3_text")
    base.require(hf, "hidden_activation", tuple(base.ACTIVATIONS), name, "gelu_pytorch_tanh")
    base.require(hf, "attention_bias", False, name, False)
    base.require(hf, "attn_logit_softcapping", None, name, None)
    base.require(hf, "final_logit_softcapping", None, name, None)
    base.require(hf, "use_bidirectional_attention", (False, None), name, False)
    base.require(hf, "tie_word_embeddings", (True, False), name, True)
    n_layers = hf["num_hidden_layers"]
    pattern = hf.get("sliding_window_pattern", hf.get("_sliding_window_pattern", DEFAULT_PATTERN))
    layer_types = tuple(hf.get("layer_types") or layer_types_of(n_layers, pattern))
    if len(layer_types) != n_layers or not set(layer_types) <= {SLIDING, FULL}:
        raise base.ConfigError(f"{name}: unsupported config layer_types={list(layer_types)!r} "
                               f"(one of {SLIDING!r}, {FULL!r} per layer, {n_layers} layers)")
    window = base.sliding_window(hf, name)
    if window is None and SLIDING in layer_types:
        raise base.ConfigError(f"{name}: unsupported config sliding_window=None with {SLIDING!r} layers")
    rope_theta, rope_local_theta = rope_thetas(hf, name)
    d_model = hf["hidden_size"]
    heads, kv_heads = base.grouped_heads(hf, name)
    return Gemma3Config(
        vocab_size=hf["vocab_size"],
        max_position_embeddings=hf.get("max_position_embeddings", 131072),
        d_model=d_model,
        n_layers=n_layers,
        n_heads=heads,
        n_kv_heads=kv_heads,
        head_dim=hf.get("head_dim") or d_model // heads,
        d_mlp=hf["intermediate_size"],
        rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
        rope_theta=rope_theta,
        rope_local_theta=rope_local_theta,
        sliding_window=window,
        layer_types=layer_types,
        query_pre_attn_scalar=hf.get("query_pre_attn_scalar", 256),
        activation=hf.get("hidden_activation", "gelu_pytorch_tanh"),
        tie_embeddings=hf.get("tie_word_embeddings", True),
    )


def to_hf_config(cfg: Gemma3Config) -> dict:
    return {
        "model_type": "gemma3_text",
        "architectures": ["Gemma3ForCausalLM"],
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "intermediate_size": cfg.d_mlp,
        "rms_norm_eps": cfg.rms_norm_eps,
        # both spellings: transformers >= 5 reads rope_parameters, older versions the flat fields
        "rope_parameters": {FULL: {"rope_type": "default", "rope_theta": cfg.rope_theta},
                            SLIDING: {"rope_type": "default", "rope_theta": cfg.rope_local_theta}},
        "rope_theta": cfg.rope_theta,
        "rope_local_base_freq": cfg.rope_local_theta,
        "sliding_window": cfg.sliding_window,
        "layer_types": list(cfg.layer_types),
        "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
        "hidden_activation": cfg.activation,
        "attention_bias": False,
        "attn_logit_softcapping": None,
        "final_logit_softcapping": None,
        "use_bidirectional_attention": False,
        "tie_word_embeddings": cfg.tie_embeddings,
    }


def hf_rules(cfg: Gemma3Config) -> tuple[Rule, ...]:
    d, dh = (lambda c: c.d_model), (lambda c: c.head_dim)
    h = llama.LAYER
    return llama.embedding_rules(cfg) + llama.projection_rules() + (
        vector_rule(h + "input_layernorm.weight", "blocks/ln_1_scale", d),
        vector_rule(h + "self_attn.q_norm.weight", "blocks/q_norm_scale", dh),
        vector_rule(h + "self_attn.k_norm.weight", "blocks/k_norm_scale", dh),
        vector_rule(h + "post_attention_layernorm.weight", "blocks/post_attn_norm_scale", d),
        vector_rule(h + "pre_feedforward_layernorm.weight", "blocks/ln_2_scale", d),
        vector_rule(h + "post_feedforward_layernorm.weight", "blocks/post_mlp_norm_scale", d),
    )


def layer_constants(cfg: Gemma3Config) -> dict[str, np.ndarray]:
    return {"blocks/sliding": np.array([kind == SLIDING for kind in cfg.layer_types])}


def rms_norm(x, scale, eps: float):
    """Gemma's RMSNorm: ``x / rms(x) * (1 + w)`` in float32, then cast back (unlike LLaMA's, which casts first)."""
    xf = x.astype(jnp.float32)
    y = xf * jax.lax.rsqrt(jnp.square(xf).mean(-1, keepdims=True) + eps)
    return (y * (1.0 + scale.astype(jnp.float32))).astype(x.dtype)


def embed(params, cfg: Gemma3Config, ids, ctx: base.Context):
    table = params["embed"]["embed_tokens"]
    return table[ids] * jnp.asarray(np.float32(cfg.d_model ** 0.5)).astype(table.dtype)


def attention_stage(p, cfg: Gemma3Config, h, ctx: base.Context, select=None):
    x = rms_norm(h, p["ln_1_scale"], cfg.rms_norm_eps)

    def attend(theta: float, window: Optional[int]):
        def qk_norm(y, scale):
            return rms_norm(y, scale, cfg.rms_norm_eps)

        return lambda: base.self_attention(p, x, ctx, select, cfg.n_heads, cfg.n_kv_heads, cfg.query_pre_attn_scalar ** -0.5,
                                           (cfg.head_dim, theta, False), window, qk_norm)

    attn = jax.lax.cond(p["sliding"], attend(cfg.rope_local_theta, cfg.sliding_window), attend(cfg.rope_theta, None))
    residual = base.gather_positions(h, select) + rms_norm(attn, p["post_attn_norm_scale"], cfg.rms_norm_eps)
    return residual, rms_norm(residual, p["ln_2_scale"], cfg.rms_norm_eps)


def mlp(p, cfg: Gemma3Config, x):
    return rms_norm(base.gated_mlp(p, cfg, x), p["post_mlp_norm_scale"], cfg.rms_norm_eps)


def head(params, cfg: Gemma3Config, h):
    x = rms_norm(h, params["final"]["norm_scale"], cfg.rms_norm_eps)
    return base.linear(x, params["embed"]["embed_tokens"].T if cfg.tie_embeddings else params["final"]["lm_head"])


FAMILY = base.Family(
    name="gemma3",
    hf_model_types=("gemma3_text",),
    taus=("q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_up", "fc_out"),
    embed=embed,
    attention_stage=attention_stage,
    mlp=mlp,
    head=head,
    from_hf_config=from_hf_config,
    hf_rules=hf_rules,
    to_hf_config=to_hf_config,
    ignored_hf_keys=(r"lm_head\.weight",),  # present in some tied checkpoints; transformers ties it to embed_tokens
    layer_constants=layer_constants,
)
