"""Training: optax optimizer with frozen leaves masked out, a jitted step vmapped over seeds,
Orbax checkpoints of the training state, and each seed's model as a laser-jax checkpoint.

Role: the train state, the loss, the step, and save/restore. Every seed's
state is stacked along a leading axis and :func:`train_steps` runs
``jax.vmap`` of one step over it inside one jitted call (a ``fori_loop``
over steps, so one compilation serves every chunk length). A seed's data
stream is ``fold_in(data_key, step)``, so training k steps, checkpointing,
restoring and training N - k more gives the same state as N steps straight.

Loss (official ``loss_head_only=True``): cross-entropy only at repeat-trigger
positions (count >= 2), averaged over those positions of the batch.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from synthetic import data
from synthetic.model import SyntheticConfig, as_model, forward, init_params, trainable_mask


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """The paper's optimizer: SGD, momentum 0.9, lr 0.03, weight decay 1e-4 (PyTorch-style, on the gradient)."""

    optimizer: str = "sgd"  # "sgd" or "adamw"
    learning_rate: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 512


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar (per seed when stacked)
    params: dict
    opt_state: optax.OptState
    data_key: jax.Array  # uint32 [2]: the seed's data stream


def optimizer(optim: OptimConfig) -> optax.GradientTransformation:
    if optim.optimizer == "sgd":
        return optax.chain(optax.add_decayed_weights(optim.weight_decay),
                           optax.sgd(optim.learning_rate, momentum=optim.momentum))
    if optim.optimizer == "adamw":
        return optax.adamw(optim.learning_rate, b1=0.9, b2=0.95, eps=1e-8, weight_decay=optim.weight_decay)
    raise ValueError(f"unknown optimizer {optim.optimizer!r} (sgd or adamw)")


def masked_optimizer(cfg: SyntheticConfig, optim: OptimConfig, params) -> optax.GradientTransformation:
    """The optimizer on trainable leaves; frozen leaves get zero updates and no state."""
    labels = jax.tree.map(lambda train: "train" if train else "frozen", trainable_mask(cfg, params))
    return optax.multi_transform({"train": optimizer(optim), "frozen": optax.set_to_zero()}, labels)


def init_state(cfg: SyntheticConfig, optim: OptimConfig, seed) -> TrainState:
    """One seed's state: parameters from ``PRNGKey(seed)``, its data stream from a split of it."""
    init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
    params = init_params(init_key, cfg)
    opt_state = masked_optimizer(cfg, optim, params).init(params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, data_key=data_key)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_states(cfg: SyntheticConfig, optim: OptimConfig, seeds: jax.Array) -> TrainState:
    return jax.vmap(lambda seed: init_state(cfg, optim, seed))(seeds)


def init_states(cfg: SyntheticConfig, optim: OptimConfig, seeds: Sequence[int]) -> TrainState:
    """The states of several seeds stacked on a leading axis (each equal to :func:`init_state` of its seed)."""
    return _init_states(cfg, optim, jnp.asarray(list(seeds), jnp.uint32))


def seed_state(states: TrainState, index: int) -> TrainState:
    return jax.tree.map(lambda leaf: leaf[index], states)


def repeat_cross_entropy(logits, targets, weights):
    """Mean cross-entropy over positions with weight 1 (0 elsewhere)."""
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
    return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def loss_fn(params, cfg: SyntheticConfig, batch: data.Batch):
    logits = forward(cfg, params, batch.inputs)
    return repeat_cross_entropy(logits, batch.targets, batch.repeat.astype(jnp.float32))


def train_step(state: TrainState, sampler: data.Sampler, cfg: SyntheticConfig, task: data.TaskConfig,
               optim: OptimConfig) -> tuple[TrainState, jax.Array]:
    """One SGD step of one seed on a fresh batch; returns the new state and the batch loss."""
    batch = data.sample_batch(jax.random.fold_in(state.data_key, state.step), sampler, task, optim.batch_size)
    loss, grads = jax.value_and_grad(loss_fn)(state.params, cfg, batch)
    tx = masked_optimizer(cfg, optim, state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), loss


@functools.partial(jax.jit, static_argnames=("cfg", "task", "optim"))
def train_steps(states: TrainState, sampler: data.Sampler, n_steps, *, cfg: SyntheticConfig,
                task: data.TaskConfig, optim: OptimConfig) -> tuple[TrainState, jax.Array]:
    """``n_steps`` (may vary without recompiling) steps of every seed, vmapped; returns the
    new stacked states and each seed's mean training loss over these steps."""
    step = jax.vmap(lambda s: train_step(s, sampler, cfg, task, optim))

    def body(_, carry):
        states, total = carry
        states, loss = step(states)
        return states, total + loss

    zeros = jnp.zeros(states.step.shape, jnp.float32)
    states, total = jax.lax.fori_loop(0, n_steps, body, (states, zeros))
    return states, total / jnp.maximum(n_steps, 1)


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(path, states: TrainState) -> Path:
    """Write the (stacked) training state with Orbax; returns the absolute path."""
    path = Path(path).expanduser().resolve()
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, states, force=True)
        checkpointer.wait_until_finished()
    return path


def save_models(directory, cfg: SyntheticConfig, states: TrainState) -> list[Path]:
    """Each seed's parameters as a laser-jax checkpoint ``directory/seed<i>/step_<step>`` (six digits),
    which ``laser_jax.load_model`` restores as a synthetic-family model (e.g. for ``laser-jax dynamics``)."""
    from laser_jax import checkpoint

    steps = np.asarray(states.step).reshape(-1)
    paths = []
    for seed, step in enumerate(steps):
        params = jax.tree.map(lambda leaf: leaf[seed], states.params)
        path = Path(directory) / f"seed{seed}" / f"step_{int(step):06d}"
        paths.append(checkpoint.save(path, as_model(cfg, params, source=f"synthetic seed {seed} step {int(step)}")))
    return paths


def restore_checkpoint(path, like: TrainState) -> TrainState:
    """Restore a state saved by :func:`save_checkpoint`; ``like`` gives the structure and shapes
    (e.g. :func:`init_states` with the same config, optimizer and seed count)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(Path(path).expanduser().resolve(), abstract)
    # Orbax returns arrays committed to a device; jit treats those as a new input sharding and
    # would compile the train step and the evaluation again. Plain arrays hit the existing cache.
    return jax.tree.map(lambda leaf: jnp.asarray(np.asarray(leaf)), restored)
