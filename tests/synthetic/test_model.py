"""The synthetic family: a laser_jax model with τ-named matrices, its options, and attention probabilities."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from laser_jax.errors import ConfigError
from laser_jax.models import FAMILIES, base, get_family
from synthetic import model as M

CFG = M.SyntheticConfig(vocab_size=11, seq_len=12, d_model=8, mlp_ratio=2)
IDS = jax.random.randint(jax.random.PRNGKey(3), (3, 12), 0, 11)


def test_family_is_synthetic_found_by_name_and_not_registered():
    fam = M.family(CFG)
    assert fam.name == "synthetic" and "synthetic" not in FAMILIES  # the registry holds Hugging Face ports only
    assert get_family("synthetic") is fam  # so laser_jax.load_model restores its checkpoints
    assert get_family("synthetic-learned-q-no-ff").taus == ("q_proj", "k_proj", "v_proj", "out_proj")
    with pytest.raises(ConfigError, match="unknown model family 'synthetic-x'"):
        get_family("synthetic-x")
    assert fam.taus == ("k_proj", "v_proj", "out_proj", "fc_in", "fc_out")
    assert M.family(dataclasses.replace(CFG, learned_q=True)).taus[0] == "q_proj"
    assert M.family(dataclasses.replace(CFG, ff=("none", "none"))).taus == ("k_proj", "v_proj", "out_proj")


@pytest.mark.parametrize("changes", [{}, {"learned_q": True, "layer_norm": True, "n_heads": 2, "residual": False,
                                          "ff": ("none", "linear")}])
def test_options_run_and_select_matches_full(changes):
    cfg = dataclasses.replace(CFG, **changes)
    params = M.init_params(jax.random.PRNGKey(0), cfg)
    model = M.as_model(cfg, params)
    full = np.asarray(model.logits(IDS))
    assert full.shape == (3, 12, 11) and np.isfinite(full).all()
    select = jnp.asarray([[1, 5], [0, 11], [7, 7]])
    np.testing.assert_allclose(np.asarray(model.logits(IDS, select=select)),
                               np.take_along_axis(full, np.asarray(select)[..., None], 1), atol=1e-5)


def test_no_ff_layer_ignores_its_matrices():
    cfg = dataclasses.replace(CFG, ff=("none", "relu"))
    params = M.init_params(jax.random.PRNGKey(0), cfg)
    model = M.as_model(cfg, params)
    other = model.with_matrix(0, "fc_out", jnp.ones((16, 8)))
    np.testing.assert_array_equal(np.asarray(model.logits(IDS)), np.asarray(other.logits(IDS)))


def test_matrices_are_in_out_and_paper_init():
    params = M.init_params(jax.random.PRNGKey(0), CFG)
    model = M.as_model(CFG, params)
    assert model.matrix(1, "fc_in").shape == (8, 16) and model.matrix(1, "fc_out").shape == (16, 8)
    assert np.abs(np.asarray(params["blocks"]["fc_out"])).max() <= 1 / np.sqrt(16)
    assert abs(float(params["embed"]["tok"].std()) - 1) < 0.3


@jax.jit
def _first_layer_probs(params):
    ctx = base.make_context(IDS)
    return M.attention_probs(base.layer_params(params, 0), CFG, M.embed(params, CFG, IDS, ctx), ctx)


def test_attention_probs_are_causal_distributions():
    probs = np.asarray(_first_layer_probs(M.init_params(jax.random.PRNGKey(0), CFG)))[:, :, 0]
    np.testing.assert_allclose(probs.sum(-1), 1, atol=1e-5)
    assert np.abs(np.triu(probs, 1)).max() == 0


def test_bad_config_is_refused():
    with pytest.raises(ConfigError):
        M.SyntheticConfig(ff=("gelu", "relu"))
