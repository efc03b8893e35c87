"""Gemma 3 beyond the shared parity battery of ``test_parity.py`` (which runs its tiny cases):
the sweep on its local and global layers, Orbax and Hugging Face round trips, refused config fields.

The real Gemma 3 270M (4-bit GGUF) against transformers is in ``test_gemma3_270m.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import transformers

from laser_jax import laser
from laser_jax.checkpoint import edit_factors, restore, save, with_factors
from laser_jax.errors import ConfigError
from laser_jax.export import export_hf
from laser_jax.laser import Intervention
from laser_jax.models import gemma3
from laser_jax.sweep import SweepOptions, sweep
from tests.models.hf_tiny import TINY_FAMILY_VOCAB, random_batch, torch_logits
from tests.test_loading import raises_one_line
from tests.test_sweep import EXAMPLES, TOP_K, assert_matches_torch, assert_row_is_apply_then_forward, build, torch_scores

SLIDING, FULL = 0, 1  # layer 2 is sliding too, and the last layer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build("gemma3", tmp_path_factory.mktemp("gemma3"))


def test_the_tiny_model_has_both_layer_types_and_a_window_shorter_than_the_examples(tiny):
    cfg = tiny.model.config
    assert cfg.layer_types == ("sliding_attention", "full_attention", "sliding_attention")
    np.testing.assert_array_equal(tiny.model.params["blocks"]["sliding"], [True, False, True])
    assert max(len(e.prompt_ids) + len(e.answer_ids) - 1 for e in EXAMPLES) > cfg.sliding_window


def test_sweep_rows_on_local_and_global_layers_equal_apply_then_forward(tiny):
    """The engine's key check on the sliding layers (first and last block) and the global one, every τ kind."""
    steps = [Intervention(SLIDING, "k_proj", 0.5), Intervention(SLIDING, "fc_out", 0.2), Intervention(FULL, "v_proj", 0.3),
             Intervention(FULL, "fc_in", 0.1), Intervention(2, "out_proj", 0.4), Intervention(2, "fc_up", 0.25)]
    result = sweep(tiny.model, EXAMPLES, steps, options=SweepOptions(top_k=TOP_K))
    assert_matches_torch(result.base.scores, torch_scores(tiny.torch_model, EXAMPLES))
    for row in result.variants:
        assert_row_is_apply_then_forward(tiny.model, row)
        assert row.metrics["answer_nll"] != result.base.metrics["answer_nll"]


def test_exported_reduced_model_matches_transformers(tiny, tmp_path):
    model = laser.apply(tiny.model, [Intervention(SLIDING, "fc_in", 0.1), Intervention(FULL, "q_proj", 0.2)])
    out = export_hf(model, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    assert type(hf).__name__ == "Gemma3ForCausalLM"
    ids, mask = random_batch(TINY_FAMILY_VOCAB, length=13, seed=5)
    ours, theirs = np.asarray(model.logits(ids, mask)), torch_logits(hf, ids, mask)
    real = mask.astype(bool)
    assert np.abs(ours[real] - theirs[real]).max() <= 1e-4
    assert np.abs(ours - np.asarray(tiny.model.logits(ids, mask)))[real].max() > 1e-3  # the edit is really there


@pytest.mark.parametrize("factored", [False, True], ids=["dense", "factored"])
def test_orbax_round_trip_keeps_the_layer_types(tiny, tmp_path, factored):
    steps = [Intervention(FULL, "fc_up", 0.2)]
    factors = edit_factors(tiny.model, steps)
    model = with_factors(tiny.model, factors)
    again = restore(save(tmp_path / "ckpt", model, edits=steps, factors=factors if factored else None), tokenizer=False)
    assert again.config == model.config
    np.testing.assert_array_equal(again.params["blocks"]["sliding"], model.params["blocks"]["sliding"])
    ids, mask = random_batch(TINY_FAMILY_VOCAB, seed=6)
    np.testing.assert_array_equal(np.asarray(again.logits(ids, mask)), np.asarray(model.logits(ids, mask)))


def test_older_config_spellings_give_the_same_config():
    """transformers 4's flat rope fields and ``sliding_window_pattern`` mean what the per-layer-type ones mean."""
    cfg = gemma3.PRESETS["gemma3-270m"]
    hf = gemma3.to_hf_config(cfg)
    for field in ("rope_parameters", "layer_types"):
        hf.pop(field)
    assert gemma3.from_hf_config({**hf, "sliding_window_pattern": 6, "rope_scaling": None}) == cfg
    assert gemma3.from_hf_config(transformers.AutoConfig.for_model(**gemma3.to_hf_config(cfg)).to_dict()) == cfg


PRESET = gemma3.PRESETS["gemma3-270m"]
REFUSED = [
    ({"attn_logit_softcapping": 50.0}, "attn_logit_softcapping=50.0"),
    ({"final_logit_softcapping": 30.0}, "final_logit_softcapping=30.0"),
    ({"use_bidirectional_attention": True}, "use_bidirectional_attention=True"),
    ({"rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                          "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}, "rope_type='linear' for full_attention"),
    ({"rope_parameters": None, "rope_scaling": {"type": "linear", "factor": 8.0}}, "rope_type='linear' for full_attention"),
    ({"layer_types": ["sliding_attention"] * 17 + ["chunked_attention"]}, "layer_types"),
    ({"layer_types": ["full_attention"] * 17}, "layer_types"),
    ({"sliding_window": None}, "sliding_window=None"),
    ({"sliding_window": 0}, "sliding_window=0"),
    ({"attention_bias": True}, "attention_bias=True"),
    ({"num_key_value_heads": 3}, "num_key_value_heads=3"),
    ({"model_type": "gemma3"}, "model_type='gemma3'"),  # the multimodal wrapper: its text config is nested
]


@pytest.mark.parametrize("changes, named", REFUSED, ids=[f"{next(iter(c))}-{i}" for i, (c, _) in enumerate(REFUSED)])
def test_unimplemented_config_fields_are_refused(changes, named):
    hf = {**gemma3.to_hf_config(PRESET), **changes}
    error = raises_one_line(ConfigError, "gemma3", gemma3.from_hf_config, hf)
    assert named in str(error)
