"""Every family against transformers, on tiny random checkpoints.

Each case is a tiny random Hugging Face model saved to disk and loaded with
``load_model``. Weights use ``initializer_range=0.2`` so that attention is far
from uniform: with the default 0.02 a wrong rotary layout moves the logits by
less than the 1e-4 tolerance.
"""

from __future__ import annotations

import dataclasses
import json
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest
import transformers
from safetensors.numpy import load_file, save_file

from laser_jax import load_model
from laser_jax.model import Model
from laser_jax.models.convert import to_hf_state
from tests.models.hf_tiny import GEMMA3_LOCAL_GLOBAL, random_batch, save_tiny, torch_logits

VOCAB = 97
ATOL = 1e-4  # float32 parity; never loosen
COMMON = dict(vocab_size=VOCAB, initializer_range=0.2, bos_token_id=1, eos_token_id=2)
NEOX = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=32)
LLAMA = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, max_position_embeddings=32)

# case name -> (model class, config class, config fields)
CASES = {
    "gpt2": (transformers.GPT2LMHeadModel, transformers.GPT2Config, dict(n_positions=32, n_embd=32, n_layer=3, n_head=4)),
    "gpt_neox-parallel-rotary0.25": (transformers.GPTNeoXForCausalLM, transformers.GPTNeoXConfig,
                                     dict(NEOX, rotary_pct=0.25, use_parallel_residual=True)),
    "gpt_neox-sequential-rotary0.5-tied": (transformers.GPTNeoXForCausalLM, transformers.GPTNeoXConfig,
                                           dict(NEOX, rotary_pct=0.5, use_parallel_residual=False, hidden_act="gelu_new",
                                                rotary_emb_base=500, tie_word_embeddings=True)),
    "gptj-rotary4of8": (transformers.GPTJForCausalLM, transformers.GPTJConfig,
                        dict(n_positions=32, n_embd=32, n_layer=2, n_head=4, rotary_dim=4)),
    "llama-gqa": (transformers.LlamaForCausalLM, transformers.LlamaConfig, dict(LLAMA, num_key_value_heads=2)),
    "llama-tied-mqa": (transformers.LlamaForCausalLM, transformers.LlamaConfig,
                       dict(LLAMA, num_key_value_heads=1, tie_word_embeddings=True, rope_theta=500.0)),
    "llama-head_dim16": (transformers.LlamaForCausalLM, transformers.LlamaConfig, dict(LLAMA, num_key_value_heads=2, head_dim=16)),
    "mistral-no-window": (transformers.MistralForCausalLM, transformers.MistralConfig,
                          dict(LLAMA, num_key_value_heads=2, sliding_window=None)),
    "mistral-window3": (transformers.MistralForCausalLM, transformers.MistralConfig,
                        dict(LLAMA, num_key_value_heads=2, sliding_window=3)),
    "gemma3-local-global": (transformers.Gemma3ForCausalLM, transformers.Gemma3TextConfig,
                            dict(LLAMA, num_hidden_layers=3, **GEMMA3_LOCAL_GLOBAL)),
    "gemma3-untied-gqa-default-rope": (transformers.Gemma3ForCausalLM, transformers.Gemma3TextConfig,
                                       dict(LLAMA, num_key_value_heads=2, head_dim=16, sliding_window=5,
                                            layer_types=["full_attention", "sliding_attention"], tie_word_embeddings=False)),
}


class Tiny(NamedTuple):
    torch_model: object
    directory: object
    model: Model


def load_case(cases: dict, name: str, tmp_path_factory) -> Tiny:
    """Save case ``name`` of ``cases`` as a tiny random checkpoint and load it with ``load_model``."""
    model_cls, config_cls, fields = cases[name]
    directory = tmp_path_factory.mktemp(name)
    torch_model = save_tiny(model_cls, config_cls(**COMMON, **fields), directory)
    return Tiny(torch_model, directory, load_model(directory))


@pytest.fixture(scope="module", params=list(CASES))
def tiny(request, tmp_path_factory) -> Tiny:
    return load_case(CASES, request.param, tmp_path_factory)


def max_diff_at_real_positions(ours, theirs, mask=None) -> float:
    real = np.ones(ours.shape[:2], bool) if mask is None else mask.astype(bool)
    return float(np.abs(np.asarray(ours, np.float32)[real] - np.asarray(theirs, np.float32)[real]).max())


def test_logits_match_transformers(tiny):
    ids, _ = random_batch(VOCAB)
    assert max_diff_at_real_positions(tiny.model.logits(ids), torch_logits(tiny.torch_model, ids)) <= ATOL


def test_padded_batch_matches_at_real_positions(tiny):
    ids, mask = random_batch(VOCAB, seed=1)
    ours = tiny.model.logits(ids, mask)
    assert max_diff_at_real_positions(ours, torch_logits(tiny.torch_model, ids, mask), mask) <= ATOL


def test_selected_positions_equal_full_logits(tiny):
    ids, mask = random_batch(VOCAB, seed=2)
    select = np.array([[0, 5], [1, 7], [1, 1]])
    full = np.asarray(tiny.model.logits(ids, mask))
    picked = np.asarray(tiny.model.logits(ids, mask, select=select))
    np.testing.assert_allclose(picked, np.take_along_axis(full, select[..., None], axis=1), atol=1e-5, rtol=0)


def test_state_dict_round_trip_is_exact(tiny):
    """``to_hf_state`` gives back exactly the tensors transformers saved, under the same names."""
    model = tiny.model
    ours = to_hf_state(model.family.hf_rules(model.config), model.config.n_layers, model.config, model.params)
    saved = load_file(str(tiny.directory / "model.safetensors"))
    assert sorted(ours) == sorted(saved)
    for name, array in saved.items():
        np.testing.assert_array_equal(ours[name], array, err_msg=name)


def test_config_round_trip(tiny):
    family, cfg = tiny.model.family, tiny.model.config
    hf = family.to_hf_config(cfg)
    assert family.from_hf_config(hf) == cfg
    assert family.from_hf_config(transformers.AutoConfig.for_model(**hf).to_dict()) == cfg


def test_transformers_rebuilds_the_model_from_our_config_and_state(tiny, tmp_path):
    """``to_hf_config`` + ``to_hf_state`` are a checkpoint transformers loads into the same model."""
    model = tiny.model
    (tmp_path / "config.json").write_text(json.dumps(model.family.to_hf_config(model.config)))
    state = to_hf_state(model.family.hf_rules(model.config), model.config.n_layers, model.config, model.params)
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    rebuilt = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    ids, _ = random_batch(VOCAB, seed=3)
    np.testing.assert_array_equal(torch_logits(rebuilt, ids), torch_logits(tiny.torch_model, ids))


@pytest.mark.parametrize("tiny", ["mistral-window3", "gemma3-local-global"], indirect=True)
def test_sliding_window_changes_exactly_the_positions_past_it(tiny):
    """The window the parity tests pass with is really applied: without it only positions >= window change."""
    window = tiny.model.config.sliding_window
    unwindowed = tiny.model.replace(config=dataclasses.replace(tiny.model.config, sliding_window=10**6))
    ids, _ = random_batch(VOCAB)
    ours, wide = np.asarray(tiny.model.logits(ids)), np.asarray(unwindowed.logits(ids))
    np.testing.assert_allclose(ours[:, :window], wide[:, :window], atol=1e-6, rtol=0)
    assert np.abs(ours[:, window:] - wide[:, window:]).max(-1).min() > 1e-3


HALF_TOLERANCE = {jnp.bfloat16: 0.03, jnp.float16: 0.006}  # of the largest |logit|; measured ~0.018 and ~0.003


@pytest.mark.parametrize("tiny", ["gpt2", "gpt_neox-parallel-rotary0.25", "gptj-rotary4of8", "llama-gqa"], indirect=True)
@pytest.mark.parametrize("dtype", list(HALF_TOLERANCE))
def test_half_precision_params_compute_in_half_and_agree(tiny, dtype):
    ids, mask = random_batch(VOCAB, seed=4)
    half = load_model(tiny.directory, dtype=dtype, tokenizer=False)
    assert half.dtype == dtype
    logits = half.logits(ids, mask)
    assert logits.dtype == dtype  # the whole forward ran in half precision
    full = np.asarray(tiny.model.logits(ids, mask))
    assert max_diff_at_real_positions(logits, full, mask) <= HALF_TOLERANCE[dtype] * np.abs(full).max()
    same_top = np.asarray(logits, np.float32).argmax(-1) == full.argmax(-1)
    assert same_top[mask.astype(bool)].mean() >= 0.9
