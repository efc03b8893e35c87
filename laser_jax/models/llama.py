"""LLaMA (also Mistral, with its sliding window, and SmolLM2): RMSNorm, rotary, SwiGLU, grouped-query attention.

The MLP is ``down(silu(gate(x)) * up(x))``: our ``fc_in`` is ``gate_proj``,
``fc_up`` is ``up_proj`` and ``fc_out`` is ``down_proj``. ``k_proj`` and
``v_proj`` map to ``num_key_value_heads * head_dim`` features. Mistral's
``sliding_window`` (every layer the same) limits each query to the last
``sliding_window`` keys, as transformers does; LLaMA has none. With
``tie_word_embeddings`` the head multiplies by the token table and any stored
``lm_head.weight`` is ignored, as in Hugging Face.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from laser_jax.models import base
from laser_jax.models.convert import Rule, linear_rule, vector_rule


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int = 32000
    max_position_embeddings: int = 4096
    d_model: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int = 32
    head_dim: int = 128
    d_mlp: int = 11008
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    activation: str = "silu"
    tie_embeddings: bool = False
    model_type: str = "llama"  # or "mistral": the same computation, plus an optional sliding window
    sliding_window: Optional[int] = None  # Mistral only


PRESETS = {
    "llama-2-7b": LlamaConfig(),
    "tinyllama-1.1b": LlamaConfig(max_position_embeddings=2048, d_model=2048, n_layers=22, n_heads=32, n_kv_heads=4,
                                  head_dim=64, d_mlp=5632),
    "smollm2-135m": LlamaConfig(vocab_size=49152, max_position_embeddings=8192, d_model=576, n_layers=30, n_heads=9,
                                n_kv_heads=3, head_dim=64, d_mlp=1536, rope_theta=100000.0, tie_embeddings=True),
    "smollm2-360m": LlamaConfig(vocab_size=49152, max_position_embeddings=8192, d_model=960, n_layers=32, n_heads=15,
                                n_kv_heads=5, head_dim=64, d_mlp=2560, rope_theta=100000.0, tie_embeddings=True),
}


def from_hf_config(hf: dict) -> LlamaConfig:
    name = "llama"
    model_type = base.require(hf, "model_type", ("llama", "mistral"), name, "llama")
    base.require(hf, "attention_bias", False, name, False)
    if model_type == "llama":  # transformers' LLaMA has no window: refuse a field it would ignore
        base.require(hf, "sliding_window", None, name, None)
    return LlamaConfig(**config_fields(hf, name), model_type=model_type, sliding_window=base.sliding_window(hf, name))


def config_fields(hf: dict, name: str) -> dict:
    """Our config fields from the HF names the LLaMA-like families share (LLaMA, Mistral, Qwen2, Qwen3)."""
    base.require(hf, "hidden_act", tuple(base.ACTIVATIONS), name, "silu")
    base.require(hf, "mlp_bias", False, name, False)
    base.require(hf, "tie_word_embeddings", (True, False), name, False)
    theta, _ = base.rope_settings(hf, name)
    fields = size_fields(hf, name)
    return dict(
        fields,
        head_dim=hf.get("head_dim") or fields["d_model"] // fields["n_heads"],
        rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
        rope_theta=theta,
        activation=hf.get("hidden_act", "silu"),
        tie_embeddings=hf.get("tie_word_embeddings", False),
    )


def size_fields(hf: dict, name: str) -> dict:
    """The sizes of a decoder with grouped-query attention, under the HF names LLaMA, Qwen and Phi share."""
    heads, kv_heads = base.grouped_heads(hf, name)
    return dict(
        vocab_size=hf["vocab_size"],
        max_position_embeddings=hf.get("max_position_embeddings", 2048),
        d_model=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=heads,
        n_kv_heads=kv_heads,
        d_mlp=hf["intermediate_size"],
    )


def to_hf_config(cfg: LlamaConfig) -> dict:
    return {
        "model_type": cfg.model_type,
        "architectures": ["MistralForCausalLM" if cfg.model_type == "mistral" else "LlamaForCausalLM"],
        **hf_config_fields(cfg),
        "attention_bias": False,
        "sliding_window": cfg.sliding_window,
    }


def hf_config_fields(cfg: LlamaConfig) -> dict:
    """The inverse of :func:`config_fields`."""
    return {
        **hf_size_fields(cfg),
        "head_dim": cfg.head_dim,
        "rms_norm_eps": cfg.rms_norm_eps,
        # both spellings: transformers >= 5 reads rope_parameters, older versions rope_theta
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "rope_theta": cfg.rope_theta,
        "hidden_act": cfg.activation,
        "mlp_bias": False,
        "tie_word_embeddings": cfg.tie_embeddings,
    }


def hf_size_fields(cfg) -> dict:
    """The inverse of :func:`size_fields`."""
    return {
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "intermediate_size": cfg.d_mlp,
    }


LAYER = "model.layers.{layer}."


def projection_rules() -> tuple[Rule, ...]:
    """The attention and gated-MLP projections of a LLaMA-style block (``self_attn.*_proj``, ``mlp.*_proj``),
    shared by the families that name them as LLaMA does."""
    d, f = (lambda c: c.d_model), (lambda c: c.d_mlp)
    q, kv = (lambda c: c.n_heads * c.head_dim), (lambda c: c.n_kv_heads * c.head_dim)
    return (
        linear_rule(LAYER + "self_attn.q_proj.weight", "blocks/q_proj", d, q),
        linear_rule(LAYER + "self_attn.k_proj.weight", "blocks/k_proj", d, kv),
        linear_rule(LAYER + "self_attn.v_proj.weight", "blocks/v_proj", d, kv),
        linear_rule(LAYER + "self_attn.o_proj.weight", "blocks/out_proj", q, d),
        linear_rule(LAYER + "mlp.gate_proj.weight", "blocks/fc_in", d, f),
        linear_rule(LAYER + "mlp.up_proj.weight", "blocks/fc_up", d, f),
        linear_rule(LAYER + "mlp.down_proj.weight", "blocks/fc_out", f, d),
    )


def embedding_rules(cfg) -> tuple[Rule, ...]:
    """``model.embed_tokens``, ``model.norm`` and, unless the embeddings are tied, ``lm_head``."""
    rules = (
        Rule("model.embed_tokens.weight", ("embed/embed_tokens",), lambda c: (c.vocab_size, c.d_model)),
        vector_rule("model.norm.weight", "final/norm_scale", lambda c: c.d_model),
    )
    if cfg.tie_embeddings:
        return rules
    return rules + (linear_rule("lm_head.weight", "final/lm_head", lambda c: c.d_model, lambda c: c.vocab_size),)


def hf_rules(cfg: LlamaConfig) -> tuple[Rule, ...]:
    d = lambda c: c.d_model  # noqa: E731
    return embedding_rules(cfg) + projection_rules() + (
        vector_rule(LAYER + "input_layernorm.weight", "blocks/ln_1_scale", d),
        vector_rule(LAYER + "post_attention_layernorm.weight", "blocks/ln_2_scale", d),
    )


def embed(params, cfg: LlamaConfig, ids, ctx: base.Context):
    return params["embed"]["embed_tokens"][ids]


def attention_stage(p, cfg: LlamaConfig, h, ctx: base.Context, select=None, qk_norm=None):
    """Pre-RMSNorm attention and residual; ``qk_norm`` as in :func:`base.self_attention` (Qwen3's head norms)."""
    x = base.rms_norm(h, p["ln_1_scale"], cfg.rms_norm_eps)
    rotary = (cfg.head_dim, cfg.rope_theta, False)
    attn = base.self_attention(p, x, ctx, select, cfg.n_heads, cfg.n_kv_heads, base.default_scale(cfg.head_dim), rotary,
                               cfg.sliding_window, qk_norm=qk_norm)
    residual = base.gather_positions(h, select) + attn
    return residual, base.rms_norm(residual, p["ln_2_scale"], cfg.rms_norm_eps)


def mlp(p, cfg: LlamaConfig, x):
    return base.gated_mlp(p, cfg, x)


def head(params, cfg: LlamaConfig, h):
    x = base.rms_norm(h, params["final"]["norm_scale"], cfg.rms_norm_eps)
    return base.linear(x, params["embed"]["embed_tokens"].T if cfg.tie_embeddings else params["final"]["lm_head"])


FAMILY = base.Family(
    name="llama",
    hf_model_types=("llama", "mistral"),
    taus=("q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_up", "fc_out"),
    embed=embed,
    attention_stage=attention_stage,
    mlp=mlp,
    head=head,
    from_hf_config=from_hf_config,
    hf_rules=hf_rules,
    to_hf_config=to_hf_config,
    ignored_hf_keys=(
        r"model\.(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq",
        r"lm_head\.weight",  # present in some tied checkpoints; transformers ties it to embed_tokens
    ),
)
