"""LASER math: truncation against numpy's SVD, edge ranks, composition, apply, errors, factor cache."""

import gc

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from laser_jax.errors import InterventionError
from laser_jax.laser import (FactorCache, Intervention, apply, exact_svd, factors_for, randomized_svd, rank_for,
                             reconstruct, svd_float64, truncate)
from laser_jax.models.base import LowRank, layer_params, linear


@pytest.fixture(scope="module")
def model(tiny_gpt2):
    return tiny_gpt2


def blocks(model):
    return jax.tree.map(np.asarray, model.params["blocks"])


def test_truncate_matches_numpy_svd_at_every_k():
    matrix = np.random.default_rng(0).normal(size=(6, 9)).astype(np.float32)
    u, s, vt = np.linalg.svd(matrix.astype(np.float64), full_matrices=False)
    jitted = jax.jit(truncate)  # k is traced: one compile for every rank
    for wide in (matrix, matrix.T):  # both orientations (a wide matrix is factored as its transpose)
        expected_u, expected_vt = (u, vt) if wide is matrix else (vt.T, u.T)
        float64 = exact_svd(wide, svd_dtype="float64")
        for k in range(7):
            expected = (expected_u[:, :k] * s[:k]) @ expected_vt[:k]
            np.testing.assert_allclose(np.asarray(jitted(wide, k)), expected, atol=1e-5, rtol=0)
            np.testing.assert_allclose(np.asarray(reconstruct(float64, k)), expected, atol=1e-6, rtol=0)
    assert not np.asarray(jitted(matrix, 0)).any()


def test_float64_svd_matches_lapack_including_rank_deficient_matrices():
    rng = np.random.default_rng(2)
    for matrix in (rng.normal(size=(9, 4)), rng.normal(size=(6, 2)) @ rng.normal(size=(2, 11))):
        u, s, vt = svd_float64(matrix)
        np.testing.assert_allclose(s, np.linalg.svd(matrix, compute_uv=False), atol=1e-12)
        np.testing.assert_allclose((u * s) @ vt, matrix, atol=1e-12)
        np.testing.assert_allclose(vt @ vt.T, np.eye(len(s)), atol=1e-12)  # orthonormal even past the rank


@pytest.mark.parametrize("rho, shape, k", [(0.9, (768, 3072), 691), (0.01, (4096, 16384), 40), (0.0, (5, 7), 0),
                                           (1.0, (5, 7), 5), (0.5, (7, 5), 2), (0.29, (100, 100), 28)])
def test_rank_is_floor_of_rho_times_smaller_dimension(rho, shape, k):
    assert rank_for(rho, shape) == k == int(min(shape) * rho)


def test_rho_zero_gives_zero_and_rho_one_the_original_bit_for_bit(model):
    before = blocks(model)
    zero = apply(model, Intervention(1, "fc_in", 0.0))
    same = apply(model, [Intervention(1, "fc_in", 1.0), Intervention(2, "q_proj", 1.0)])
    assert not np.asarray(zero.params["blocks"]["fc_in"][1]).any()
    np.testing.assert_array_equal(np.asarray(zero.params["blocks"]["fc_in"][0]), before["fc_in"][0])
    for name, leaf in blocks(same).items():
        np.testing.assert_array_equal(leaf, before[name])
    for name, leaf in blocks(model).items():  # the input model is never mutated
        np.testing.assert_array_equal(leaf, before[name])


def test_apply_equals_numpy_truncation(model):
    edited = apply(model, Intervention(2, "fc_out", 0.3))
    matrix = np.asarray(model.params["blocks"]["fc_out"][2], np.float64)
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    k = rank_for(0.3, matrix.shape)
    np.testing.assert_allclose(np.asarray(edited.params["blocks"]["fc_out"][2]), (u[:, :k] * s[:k]) @ vt[:k], atol=2e-5)


def test_composition_of_different_matrices_is_order_independent(model):
    steps = [Intervention(1, "fc_in", 0.3), Intervention(1, "q_proj", 0.5), Intervention(2, "fc_out", 0.2),
             Intervention(0, "v_proj", 0.0)]
    together = blocks(apply(model, steps))
    one_by_one = model
    for step in reversed(steps):
        one_by_one = apply(one_by_one, step)
    for name, leaf in blocks(one_by_one).items():
        np.testing.assert_array_equal(leaf, together[name])


def test_repeated_steps_on_one_matrix_keep_the_smaller_rank(model):
    expected = np.asarray(apply(model, Intervention(1, "fc_in", 0.2)).params["blocks"]["fc_in"][1])
    both = apply(model, [Intervention(1, "fc_in", 0.5), Intervention(1, "fc_in", 0.2)])
    np.testing.assert_array_equal(np.asarray(both.params["blocks"]["fc_in"][1]), expected)
    chained = apply(apply(model, Intervention(1, "fc_in", 0.5)), Intervention(1, "fc_in", 0.2))
    np.testing.assert_allclose(np.asarray(chained.params["blocks"]["fc_in"][1]), expected, atol=1e-5)


def test_group_tau_truncates_each_member_of_the_family(model):
    group = blocks(apply(model, Intervention(2, "mlp", 0.25)))
    members = blocks(apply(model, [Intervention(2, "fc_in", 0.25), Intervention(2, "fc_out", 0.25)]))
    for name, leaf in group.items():
        np.testing.assert_array_equal(leaf, members[name])
    assert (group["q_proj"] == blocks(model)["q_proj"]).all()


@pytest.mark.parametrize("make", [
    lambda: Intervention(0, "mlp_in", 0.5),
    lambda: Intervention(0, "fc_in", -0.1),
    lambda: Intervention(0, "fc_in", 1.5),
    lambda: Intervention(0, "fc_in", float("nan")),
    lambda: Intervention(0.5, "fc_in", 0.5),
], ids=["unknown-tau", "rho-negative", "rho-above-one", "rho-nan", "layer-not-int"])
def test_invalid_interventions_are_one_line_errors(make):
    with pytest.raises(InterventionError) as error:
        make()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("step, words", [(Intervention(3, "fc_in", 0.5), "out of range"),
                                         (Intervention(-1, "fc_in", 0.5), "out of range"),
                                         (Intervention(0, "fc_up", 0.5), "has no 'fc_up'")])
def test_apply_refuses_steps_the_model_cannot_take(model, step, words):
    with pytest.raises(InterventionError, match=words) as error:
        apply(model, [Intervention(0, "fc_in", 0.5), step])
    assert "\n" not in str(error.value)


def test_factored_apply_stores_a_low_rank_stack_only_when_every_layer_is_cut(model):
    steps = [Intervention(layer, "fc_in", rho) for layer, rho in enumerate((0.5, 0.25, 0.0))]
    factored = apply(model, steps, factored=True)
    dense = apply(model, steps)
    stack = factored.params["blocks"]["fc_in"]
    assert isinstance(stack, LowRank) and stack.s.shape == (3, rank_for(0.5, (32, 128)))
    np.testing.assert_allclose(np.asarray(stack.dense()), np.asarray(dense.params["blocks"]["fc_in"]), atol=1e-5)
    x = np.random.default_rng(0).normal(size=(2, 32)).astype(np.float32)
    through_factors = linear(x, layer_params(factored.params, 1)["fc_in"])  # how a family multiplies by it
    np.testing.assert_allclose(np.asarray(through_factors), x @ np.asarray(dense.params["blocks"]["fc_in"][1]), atol=1e-5)
    partial = apply(model, steps[:2], factored=True)
    assert not isinstance(partial.params["blocks"]["fc_in"], LowRank)


def test_randomized_svd_is_seeded_and_exact_on_a_low_rank_matrix():
    rng = np.random.default_rng(1)
    matrix = (rng.normal(size=(8, 3)) @ rng.normal(size=(3, 12))).astype(np.float32)
    first = randomized_svd(matrix, 3, jax.random.key(7))
    again = randomized_svd(matrix, 3, jax.random.key(7))
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(np.asarray(first.dense()), matrix, atol=1e-4)
    u, s, v = torch.svd_lowrank(torch.tensor(matrix), q=3, niter=2)
    np.testing.assert_allclose(np.asarray(first.s), s.numpy(), rtol=1e-4)
    assert randomized_svd(matrix, 0, jax.random.key(7)).dense().shape == matrix.shape


def test_randomized_apply_needs_a_key(model):
    with pytest.raises(InterventionError, match="explicit key"):
        apply(model, Intervention(1, "fc_in", 0.5), method="randomized")


def test_non_finite_svd_output_is_reported():
    matrix = jnp.ones((4, 5)).at[1, 2].set(jnp.nan)
    with pytest.raises(InterventionError, match="non-finite"):
        exact_svd(matrix, where="layer 1 fc_in")


def test_factor_cache_computes_once_and_forgets_collected_models(model):
    cache = FactorCache()
    copy = model.replace()
    first = factors_for(copy, 1, "fc_in", cache=cache)
    assert factors_for(copy, 1, "fc_in", cache=cache) is first and len(cache) == 1
    factors_for(copy, 1, "fc_in", svd_dtype="float64", cache=cache)
    assert len(cache) == 2
    del copy, first
    gc.collect()
    assert len(cache) == 0


def test_factor_cache_evicts_least_recently_used_beyond_its_budget(model):
    cache = FactorCache(max_bytes=1)
    factors_for(model, 0, "fc_in", cache=cache)
    latest = factors_for(model, 1, "fc_in", cache=cache)
    assert len(cache) == 1 and factors_for(model, 1, "fc_in", cache=cache) is latest
