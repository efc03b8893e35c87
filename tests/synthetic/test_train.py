"""Training: a step lowers the loss, frozen leaves stay put, seed-vmapping is exact, Orbax resume is exact."""

import jax
import numpy as np

from synthetic import data, train


def _allclose(a, b, atol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


def test_a_step_lowers_the_loss_on_its_batch(tiny):
    cfg, preset = tiny.cfg, tiny.preset
    state = train.init_states(cfg, preset.optim, [0])
    batch = data.sample_batch_jit(jax.random.fold_in(state.data_key[0], 0), tiny.sampler, preset.task,
                                  preset.optim.batch_size, preset.task.alpha)
    loss = jax.jit(train.loss_fn, static_argnums=1)
    new, reported = train.train_steps(state, tiny.sampler, 1, cfg=cfg, task=preset.task, optim=preset.optim)
    before = loss(train.seed_state(state, 0).params, cfg, batch)
    np.testing.assert_allclose(reported[0], before, rtol=1e-5)
    assert float(loss(train.seed_state(new, 0).params, cfg, batch)) < float(before)


def test_frozen_parameters_do_not_move(tiny, tiny_trained):
    start = train.init_states(tiny.cfg, tiny.preset.optim, [0, 1])
    _allclose(start.params["embed"], tiny_trained.params["embed"], 0)
    _allclose(start.params["final"], tiny_trained.params["final"], 0)
    _allclose(start.params["blocks"]["ff_gate"], tiny_trained.params["blocks"]["ff_gate"], 0)
    assert not np.allclose(start.params["blocks"]["fc_in"], tiny_trained.params["blocks"]["fc_in"])


def test_vmapped_seeds_equal_seeds_trained_alone(tiny, tiny_trained):
    for index, seed in enumerate((0, 1)):
        alone = train.init_states(tiny.cfg, tiny.preset.optim, [seed])
        alone, _ = train.train_steps(alone, tiny.sampler, 30, cfg=tiny.cfg, task=tiny.preset.task, optim=tiny.preset.optim)
        _allclose(train.seed_state(alone, 0), train.seed_state(tiny_trained, index), 1e-5)


def test_orbax_resume_equals_straight_training(tiny, tiny_trained, tmp_path):
    kwargs = dict(cfg=tiny.cfg, task=tiny.preset.task, optim=tiny.preset.optim)
    fresh = train.init_states(tiny.cfg, tiny.preset.optim, [0, 1])
    half, _ = train.train_steps(fresh, tiny.sampler, 12, **kwargs)
    path = train.save_checkpoint(tmp_path / "ckpt", half)
    restored = train.restore_checkpoint(path, fresh)
    assert int(restored.step[0]) == 12
    _allclose(restored, half, 0)
    resumed, _ = train.train_steps(restored, tiny.sampler, 18, **kwargs)
    _allclose(resumed, tiny_trained, 1e-6)
