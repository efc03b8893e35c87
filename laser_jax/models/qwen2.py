"""Qwen2 and Qwen2.5: the LLaMA block with biases on the query, key and value maps.

Everything else is LLaMA's computation (RMSNorm, rotary on whole heads,
SwiGLU with ``fc_in`` = ``gate_proj``, ``fc_up`` = ``up_proj``, ``fc_out`` =
``down_proj``, grouped-query attention), so the forward pieces are
:mod:`laser_jax.models.llama`'s; ``base.self_attention`` adds the
``q_bias k_bias v_bias`` leaves. ``o_proj`` has no bias. Qwen2.5 checkpoints
use the same architecture (``model_type: qwen2``). Sliding-window attention
(``use_sliding_window: true``, which no released Qwen2 checkpoint enables) is
refused.
"""

from __future__ import annotations

import dataclasses

from laser_jax.models import base, llama
from laser_jax.models.convert import Rule, vector_rule


@dataclasses.dataclass(frozen=True)
class Qwen2Config(llama.LlamaConfig):
    """LLaMA's fields; the defaults are Qwen2-7B's."""

    vocab_size: int = 152064
    max_position_embeddings: int = 131072
    d_model: int = 3584
    n_layers: int = 28
    n_heads: int = 28
    n_kv_heads: int = 4
    head_dim: int = 128
    d_mlp: int = 18944
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1000000.0
    model_type: str = "qwen2"


# The released config.json sizes (rope_theta 1e6, rms_norm_eps 1e-6 throughout).
PRESETS = {
    "qwen2-0.5b": Qwen2Config(vocab_size=151936, d_model=896, n_layers=24, n_heads=14, n_kv_heads=2, head_dim=64,
                              d_mlp=4864, tie_embeddings=True),
    "qwen2-1.5b": Qwen2Config(vocab_size=151936, d_model=1536, n_layers=28, n_heads=12, n_kv_heads=2, d_mlp=8960,
                              tie_embeddings=True),
    "qwen2-7b": Qwen2Config(),
    "qwen2.5-0.5b": Qwen2Config(vocab_size=151936, max_position_embeddings=32768, d_model=896, n_layers=24, n_heads=14,
                                n_kv_heads=2, head_dim=64, d_mlp=4864, tie_embeddings=True),
    "qwen2.5-1.5b": Qwen2Config(vocab_size=151936, d_model=1536, n_layers=28, n_heads=12, n_kv_heads=2, d_mlp=8960,
                                tie_embeddings=True),
    "qwen2.5-3b": Qwen2Config(vocab_size=151936, max_position_embeddings=32768, d_model=2048, n_layers=36, n_heads=16,
                              n_kv_heads=2, d_mlp=11008, tie_embeddings=True),
    "qwen2.5-7b": Qwen2Config(),
    "qwen2.5-14b": Qwen2Config(d_model=5120, n_layers=48, n_heads=40, n_kv_heads=8, d_mlp=13824),
}


def refuse_unported_fields(hf: dict, name: str) -> None:
    """Refuse sliding windows and multimodal RoPE (``use_mrope``) in a Qwen2/Qwen3 config.

    Released configs carry a ``sliding_window`` size that only ``use_sliding_window: true``
    turns on, so the size itself is ignored, as transformers ignores it.
    """
    base.require(hf, "use_sliding_window", False, name, False)
    base.require(hf, "use_mrope", False, name, False)
    layer_types = hf.get("layer_types") or ()
    if any(kind != "full_attention" for kind in layer_types):
        raise base.ConfigError(f"{name}: unsupported config layer_types={sorted(set(layer_types))!r} (this port implements 'full_attention' only)")


def from_hf_config(hf: dict) -> Qwen2Config:
    name = "qwen2"
    base.require(hf, "model_type", "qwen2", name, "qwen2")
    refuse_unported_fields(hf, name)
    return Qwen2Config(**llama.config_fields(hf, name))


def to_hf_config(cfg: Qwen2Config) -> dict:
    return {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], **llama.hf_config_fields(cfg),
            "use_sliding_window": False}


def attention_bias_rules(cfg, out_bias: bool) -> tuple[Rule, ...]:
    """The q/k/v (and optionally o) projection biases of the LLaMA-like layout."""
    q, kv = (lambda c: c.n_heads * c.head_dim), (lambda c: c.n_kv_heads * c.head_dim)
    h = "model.layers.{layer}.self_attn."
    rules = (
        vector_rule(h + "q_proj.bias", "blocks/q_bias", q),
        vector_rule(h + "k_proj.bias", "blocks/k_bias", kv),
        vector_rule(h + "v_proj.bias", "blocks/v_bias", kv),
    )
    return rules + ((vector_rule(h + "o_proj.bias", "blocks/out_bias", lambda c: c.d_model),) if out_bias else ())


def hf_rules(cfg: Qwen2Config) -> tuple[Rule, ...]:
    return llama.hf_rules(cfg) + attention_bias_rules(cfg, out_bias=False)


FAMILY = base.Family(
    name="qwen2",
    hf_model_types=("qwen2",),
    taus=base.TAUS,
    embed=llama.embed,
    attention_stage=llama.attention_stage,
    mlp=llama.mlp,
    head=llama.head,
    from_hf_config=from_hf_config,
    hf_rules=hf_rules,
    to_hf_config=to_hf_config,
    ignored_hf_keys=llama.FAMILY.ignored_hf_keys,
)
