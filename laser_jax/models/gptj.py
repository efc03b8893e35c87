"""GPT-J: interleaved rotary on ``rotary_dim`` features, attention and MLP in parallel from one LayerNorm.

A block is ``h + attn(ln_1(h)) + mlp(ln_1(h))``. q, k, v and out have no
bias; ``fc_in``, ``fc_out`` and the untied ``lm_head`` do. Hugging Face lays
the rotary sin/cos out with ``repeat_interleave``, i.e. it rotates feature
pairs ``(2i, 2i + 1)`` (``rotate_every_two``): ``base.apply_rotary(...,
interleaved=True)``, with the fixed base 10000.
"""

from __future__ import annotations

import dataclasses

from laser_jax.models import base, gpt2
from laser_jax.models.convert import Rule, linear_rule, vector_rule

ROTARY_BASE = 10000.0


@dataclasses.dataclass(frozen=True)
class GPTJConfig(gpt2.GPT2Config):
    """GPT-2's fields (GPT-J's HF config reuses GPT-2's names) plus the rotary width."""

    rotary_dim: int = 64


PRESETS = {
    "gpt-j-6b": GPTJConfig(vocab_size=50400, n_positions=2048, d_model=4096, n_layers=28, n_heads=16, d_mlp=16384),
}


def from_hf_config(hf: dict) -> GPTJConfig:
    name = "gptj"
    base.require(hf, "activation_function", tuple(base.ACTIVATIONS), name, "gelu_new")
    base.require(hf, "tie_word_embeddings", False, name, False)
    d_model, heads, rotary_dim = hf["n_embd"], hf["n_head"], hf.get("rotary_dim", 64)
    if d_model % heads or not isinstance(rotary_dim, int) or rotary_dim % 2 or not 0 < rotary_dim <= d_model // heads:
        raise base.ConfigError(f"{name}: unsupported config rotary_dim={rotary_dim!r} (this port implements an even rotary_dim of at most the head size {d_model // heads})")
    return GPTJConfig(**gpt2.config_fields(hf), rotary_dim=rotary_dim)


def to_hf_config(cfg: GPTJConfig) -> dict:
    return {"model_type": "gptj", "architectures": ["GPTJForCausalLM"], **gpt2.hf_config_fields(cfg),
            "rotary_dim": cfg.rotary_dim, "tie_word_embeddings": False}


def hf_rules(cfg: GPTJConfig) -> tuple[Rule, ...]:
    d, f, v = (lambda c: c.d_model), (lambda c: c.d_mlp), (lambda c: c.vocab_size)
    h = "transformer.h.{layer}."
    return (
        Rule("transformer.wte.weight", ("embed/wte",), lambda c: (c.vocab_size, c.d_model)),
        vector_rule(h + "ln_1.weight", "blocks/ln_1_scale", d),
        vector_rule(h + "ln_1.bias", "blocks/ln_1_bias", d),
        linear_rule(h + "attn.q_proj.weight", "blocks/q_proj", d, d),
        linear_rule(h + "attn.k_proj.weight", "blocks/k_proj", d, d),
        linear_rule(h + "attn.v_proj.weight", "blocks/v_proj", d, d),
        linear_rule(h + "attn.out_proj.weight", "blocks/out_proj", d, d),
        linear_rule(h + "mlp.fc_in.weight", "blocks/fc_in", d, f),
        vector_rule(h + "mlp.fc_in.bias", "blocks/fc_in_bias", f),
        linear_rule(h + "mlp.fc_out.weight", "blocks/fc_out", f, d),
        vector_rule(h + "mlp.fc_out.bias", "blocks/fc_out_bias", d),
        vector_rule("transformer.ln_f.weight", "final/ln_f_scale", d),
        vector_rule("transformer.ln_f.bias", "final/ln_f_bias", d),
        linear_rule("lm_head.weight", "final/lm_head", d, v),
        vector_rule("lm_head.bias", "final/lm_head_bias", v),
    )


def embed(params, cfg: GPTJConfig, ids, ctx: base.Context):
    return params["embed"]["wte"][ids]


def attention_stage(p, cfg: GPTJConfig, h, ctx: base.Context, select=None):
    return parallel_attention_stage(p, cfg, h, ctx, select, (cfg.rotary_dim, ROTARY_BASE, True), cfg.n_heads)


def parallel_attention_stage(p, cfg, h, ctx: base.Context, select, rotary, kv_heads: int):
    """One LayerNorm feeds both sublayers (GPT-J, Phi): ``(h + attn(ln_1(h)), ln_1(h))``."""
    x = base.layer_norm(h, p["ln_1_scale"], p["ln_1_bias"], cfg.layer_norm_eps)
    attn = base.self_attention(p, x, ctx, select, cfg.n_heads, kv_heads, base.default_scale(cfg.head_dim), rotary)
    return base.gather_positions(h, select) + attn, base.gather_positions(x, select)


def head(params, cfg: GPTJConfig, h):
    return base.linear(base.final_layer_norm(params, cfg, h), params["final"]["lm_head"], params["final"]["lm_head_bias"])


FAMILY = base.Family(
    name="gptj",
    hf_model_types=("gptj",),
    taus=base.TWO_MATRIX_MLP_TAUS,
    embed=embed,
    attention_stage=attention_stage,
    mlp=base.biased_mlp,
    head=head,
    from_hf_config=from_hf_config,
    hf_rules=hf_rules,
    to_hf_config=to_hf_config,
    ignored_hf_keys=(r"transformer\.h\.\d+\.attn\.(masked_)?bias", r"transformer\.h\.\d+\.attn\.embed_positions"),
)
