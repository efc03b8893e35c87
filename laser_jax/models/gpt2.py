"""GPT-2: learned positions, pre-LayerNorm blocks, fused ``c_attn``, gelu_new, tied head.

Hugging Face's GPT-2 uses ``Conv1D`` layers whose weights are already
``(in, out)``. The fused ``c_attn`` (d, 3d) is split into our ``q_proj``,
``k_proj`` and ``v_proj`` (d, d each, columns ``[0:d], [d:2d], [2d:3d]``) with
their biases; export concatenates them back.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from laser_jax.models import base
from laser_jax.models.convert import Rule, vector_rule


@dataclasses.dataclass(frozen=True)
class GPT2Config:
    vocab_size: int = 50257
    n_positions: int = 1024
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    d_mlp: int = 3072
    layer_norm_eps: float = 1e-5
    activation: str = "gelu_new"

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


PRESETS = {
    "gpt2": GPT2Config(),
    "gpt2-medium": GPT2Config(d_model=1024, n_layers=24, n_heads=16, d_mlp=4096),
    "gpt2-large": GPT2Config(d_model=1280, n_layers=36, n_heads=20, d_mlp=5120),
    "gpt2-xl": GPT2Config(d_model=1600, n_layers=48, n_heads=25, d_mlp=6400),
}


def from_hf_config(hf: dict) -> GPT2Config:
    name = "gpt2"
    base.require(hf, "activation_function", ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"), name, "gelu_new")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
        base.require(hf, flag, False, name, False)
    base.require(hf, "scale_attn_weights", True, name, True)
    base.require(hf, "tie_word_embeddings", True, name, True)
    return GPT2Config(**config_fields(hf))


def to_hf_config(cfg: GPT2Config) -> dict:
    return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], **hf_config_fields(cfg), "tie_word_embeddings": True}


def config_fields(hf: dict) -> dict:
    """Our config fields from the HF names GPT-2 and GPT-J share (GPT-J's config reuses GPT-2's)."""
    d_model = hf["n_embd"]
    return dict(
        vocab_size=hf["vocab_size"],
        n_positions=hf["n_positions"],
        d_model=d_model,
        n_layers=hf["n_layer"],
        n_heads=hf["n_head"],
        d_mlp=hf.get("n_inner") or 4 * d_model,
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        activation=hf.get("activation_function", "gelu_new"),
    )


def hf_config_fields(cfg) -> dict:
    """The inverse of :func:`config_fields`."""
    return {
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.n_positions,
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": cfg.d_mlp,
        "layer_norm_epsilon": cfg.layer_norm_eps,
        "activation_function": cfg.activation,
    }


def _split_qkv(array, cfg):
    return tuple(np.ascontiguousarray(part) for part in np.split(array, 3, axis=-1))


def _fuse_qkv(arrays, cfg):
    return np.concatenate(arrays, axis=-1)


def hf_rules(cfg: GPT2Config) -> tuple[Rule, ...]:
    d, f = lambda c: c.d_model, lambda c: c.d_mlp
    h = "transformer.h.{layer}."
    return (
        Rule("transformer.wte.weight", ("embed/wte",), lambda c: (c.vocab_size, c.d_model)),
        Rule("transformer.wpe.weight", ("embed/wpe",), lambda c: (c.n_positions, c.d_model)),
        vector_rule(h + "ln_1.weight", "blocks/ln_1_scale", d),
        vector_rule(h + "ln_1.bias", "blocks/ln_1_bias", d),
        Rule(h + "attn.c_attn.weight", ("blocks/q_proj", "blocks/k_proj", "blocks/v_proj"),
             lambda c: (c.d_model, 3 * c.d_model), _split_qkv, _fuse_qkv),
        Rule(h + "attn.c_attn.bias", ("blocks/q_bias", "blocks/k_bias", "blocks/v_bias"),
             lambda c: (3 * c.d_model,), _split_qkv, _fuse_qkv),
        Rule(h + "attn.c_proj.weight", ("blocks/out_proj",), lambda c: (c.d_model, c.d_model)),
        vector_rule(h + "attn.c_proj.bias", "blocks/out_bias", d),
        vector_rule(h + "ln_2.weight", "blocks/ln_2_scale", d),
        vector_rule(h + "ln_2.bias", "blocks/ln_2_bias", d),
        Rule(h + "mlp.c_fc.weight", ("blocks/fc_in",), lambda c: (c.d_model, c.d_mlp)),
        vector_rule(h + "mlp.c_fc.bias", "blocks/fc_in_bias", f),
        Rule(h + "mlp.c_proj.weight", ("blocks/fc_out",), lambda c: (c.d_mlp, c.d_model)),
        vector_rule(h + "mlp.c_proj.bias", "blocks/fc_out_bias", d),
        vector_rule("transformer.ln_f.weight", "final/ln_f_scale", d),
        vector_rule("transformer.ln_f.bias", "final/ln_f_bias", d),
    )


def embed(params, cfg: GPT2Config, ids, ctx: base.Context):
    p = params["embed"]
    return p["wte"][ids] + p["wpe"][ctx.positions]


def attention_stage(p, cfg: GPT2Config, h, ctx: base.Context, select=None):
    x = base.layer_norm(h, p["ln_1_scale"], p["ln_1_bias"], cfg.layer_norm_eps)
    attn = base.self_attention(p, x, ctx, select, cfg.n_heads, cfg.n_heads, base.default_scale(cfg.head_dim))
    residual = base.gather_positions(h, select) + attn
    return residual, base.layer_norm(residual, p["ln_2_scale"], p["ln_2_bias"], cfg.layer_norm_eps)


def head(params, cfg: GPT2Config, h):
    return base.linear(base.final_layer_norm(params, cfg, h), params["embed"]["wte"].T)


FAMILY = base.Family(
    name="gpt2",
    hf_model_types=("gpt2",),
    taus=base.TWO_MATRIX_MLP_TAUS,
    embed=embed,
    attention_stage=attention_stage,
    mlp=base.biased_mlp,
    head=head,
    from_hf_config=from_hf_config,
    hf_rules=hf_rules,
    to_hf_config=to_hf_config,
    ignored_hf_keys=(r"transformer\.h\.\d+\.attn\.(masked_)?bias", r"lm_head\.weight"),
)
