"""Phi (Phi-1, Phi-1.5, Phi-2): attention and MLP in parallel from one LayerNorm, partial rotary, biases everywhere.

A block is ``h + dense(attn(ln(h))) + fc2(gelu_new(fc1(ln(h))))``, as GPT-J's,
but the rotary embedding is ``rotate_half`` (pairs ``(i, i + r/2)``) on the
first ``r = head_dim * partial_rotary_factor`` features of each head, with a
configurable base. ``q_proj k_proj v_proj`` and the output map ``dense`` (our
``out_proj``) all have biases; ``fc1`` / ``fc2`` are our ``fc_in`` /
``fc_out``. The final LayerNorm and the untied ``lm_head`` have biases too.
``qk_layernorm: true`` (per-head LayerNorms on queries and keys, which no
released checkpoint sets) is refused.
"""

from __future__ import annotations

import dataclasses

from laser_jax.models import base, gptj, llama
from laser_jax.models.convert import Rule, linear_rule, vector_rule


@dataclasses.dataclass(frozen=True)
class PhiConfig:
    """The defaults are Phi-1.5's (and Phi-1's)."""

    vocab_size: int = 51200
    max_position_embeddings: int = 2048
    d_model: int = 2048
    n_layers: int = 24
    n_heads: int = 32
    n_kv_heads: int = 32
    d_mlp: int = 8192
    layer_norm_eps: float = 1e-5
    partial_rotary_factor: float = 0.5
    rope_theta: float = 10000.0
    activation: str = "gelu_new"

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)


PRESETS = {
    "phi-1": PhiConfig(),
    "phi-1.5": PhiConfig(),
    "phi-2": PhiConfig(d_model=2560, n_layers=32, n_heads=32, n_kv_heads=32, d_mlp=10240, partial_rotary_factor=0.4),
}


def from_hf_config(hf: dict) -> PhiConfig:
    name = "phi"
    base.require(hf, "hidden_act", tuple(base.ACTIVATIONS), name, "gelu_new")
    base.require(hf, "tie_word_embeddings", False, name, False)
    base.require(hf, "qk_layernorm", False, name, False)
    theta, fraction = base.rope_settings(hf, name, fraction_field="partial_rotary_factor", default_fraction=0.5)
    cfg = PhiConfig(
        **llama.size_fields(hf, name),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-5),
        partial_rotary_factor=fraction,
        rope_theta=theta,
        activation=hf.get("hidden_act", "gelu_new"),
    )
    if cfg.d_model % cfg.n_heads or hf.get("head_dim", cfg.head_dim) != cfg.head_dim:
        raise base.ConfigError(f"{name}: unsupported config head_dim={hf.get('head_dim')!r} with hidden_size={cfg.d_model} over {cfg.n_heads} heads "
                               "(this port implements head_dim = hidden_size / num_attention_heads)")
    if cfg.rotary_dim % 2 or cfg.rotary_dim == 0:
        raise base.ConfigError(f"{name}: unsupported config partial_rotary_factor={fraction} (gives rotary dimension {cfg.rotary_dim} of head size {cfg.head_dim}; this port needs an even, positive one)")
    return cfg


def to_hf_config(cfg: PhiConfig) -> dict:
    return {
        "model_type": "phi",
        "architectures": ["PhiForCausalLM"],
        **llama.hf_size_fields(cfg),
        "layer_norm_eps": cfg.layer_norm_eps,
        # both spellings: transformers >= 5 reads rope_parameters, older versions the flat fields
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta, "partial_rotary_factor": cfg.partial_rotary_factor},
        "rope_theta": cfg.rope_theta,
        "partial_rotary_factor": cfg.partial_rotary_factor,
        "hidden_act": cfg.activation,
        "qk_layernorm": False,
        "tie_word_embeddings": False,
    }


def hf_rules(cfg: PhiConfig) -> tuple[Rule, ...]:
    d, f, v = (lambda c: c.d_model), (lambda c: c.d_mlp), (lambda c: c.vocab_size)
    kv = lambda c: c.n_kv_heads * c.head_dim  # noqa: E731
    h = "model.layers.{layer}."
    return (
        Rule("model.embed_tokens.weight", ("embed/embed_tokens",), lambda c: (c.vocab_size, c.d_model)),
        vector_rule(h + "input_layernorm.weight", "blocks/ln_1_scale", d),
        vector_rule(h + "input_layernorm.bias", "blocks/ln_1_bias", d),
        linear_rule(h + "self_attn.q_proj.weight", "blocks/q_proj", d, d),
        vector_rule(h + "self_attn.q_proj.bias", "blocks/q_bias", d),
        linear_rule(h + "self_attn.k_proj.weight", "blocks/k_proj", d, kv),
        vector_rule(h + "self_attn.k_proj.bias", "blocks/k_bias", kv),
        linear_rule(h + "self_attn.v_proj.weight", "blocks/v_proj", d, kv),
        vector_rule(h + "self_attn.v_proj.bias", "blocks/v_bias", kv),
        linear_rule(h + "self_attn.dense.weight", "blocks/out_proj", d, d),
        vector_rule(h + "self_attn.dense.bias", "blocks/out_bias", d),
        linear_rule(h + "mlp.fc1.weight", "blocks/fc_in", d, f),
        vector_rule(h + "mlp.fc1.bias", "blocks/fc_in_bias", f),
        linear_rule(h + "mlp.fc2.weight", "blocks/fc_out", f, d),
        vector_rule(h + "mlp.fc2.bias", "blocks/fc_out_bias", d),
        vector_rule("model.final_layernorm.weight", "final/ln_f_scale", d),
        vector_rule("model.final_layernorm.bias", "final/ln_f_bias", d),
        linear_rule("lm_head.weight", "final/lm_head", d, v),
        vector_rule("lm_head.bias", "final/lm_head_bias", v),
    )


def attention_stage(p, cfg: PhiConfig, h, ctx: base.Context, select=None):
    return gptj.parallel_attention_stage(p, cfg, h, ctx, select, (cfg.rotary_dim, cfg.rope_theta, False), cfg.n_kv_heads)


FAMILY = base.Family(
    name="phi",
    hf_model_types=("phi",),
    taus=base.TWO_MATRIX_MLP_TAUS,
    embed=llama.embed,
    attention_stage=attention_stage,
    mlp=base.biased_mlp,
    head=gptj.head,
    from_hf_config=from_hf_config,
    hf_rules=hf_rules,
    to_hf_config=to_hf_config,
    ignored_hf_keys=(r"model\.(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq",),
)
