"""Qwen2, Qwen3 and Phi against transformers, on tiny random checkpoints; their presets and refused config fields.

The parity checks are :mod:`tests.models.test_parity`'s own test functions,
collected here again with this module's ``tiny`` fixture (the cases below).
"""

from __future__ import annotations

import numpy as np
import pytest
import transformers

from laser_jax import laser, load_model
from laser_jax.errors import ConfigError
from laser_jax.export import export_hf
from laser_jax.laser import Intervention
from laser_jax.models import get_family, phi, qwen2, qwen3
from tests.models.hf_tiny import random_batch, torch_logits
from tests.models.test_parity import (ATOL, LLAMA, VOCAB, Tiny, load_case, max_diff_at_real_positions,  # noqa: F401
                                      test_config_round_trip, test_logits_match_transformers,
                                      test_padded_batch_matches_at_real_positions, test_selected_positions_equal_full_logits,
                                      test_state_dict_round_trip_is_exact,
                                      test_transformers_rebuilds_the_model_from_our_config_and_state)

PHI = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=32)

# case name -> (model class, config class, config fields)
CASES = {
    "qwen2-gqa": (transformers.Qwen2ForCausalLM, transformers.Qwen2Config, dict(LLAMA, num_key_value_heads=2)),
    "qwen2-tied-mqa": (transformers.Qwen2ForCausalLM, transformers.Qwen2Config,
                       dict(LLAMA, num_key_value_heads=1, tie_word_embeddings=True, rope_theta=500.0)),
    "qwen3-head_dim16": (transformers.Qwen3ForCausalLM, transformers.Qwen3Config,  # heads * head_dim = 64 != d = 32
                         dict(LLAMA, num_key_value_heads=2, head_dim=16)),
    "qwen3-tied-attention_bias": (transformers.Qwen3ForCausalLM, transformers.Qwen3Config,
                                  dict(LLAMA, num_key_value_heads=4, head_dim=8, attention_bias=True, tie_word_embeddings=True)),
    "phi-rotary0.5": (transformers.PhiForCausalLM, transformers.PhiConfig, dict(PHI, partial_rotary_factor=0.5)),
    "phi-rotary0.4-gqa": (transformers.PhiForCausalLM, transformers.PhiConfig,  # Phi-2's factor on 10-wide heads
                          dict(PHI, hidden_size=40, partial_rotary_factor=0.4, num_key_value_heads=2, rope_theta=500.0,
                               hidden_act="gelu")),
}


@pytest.fixture(scope="module", params=list(CASES))
def tiny(request, tmp_path_factory) -> Tiny:
    return load_case(CASES, request.param, tmp_path_factory)


def test_family_and_matrix_shapes(tiny):
    """The loaded family is the checkpoint's, and the LASER matrices have the HF projections' shapes."""
    model, hf = tiny.model, tiny.torch_model.config
    assert model.family is get_family(hf.model_type)
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    assert model.matrix(0, "q_proj").shape == (hf.hidden_size, hf.num_attention_heads * head_dim)
    assert model.matrix(0, "k_proj").shape == (hf.hidden_size, hf.num_key_value_heads * head_dim)
    assert model.matrix(0, "out_proj").shape == (hf.num_attention_heads * head_dim, hf.hidden_size)
    assert model.matrix(1, "fc_out").shape == (hf.intermediate_size, hf.hidden_size)


def test_exported_reduced_model_matches_transformers(tiny, tmp_path):
    """``apply`` an attention and an MLP edit, export, load in transformers: the same logits, and the edit is there."""
    edits = [Intervention(1, "fc_out", 0.1), Intervention(0, "v_proj", 0.25)]
    reduced = laser.apply(tiny.model, edits)
    out = export_hf(reduced, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    assert type(hf) is type(tiny.torch_model)
    ids, mask = random_batch(VOCAB, seed=5)
    ours = np.asarray(reduced.logits(ids, mask))
    assert max_diff_at_real_positions(ours, torch_logits(hf, ids, mask), mask) <= ATOL
    assert max_diff_at_real_positions(ours, np.asarray(tiny.model.logits(ids, mask)), mask) > 1e-3
    again = load_model(out, tokenizer=False)
    assert again.config == reduced.config
    np.testing.assert_array_equal(np.asarray(again.matrix(1, "fc_out")), np.asarray(reduced.matrix(1, "fc_out")))


@pytest.mark.parametrize("module, sizes", [
    (qwen2, {"qwen2-0.5b": 494_032_768, "qwen2-7b": 7_615_616_512, "qwen2.5-3b": 3_085_938_688}),
    (qwen3, {"qwen3-0.6b": 596_049_920, "qwen3-8b": 8_190_735_360}),
    (phi, {"phi-1.5": 1_418_270_720, "phi-2": 2_779_683_840}),
])
def test_presets_have_the_released_parameter_counts(module, sizes):
    """Each preset's conversion table adds up to the parameter count of the released checkpoint."""
    for name, count in sizes.items():
        cfg = module.PRESETS[name]
        assert module.from_hf_config(module.to_hf_config(cfg)) == cfg
        total = sum(int(np.prod(rule.shape(cfg))) * (cfg.n_layers if rule.per_layer else 1) for rule in module.hf_rules(cfg))
        assert total == count, name


REFUSED = [
    ("qwen2", dict(use_sliding_window=True), "qwen2: unsupported config use_sliding_window=True"),
    ("qwen2", dict(layer_types=["full_attention", "sliding_attention"]), "qwen2: unsupported config layer_types="),
    ("qwen2", dict(rope_scaling={"rope_type": "yarn", "factor": 4.0}), "qwen2: unsupported config rope_type='yarn'"),
    ("qwen2", dict(use_mrope=True), "qwen2: unsupported config use_mrope=True"),
    ("qwen3", dict(use_sliding_window=True), "qwen3: unsupported config use_sliding_window=True"),
    ("qwen3", dict(num_key_value_heads=3), "qwen3: unsupported config num_key_value_heads=3"),
    ("qwen3", dict(hidden_act="tanh"), "qwen3: unsupported config hidden_act='tanh'"),
    ("phi", dict(tie_word_embeddings=True), "phi: unsupported config tie_word_embeddings=True"),
    ("phi", dict(qk_layernorm=True), "phi: unsupported config qk_layernorm=True"),
    ("phi", dict(partial_rotary_factor=0.375), "phi: unsupported config partial_rotary_factor=0.375"),  # 3 of 8 features
    ("phi", dict(head_dim=16), "phi: unsupported config head_dim=16 with hidden_size=32 over 4 heads"),
    ("phi", dict(rope_scaling={"rope_type": "linear", "factor": 2.0}), "phi: unsupported config rope_type='linear'"),
]


@pytest.mark.parametrize("family, change, message", REFUSED, ids=[f"{f}-{next(iter(c))}" for f, c, _ in REFUSED])
def test_unported_config_fields_are_one_line_errors(family, change, message):
    fam = get_family(family)
    fam.from_hf_config(tiny_hf_config(family))  # accepted without the change
    hf = {**tiny_hf_config(family), **change}
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace("[", r"\[")) as error:
        fam.from_hf_config(hf)
    assert "\n" not in str(error.value)


def tiny_hf_config(family: str) -> dict:
    fields = dict(PHI) if family == "phi" else dict(LLAMA, num_key_value_heads=2)
    return {"model_type": family, "vocab_size": VOCAB, **fields}


def test_released_config_json_is_accepted():
    """Qwen2.5-0.5B's config.json as published (sliding_window set but off, use_mrope false) loads as the preset."""
    released = {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151643,
        "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02, "intermediate_size": 4864,
        "max_position_embeddings": 32768, "max_window_layers": 24, "model_type": "qwen2", "num_attention_heads": 14,
        "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "sliding_window": 32768, "tie_word_embeddings": True, "torch_dtype": "bfloat16", "use_cache": True,
        "use_mrope": False, "use_sliding_window": False, "vocab_size": 151936,
    }
    assert qwen2.from_hf_config(released) == qwen2.PRESETS["qwen2.5-0.5b"]


@pytest.mark.parametrize("family, config_cls", [("qwen2", transformers.Qwen2Config), ("qwen3", transformers.Qwen3Config),
                                                ("phi", transformers.PhiConfig)])
def test_head_dim_default_is_transformers(family, config_cls):
    """Without a ``head_dim`` field Qwen2 and Phi split hidden_size over the heads, Qwen3 uses its fixed default of 128."""
    hf = tiny_hf_config(family)
    cfg = get_family(family).from_hf_config(hf)
    reference = config_cls(**{k: v for k, v in hf.items() if k != "model_type"})
    assert cfg.head_dim == (getattr(reference, "head_dim", None) or reference.hidden_size // reference.num_attention_heads)
    assert cfg.head_dim == (128 if family == "qwen3" else 8)
