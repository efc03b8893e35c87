"""A first-order screen of LASER variants: predict each variant's change in mean answer NLL without running it.

The loss is the sweep's ``answer_nll`` metric averaged over the examples: each
example's mean negative log-likelihood per answer token (the ``loss`` column
of a sweep's ``results.csv``). One forward and one backward pass per batch
give its gradient ``G = ∂L/∂W`` for every swept matrix ``W`` (``[in, out]``,
``y = x @ W``). ``G = Σ_t x_tᵀ g_t`` sums, over the positions ``t``, the input
``x_t`` times the gradient ``g_t = ∂L/∂y_t`` of the matrix's output, so the
first-order change of a variant, ``⟨G, W_k − W⟩ = Σ_t g_t · (x_t (W_k − W))``,
is the inner product of the output gradients with what the edit changes in
the outputs. With the SVD ``W = Σ_i s_i u_i v_iᵀ`` it splits over the
components, ``c_i = s_i · u_iᵀ G v_i``:

- keep the top ``k`` (LASER): ``ΔL ≈ −Σ_{i≥k} c_i``;
- keep the removed part (``keep="bottom"``): ``ΔL ≈ −Σ_{i<k} c_i``;

so every ρ of a matrix follows from one vector ``c`` (a cumulative sum), and
the whole grid costs one gradient of the loss plus the SVDs the sweep would
compute anyway. A first-order prediction holds for small edits (ρ near 1); for
large cuts it is a ranking heuristic whose quality is measured, not assumed
(``experiments/screen_vs_sweep.py``).

Batching reuses the sweep engine's packing (:func:`laser_jax.batching.plan_sequences`,
:func:`laser_jax.batching.make_batches`), and the head runs at the scored
positions only.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from laser_jax.devices import program
from laser_jax.errors import DataError
from laser_jax.examples import Example
from laser_jax.laser import (FACTOR_CACHE, FactorCache, Intervention, check_intervention, expand_grid, factors_for,
                             keep_window)
from laser_jax.models import base
from laser_jax.models.base import LowRank
from laser_jax.batching import make_batches, plan_sequences
from laser_jax.sweep import check_token_ids, vocab_size


@dataclasses.dataclass(frozen=True)
class ScreenRow:
    """One variant's predicted change in mean answer NLL (negative: the loss falls)."""

    intervention: Intervention
    predicted_change: float


@dataclasses.dataclass(frozen=True)
class ScreenResult:
    """The base loss and the predicted change of every screened variant, in grid order."""

    base_loss: float
    rows: tuple[ScreenRow, ...]

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def ranked(self) -> list[ScreenRow]:
        """Rows from the largest predicted loss decrease to the largest increase (ties in grid order)."""
        return sorted(self.rows, key=lambda row: row.predicted_change)

    def csv_rows(self) -> list[dict]:
        """One dict per variant: layer, tau, rho, keep, predicted change and loss, predicted rank (1 = best)."""
        rank = {id(row): i + 1 for i, row in enumerate(self.ranked())}
        return [{"layer": row.intervention.layer, "tau": row.intervention.tau, "rho": row.intervention.rho,
                 "keep": row.intervention.keep, "predicted_change": row.predicted_change,
                 "predicted_loss": self.base_loss + row.predicted_change, "predicted_rank": rank[id(row)]}
                for row in self.rows]


CSV_COLUMNS = ("layer", "tau", "rho", "keep", "predicted_change", "predicted_loss", "predicted_rank")


# ----------------------------------------------------------------------------- the gradient


def sequence_weights(examples: Sequence[Example], plan) -> np.ndarray:
    """Per sequence of ``plan``, the weight of each of its answer tokens in the mean answer NLL:
    (examples reading it) / (N · answer length)."""
    counts = np.bincount(plan.main, minlength=len(plan.sequences)).astype(np.float64)
    lengths = np.array([len(s.targets) for s in plan.sequences], np.float64)
    return counts / (len(examples) * lengths)


@program(static_argnums=(0, 1))
def _batch_loss_and_gradient(family, cfg, params, stacks, ids, mask, select, targets, weights):
    """The batch's weighted answer NLL and its gradient w.r.t. ``stacks`` ({τ: [L, in, out]})."""

    def loss(stacks):
        p = {**params, "blocks": {**params["blocks"], **stacks}}
        logits = base.forward(family, cfg, p, ids, mask, select).astype(jnp.float32)
        logprobs = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0] - jax.nn.logsumexp(logits, axis=-1)
        return -(logprobs * weights).sum()

    return jax.value_and_grad(loss)(stacks)


def loss_gradients(model, examples: Sequence[Example], taus: Iterable[str], *, batch_size: int = 32,
                   batch_tokens: Optional[int] = None) -> tuple[float, dict[str, np.ndarray]]:
    """``(L, {τ: ∂L/∂W [n_layers, in, out]})``: the mean answer NLL over ``examples`` and its gradient
    w.r.t. every layer's matrix of each concrete τ (float32 sums, float64 total)."""
    examples = list(examples)
    if not examples:
        raise DataError("the screen needs at least one example")
    check_token_ids(examples, vocab_size(model))
    taus = tuple(dict.fromkeys(taus))
    for tau in taus:
        base.check_tau(model.family, tau)
    plan = plan_sequences(examples)
    weights = sequence_weights(examples, plan)
    stacks = {tau: _dense(model.params["blocks"][tau]) for tau in taus}
    total = 0.0
    gradients = {tau: np.zeros(stacks[tau].shape, np.float64) for tau in taus}
    for batch in make_batches(plan, batch_size, 1, batch_tokens):
        row_weights = np.zeros(batch.targets.shape, np.float32)
        for i, s in enumerate(batch.rows):
            row_weights[i, :len(plan.sequences[s].targets)] = weights[s]
        value, grads = _batch_loss_and_gradient(model.family, model.config, model.params, stacks, batch.ids,
                                                batch.mask, batch.select, batch.targets, row_weights)
        total += float(value)
        for tau in taus:
            np.add(gradients[tau], np.asarray(grads[tau]), out=gradients[tau])  # float64 sums, no float64 copy
    return total, gradients


def _dense(stack):
    return stack.dense() if isinstance(stack, LowRank) else stack


# ----------------------------------------------------------------------------- predictions


def component_contributions(factors: LowRank, gradient) -> np.ndarray:
    """``c_i = s_i · u_iᵀ G v_i`` for the SVD ``factors`` of one matrix and ``G = ∂L/∂W`` (float64)."""
    u, s, vt = (np.asarray(a, np.float64) for a in (factors.u, factors.s, factors.vt))
    gradient = np.asarray(gradient, np.float64)
    return s * ((u.T @ gradient) * vt).sum(axis=1)  # two BLAS steps: a three-operand einsum loops in C


def predicted_change(contributions: np.ndarray, window: tuple[int, int]) -> float:
    """First-order change of the loss when only components ``lo <= i < hi`` are kept: ``−Σ_{i∉[lo,hi)} c_i``."""
    lo, hi = window
    return -float(contributions[:lo].sum() + contributions[hi:].sum())


def screen(model, examples: Sequence[Example], layers: Iterable[int] = (), taus: Iterable[str] = (),
           rhos: Iterable[float] = (), *, variants: Iterable[Intervention] = (), batch_size: int = 32,
           batch_tokens: Optional[int] = None, svd_dtype: str = "float32",
           cache: Optional[FactorCache] = FACTOR_CACHE) -> ScreenResult:
    """Predict the change in mean answer NLL of every variant of ``layers × taus × rhos`` (and ``variants``).

    The exact SVDs come from the factor cache, as the sweep's. A τ group
    (``mlp``) sums the predictions of its members.
    """
    variants = list(dict.fromkeys([*expand_grid(layers, taus, rhos), *variants]))
    if not variants:
        raise DataError("the screen needs at least one variant (layers, taus and rhos, or variants)")
    changed = {iv: check_intervention(model, iv) for iv in variants}
    concrete = tuple(dict.fromkeys(t for members in changed.values() for t in members))
    loss, gradients = loss_gradients(model, examples, concrete, batch_size=batch_size, batch_tokens=batch_tokens)
    contributions: dict[tuple[int, str], np.ndarray] = {}
    rows = []
    for iv in variants:
        change = 0.0
        for tau in changed[iv]:
            if (iv.layer, tau) not in contributions:
                factors = factors_for(model, iv.layer, tau, svd_dtype=svd_dtype, cache=cache)
                contributions[(iv.layer, tau)] = component_contributions(factors, gradients[tau][iv.layer])
            window = keep_window(iv, model.params["blocks"][tau].shape)
            change += predicted_change(contributions[(iv.layer, tau)], window)
        rows.append(ScreenRow(iv, change))
    return ScreenResult(loss, tuple(rows))


__all__ = ["ScreenRow", "ScreenResult", "CSV_COLUMNS", "sequence_weights", "loss_gradients", "component_contributions",
           "predicted_change", "screen"]
