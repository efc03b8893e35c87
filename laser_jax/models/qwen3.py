"""Qwen3 (dense): the LLaMA block with an RMSNorm on every query and key head before RoPE.

``q_norm`` and ``k_norm`` are RMSNorms over ``head_dim`` features, one scale
per layer shared by all heads (our ``q_norm_scale``, ``k_norm_scale``).
``head_dim`` is a free config field (128 in every released size, whatever
``hidden_size / num_attention_heads`` is), so ``q_proj`` is ``d x heads *
head_dim`` and ``out_proj`` its transpose in shape. ``attention_bias: true``
adds biases to all four attention maps. The MLP, the head and the embedding are
:mod:`laser_jax.models.llama`'s.
"""

from __future__ import annotations

import dataclasses
import functools

from laser_jax.models import base, llama, qwen2
from laser_jax.models.convert import Rule, vector_rule

DEFAULT_HEAD_DIM = 128  # transformers' Qwen3Config default, used when config.json has no head_dim


@dataclasses.dataclass(frozen=True)
class Qwen3Config(qwen2.Qwen2Config):
    """Qwen2's fields plus ``attention_bias``; the defaults are Qwen3-8B's."""

    vocab_size: int = 151936
    max_position_embeddings: int = 40960
    d_model: int = 4096
    n_layers: int = 36
    n_heads: int = 32
    n_kv_heads: int = 8
    head_dim: int = DEFAULT_HEAD_DIM
    d_mlp: int = 12288
    attention_bias: bool = False
    model_type: str = "qwen3"


# The released config.json sizes (head_dim 128, rope_theta 1e6, 40,960 positions throughout).
PRESETS = {
    "qwen3-0.6b": Qwen3Config(d_model=1024, n_layers=28, n_heads=16, n_kv_heads=8, d_mlp=3072, tie_embeddings=True),
    "qwen3-1.7b": Qwen3Config(d_model=2048, n_layers=28, n_heads=16, n_kv_heads=8, d_mlp=6144, tie_embeddings=True),
    "qwen3-4b": Qwen3Config(d_model=2560, n_layers=36, n_heads=32, n_kv_heads=8, d_mlp=9728, tie_embeddings=True),
    "qwen3-8b": Qwen3Config(),
    "qwen3-14b": Qwen3Config(d_model=5120, n_layers=40, n_heads=40, n_kv_heads=8, d_mlp=17408),
}


def from_hf_config(hf: dict) -> Qwen3Config:
    name = "qwen3"
    base.require(hf, "model_type", "qwen3", name, "qwen3")
    qwen2.refuse_unported_fields(hf, name)
    attention_bias = base.require(hf, "attention_bias", (True, False), name, False)
    fields = {**llama.config_fields(hf, name), "head_dim": hf.get("head_dim", DEFAULT_HEAD_DIM)}
    return Qwen3Config(**fields, attention_bias=attention_bias)


def to_hf_config(cfg: Qwen3Config) -> dict:
    return {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], **llama.hf_config_fields(cfg),
            "attention_bias": cfg.attention_bias, "use_sliding_window": False}


def hf_rules(cfg: Qwen3Config) -> tuple[Rule, ...]:
    h = "model.layers.{layer}.self_attn."
    head_dim = lambda c: c.head_dim  # noqa: E731
    norms = (
        vector_rule(h + "q_norm.weight", "blocks/q_norm_scale", head_dim),
        vector_rule(h + "k_norm.weight", "blocks/k_norm_scale", head_dim),
    )
    biases = qwen2.attention_bias_rules(cfg, out_bias=True) if cfg.attention_bias else ()
    return llama.hf_rules(cfg) + norms + biases


def attention_stage(p, cfg: Qwen3Config, h, ctx: base.Context, select=None):
    return llama.attention_stage(p, cfg, h, ctx, select, qk_norm=functools.partial(base.rms_norm, eps=cfg.rms_norm_eps))


FAMILY = base.Family(
    name="qwen3",
    hf_model_types=("qwen3",),
    taus=base.TAUS,
    embed=llama.embed,
    attention_stage=attention_stage,
    mlp=llama.mlp,
    head=llama.head,
    from_hf_config=from_hf_config,
    hf_rules=hf_rules,
    to_hf_config=to_hf_config,
    ignored_hf_keys=llama.FAMILY.ignored_hf_keys,
)
