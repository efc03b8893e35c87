"""GPT-NeoX (Pythia): partial rotary, fused per-head ``query_key_value``, parallel or sequential residual.

Hugging Face's fused ``query_key_value`` (3d, d) has its output rows grouped
per head: ``view(heads, 3, head_dim)``, so head ``i`` owns rows
``[3i*hd, 3(i+1)*hd)`` as ``q, k, v``. We split it into ``q_proj``, ``k_proj``
and ``v_proj`` (d x d each, outputs head-major so :func:`base.split_heads`
applies) and interleave them back exactly at export. RoPE (``rotate_half``)
rotates the first ``rotary_pct`` of each head's features.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from laser_jax.models import base
from laser_jax.models.convert import Rule, linear_rule, vector_rule


@dataclasses.dataclass(frozen=True)
class GPTNeoXConfig:
    vocab_size: int = 50304
    max_position_embeddings: int = 2048
    d_model: int = 512
    n_layers: int = 6
    n_heads: int = 8
    d_mlp: int = 2048
    layer_norm_eps: float = 1e-5
    rotary_pct: float = 0.25
    rotary_base: float = 10000.0
    parallel_residual: bool = True
    activation: str = "gelu"
    tie_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.rotary_pct)


PRESETS = {
    "pythia-70m": GPTNeoXConfig(),
    "pythia-160m": GPTNeoXConfig(d_model=768, n_layers=12, n_heads=12, d_mlp=3072),
    "pythia-410m": GPTNeoXConfig(d_model=1024, n_layers=24, n_heads=16, d_mlp=4096),
    "pythia-1b": GPTNeoXConfig(d_model=2048, n_layers=16, n_heads=8, d_mlp=8192),
    "pythia-1.4b": GPTNeoXConfig(d_model=2048, n_layers=24, n_heads=16, d_mlp=8192),
    "pythia-2.8b": GPTNeoXConfig(d_model=2560, n_layers=32, n_heads=32, d_mlp=10240),
    "pythia-6.9b": GPTNeoXConfig(vocab_size=50432, d_model=4096, n_layers=32, n_heads=32, d_mlp=16384),
    "pythia-12b": GPTNeoXConfig(vocab_size=50688, d_model=5120, n_layers=36, n_heads=40, d_mlp=20480),
}


def from_hf_config(hf: dict) -> GPTNeoXConfig:
    name = "gpt_neox"
    base.require(hf, "hidden_act", tuple(base.ACTIVATIONS), name, "gelu")
    base.require(hf, "attention_bias", True, name, True)
    base.require(hf, "use_parallel_residual", (True, False), name, True)
    base.require(hf, "tie_word_embeddings", (True, False), name, False)
    theta, fraction = base.rope_settings(hf, name, "rotary_emb_base", "rotary_pct", 10000.0, 0.25)
    cfg = GPTNeoXConfig(
        vocab_size=hf["vocab_size"],
        max_position_embeddings=hf.get("max_position_embeddings", 2048),
        d_model=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=hf["num_attention_heads"],
        d_mlp=hf["intermediate_size"],
        layer_norm_eps=hf.get("layer_norm_eps", 1e-5),
        rotary_pct=fraction,
        rotary_base=theta,
        parallel_residual=hf.get("use_parallel_residual", True),
        activation=hf.get("hidden_act", "gelu"),
        tie_embeddings=hf.get("tie_word_embeddings", False),
    )
    if cfg.d_model % cfg.n_heads or cfg.rotary_dim % 2:
        raise base.ConfigError(f"{name}: unsupported config: hidden_size={cfg.d_model} over {cfg.n_heads} heads with rotary_pct={fraction} gives an odd or fractional rotary dimension")
    return cfg


def to_hf_config(cfg: GPTNeoXConfig) -> dict:
    return {
        "model_type": "gpt_neox",
        "architectures": ["GPTNeoXForCausalLM"],
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "intermediate_size": cfg.d_mlp,
        "layer_norm_eps": cfg.layer_norm_eps,
        # both spellings: transformers >= 5 reads rope_parameters, older versions the flat fields
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rotary_base, "partial_rotary_factor": cfg.rotary_pct},
        "rotary_pct": cfg.rotary_pct,
        "rotary_emb_base": cfg.rotary_base,
        "use_parallel_residual": cfg.parallel_residual,
        "hidden_act": cfg.activation,
        "attention_bias": True,
        "tie_word_embeddings": cfg.tie_embeddings,
    }


def _split_qkv(array, cfg: GPTNeoXConfig):
    """(3d, ...) rows grouped [head, q|k|v, head_dim] -> q, k, v; matrices become (in, out)."""
    grouped = array.reshape(cfg.n_heads, 3, cfg.head_dim, *array.shape[1:])
    parts = [grouped[:, i].reshape(cfg.d_model, *array.shape[1:]) for i in range(3)]
    return tuple(np.ascontiguousarray(part.T) for part in parts)


def _fuse_qkv(arrays, cfg: GPTNeoXConfig):
    rows = [np.asarray(a).T for a in arrays]  # each (d, ...), output features first
    grouped = np.stack([r.reshape(cfg.n_heads, cfg.head_dim, *r.shape[1:]) for r in rows], axis=1)
    return np.ascontiguousarray(grouped.reshape(3 * cfg.d_model, *rows[0].shape[1:]))


def hf_rules(cfg: GPTNeoXConfig) -> tuple[Rule, ...]:
    d, f = (lambda c: c.d_model), (lambda c: c.d_mlp)
    h = "gpt_neox.layers.{layer}."
    rules = (
        Rule("gpt_neox.embed_in.weight", ("embed/embed_in",), lambda c: (c.vocab_size, c.d_model)),
        vector_rule(h + "input_layernorm.weight", "blocks/ln_1_scale", d),
        vector_rule(h + "input_layernorm.bias", "blocks/ln_1_bias", d),
        Rule(h + "attention.query_key_value.weight", ("blocks/q_proj", "blocks/k_proj", "blocks/v_proj"),
             lambda c: (3 * c.d_model, c.d_model), _split_qkv, _fuse_qkv),
        Rule(h + "attention.query_key_value.bias", ("blocks/q_bias", "blocks/k_bias", "blocks/v_bias"),
             lambda c: (3 * c.d_model,), _split_qkv, _fuse_qkv),
        linear_rule(h + "attention.dense.weight", "blocks/out_proj", d, d),
        vector_rule(h + "attention.dense.bias", "blocks/out_bias", d),
        vector_rule(h + "post_attention_layernorm.weight", "blocks/ln_2_scale", d),
        vector_rule(h + "post_attention_layernorm.bias", "blocks/ln_2_bias", d),
        linear_rule(h + "mlp.dense_h_to_4h.weight", "blocks/fc_in", d, f),
        vector_rule(h + "mlp.dense_h_to_4h.bias", "blocks/fc_in_bias", f),
        linear_rule(h + "mlp.dense_4h_to_h.weight", "blocks/fc_out", f, d),
        vector_rule(h + "mlp.dense_4h_to_h.bias", "blocks/fc_out_bias", d),
        vector_rule("gpt_neox.final_layer_norm.weight", "final/ln_f_scale", d),
        vector_rule("gpt_neox.final_layer_norm.bias", "final/ln_f_bias", d),
    )
    if cfg.tie_embeddings:
        return rules
    return rules + (linear_rule("embed_out.weight", "final/embed_out", d, lambda c: c.vocab_size),)


def embed(params, cfg: GPTNeoXConfig, ids, ctx: base.Context):
    return params["embed"]["embed_in"][ids]


def attention_stage(p, cfg: GPTNeoXConfig, h, ctx: base.Context, select=None):
    x = base.layer_norm(h, p["ln_1_scale"], p["ln_1_bias"], cfg.layer_norm_eps)
    rotary = (cfg.rotary_dim, cfg.rotary_base, False)
    attn = base.self_attention(p, x, ctx, select, cfg.n_heads, cfg.n_heads, base.default_scale(cfg.head_dim), rotary)
    h = base.gather_positions(h, select)
    residual = h + attn
    mlp_input = h if cfg.parallel_residual else residual
    return residual, base.layer_norm(mlp_input, p["ln_2_scale"], p["ln_2_bias"], cfg.layer_norm_eps)


def head(params, cfg: GPTNeoXConfig, h):
    w = params["embed"]["embed_in"].T if cfg.tie_embeddings else params["final"]["embed_out"]
    return base.linear(base.final_layer_norm(params, cfg, h), w)


FAMILY = base.Family(
    name="gpt_neox",
    hf_model_types=("gpt_neox",),
    taus=base.TWO_MATRIX_MLP_TAUS,
    embed=embed,
    attention_stage=attention_stage,
    mlp=base.biased_mlp,
    head=head,
    from_hf_config=from_hf_config,
    hf_rules=hf_rules,
    to_hf_config=to_hf_config,
    ignored_hf_keys=(
        r"gpt_neox\.layers\.\d+\.attention\.(masked_)?bias",
        r"gpt_neox\.(layers\.\d+\.attention\.)?rotary_emb\.inv_freq",
        r"embed_out\.weight",  # present in some tied checkpoints; transformers ties it to embed_in
    ),
)
