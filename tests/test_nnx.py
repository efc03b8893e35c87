"""The Flax NNX view: same state as the model's pytree, split/merge, nnx.jit, fine-tuning with optax, back to a model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from laser_jax import laser, load_model
from laser_jax.laser import Intervention
from laser_jax.models.base import LowRank
from laser_jax.nnx import Factor, LaserModule
from tests.models.hf_tiny import TINY_FAMILY_VOCAB, random_batch, save_tiny_family

SAME = 1e-5  # two jitted float32 computations of the same forward


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    """A tiny Qwen2 (d = 32) with fc_up factored (rank 8 in every layer) and layer 2's q_proj truncated densely (rank 8)."""
    directory = tmp_path_factory.mktemp("qwen2-nnx")
    save_tiny_family("qwen2", directory)
    model = load_model(directory, tokenizer=False)
    steps = [Intervention(layer, "fc_up", 0.25) for layer in range(model.n_layers)] + [Intervention(2, "q_proj", 0.25)]
    return laser.apply(model, steps, factored=True)


@pytest.fixture(scope="module")
def batch():
    ids, mask = random_batch(TINY_FAMILY_VOCAB, batch=4, length=12, seed=7)
    return jnp.asarray(ids, jnp.int32), jnp.asarray(mask, bool)


def leaves_by_path(tree) -> dict:
    """Leaves keyed by their path of names (a LowRank's fields and a dict's keys alike)."""
    name = lambda key: getattr(key, "key", getattr(key, "name", key))  # noqa: E731
    return {tuple(map(name, path)): np.asarray(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def assert_same_tree(a, b):
    a, b = leaves_by_path(a), leaves_by_path(b)
    assert sorted(a) == sorted(b)
    for path, leaf in a.items():
        np.testing.assert_array_equal(leaf, b[path], err_msg=str(path))


def next_token_loss(module, ids, mask):
    logits = module(ids, mask)[:, :-1]
    weights = mask[:, 1:].astype(jnp.float32)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:])
    return (nll * weights).sum() / weights.sum()


def test_state_is_the_models_pytree_and_forward_is_the_same(reduced, batch):
    module = LaserModule(reduced)
    assert isinstance(reduced.params["blocks"]["fc_up"], LowRank)
    assert_same_tree(module.param_tree(), reduced.params)
    assert jax.tree.structure(module.param_tree()) == jax.tree.structure(reduced.params)  # LowRank stays LowRank
    assert_same_tree(nnx.to_pure_dict(nnx.state(module, nnx.Param))["params"], reduced.params)
    # the LowRank factors and nothing else are Factor parameters
    factors = nnx.to_pure_dict(nnx.state(module, Factor))["params"]
    assert list(factors) == ["blocks"] and list(factors["blocks"]) == ["fc_up"]
    assert {name: leaf.shape for name, leaf in factors["blocks"]["fc_up"].items()} == {"u": (3, 32, 8), "s": (3, 8), "vt": (3, 8, 48)}
    ids, mask = batch
    np.testing.assert_allclose(np.asarray(module(ids, mask)), np.asarray(reduced.logits(ids, mask)), atol=SAME, rtol=0)


def test_split_merge_and_jit(reduced, batch):
    module = LaserModule(reduced)
    ids, mask = batch
    graphdef, state = nnx.split(module)
    merged = nnx.merge(graphdef, state)
    assert_same_tree(merged.param_tree(), reduced.params)
    eager = np.asarray(module(ids, mask))
    np.testing.assert_array_equal(np.asarray(merged(ids, mask)), eager)
    jitted = nnx.jit(lambda m, ids, mask: m(ids, mask))(merged, ids, mask)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(reduced.logits(ids, mask)), atol=SAME, rtol=0)
    select = jnp.array([[3, 11], [0, 5], [1, 2], [4, 4]])
    picked = nnx.jit(lambda m, ids, mask, select: m(ids, mask, select))(module, ids, mask, select)
    np.testing.assert_allclose(np.asarray(picked), np.take_along_axis(eager, np.asarray(select)[..., None], axis=1), atol=SAME, rtol=0)


def fine_tune(module, wrt, batch, steps: int = 6, learning_rate: float = 0.01) -> list[float]:
    optimizer = nnx.Optimizer(module, optax.adam(learning_rate), wrt=wrt)

    @nnx.jit
    def train_step(module, optimizer, ids, mask):
        loss, grads = nnx.value_and_grad(next_token_loss, argnums=nnx.DiffState(0, wrt))(module, ids, mask)
        optimizer.update(module, grads)
        return loss

    losses = [float(train_step(module, optimizer, *batch)) for _ in range(steps)]
    return losses + [float(next_token_loss(module, *batch))]


def test_fine_tuning_a_reduced_model_lowers_the_loss_and_returns_a_model(reduced, batch):
    module = LaserModule(reduced)
    losses = fine_tune(module, nnx.Param, batch)
    start = float(next_token_loss(LaserModule(reduced), *batch))
    assert losses[0] == pytest.approx(start, abs=1e-5)  # the first step's loss is the reduced model's
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.25 * losses[0], losses  # measured: 5.60 -> 0.78 after 6 Adam steps at lr 0.01

    tuned = module.to_model()
    assert isinstance(tuned.params["blocks"]["fc_up"], LowRank)  # still factored, still rank 8
    assert tuned.params["blocks"]["fc_up"].s.shape == (3, 8)
    assert jax.tree.structure(tuned.params) == jax.tree.structure(reduced.params)
    ids, mask = batch
    np.testing.assert_allclose(np.asarray(tuned.logits(ids, mask)), np.asarray(module(ids, mask)), atol=SAME, rtol=0)
    assert not np.array_equal(np.asarray(tuned.matrix(0, "fc_out")), np.asarray(reduced.matrix(0, "fc_out")))
    assert np.asarray(reduced.params["blocks"]["fc_up"].s).min() >= 0  # the source model was not changed in place
    np.testing.assert_array_equal(np.asarray(LaserModule(reduced).param_tree()["blocks"]["fc_out"]),
                                  np.asarray(reduced.params["blocks"]["fc_out"]))


def test_fine_tuning_only_the_factors_leaves_every_other_parameter_bit_equal(reduced, batch):
    module = LaserModule(reduced)
    losses = fine_tune(module, Factor, batch)
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.75 * losses[0], losses  # measured: 5.60 -> 3.39 (the factors alone learn more slowly)
    tuned = module.to_model().params
    before = reduced.params
    for tau in ("fc_in", "fc_out", "q_proj", "k_proj"):
        np.testing.assert_array_equal(np.asarray(tuned["blocks"][tau]), np.asarray(before["blocks"][tau]))
    assert_same_tree(tuned["final"], before["final"])
    assert not np.array_equal(np.asarray(tuned["blocks"]["fc_up"].u), np.asarray(before["blocks"]["fc_up"].u))


def test_gemma3_layer_constants_are_kept_out_of_training(tmp_path, batch):
    """Gemma 3's per-layer ``sliding`` flags are a LayerConstant: nnx.Param training skips them and they stay put."""
    from laser_jax.nnx import LayerConstant

    save_tiny_family("gemma3", tmp_path)
    model = laser.apply(load_model(tmp_path, tokenizer=False), [Intervention(1, "fc_up", 0.25)], factored=True)
    module = LaserModule(model)
    assert isinstance(module.params["blocks"]["sliding"], LayerConstant)
    optimizer = nnx.Optimizer(module, optax.adam(1e-2), wrt=nnx.Param)
    losses = []
    for _ in range(3):
        loss, grads = nnx.value_and_grad(next_token_loss)(module, *batch)
        optimizer.update(module, grads)
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    np.testing.assert_array_equal(module.to_model().params["blocks"]["sliding"], model.params["blocks"]["sliding"])
