"""GPT-2 port: logits parity with transformers and the exact state-dict round trip."""

import numpy as np
import pytest
import transformers

from laser_jax import load_model
from laser_jax.models import gpt2
from laser_jax.models.convert import to_hf_state
from tests.models.hf_tiny import random_batch, save_tiny, torch_logits


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gpt2")
    config = transformers.GPT2Config(vocab_size=97, n_positions=32, n_embd=32, n_layer=3, n_head=4)
    return save_tiny(transformers.GPT2LMHeadModel, config, directory), directory


def test_logits_match_transformers(tiny_gpt2):
    torch_model, directory = tiny_gpt2
    model = load_model(directory)
    ids, _ = random_batch(97)
    np.testing.assert_allclose(np.asarray(model.logits(ids)), torch_logits(torch_model, ids), atol=1e-4, rtol=0)


def test_padded_batch_matches_at_real_positions(tiny_gpt2):
    torch_model, directory = tiny_gpt2
    model = load_model(directory)
    ids, mask = random_batch(97, seed=1)
    ours = np.asarray(model.logits(ids, mask))
    theirs = torch_logits(torch_model, ids, mask)
    real = mask.astype(bool)
    assert np.abs(ours[real] - theirs[real]).max() <= 1e-4


def test_selected_positions_equal_full_logits(tiny_gpt2):
    _, directory = tiny_gpt2
    model = load_model(directory)
    ids, mask = random_batch(97, seed=2)
    select = np.array([[0, 5], [1, 7], [1, 1]])
    full = np.asarray(model.logits(ids, mask))
    picked = np.asarray(model.logits(ids, mask, select=select))
    np.testing.assert_allclose(picked, np.take_along_axis(full, select[..., None], axis=1), atol=1e-5, rtol=0)


def test_state_dict_round_trip_is_exact(tiny_gpt2):
    torch_model, directory = tiny_gpt2
    model = load_model(directory)
    state = to_hf_state(gpt2.hf_rules(model.config), model.config.n_layers, model.config, model.params)
    for name, tensor in torch_model.state_dict().items():
        if name in state:
            np.testing.assert_array_equal(state[name], tensor.numpy())
