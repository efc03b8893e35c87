"""A Flax NNX view of a laser_jax model, for fine-tuning a (LASER-reduced) model with ``nnx.Optimizer``.

:class:`LaserModule` holds the model's own parameter pytree with every leaf
wrapped in an ``nnx.Param`` (integer or boolean architecture constants, such
as Gemma 3's per-layer ``sliding`` flags, in a :class:`LayerConstant`); its ``__call__`` is the family's pure forward
(:func:`laser_jax.models.base.forward`) on the unwrapped values, so there is no
second implementation of any family. The factors ``u, s, vt`` of a
:class:`~laser_jax.models.base.LowRank` matrix (``laser.apply(...,
factored=True)``) are :class:`Factor` parameters, a subclass of ``nnx.Param``:
``wrt=nnx.Param`` trains everything, ``wrt=Factor`` only the truncated
matrices' factors. ``family``, ``config``, ``tokenizer`` and ``source`` are
static attributes. ``nnx.split`` / ``nnx.merge``, ``nnx.jit`` and ``nnx.grad``
work as on any NNX module; :meth:`LaserModule.to_model` gives back a
:class:`~laser_jax.model.Model` with the current values (LowRank stays LowRank),
ready for ``laser.apply``, the sweep, ``checkpoint.save`` or ``export_hf``.
"""

from __future__ import annotations

from typing import Optional

import jax
from flax import nnx

from laser_jax.model import Model
from laser_jax.models import base


class Factor(nnx.Param):
    """A factor (``u``, ``s`` or ``vt``) of a low-rank matrix."""


class LayerConstant(nnx.Variable):
    """A per-layer constant of the architecture, not a weight (Gemma 3's ``sliding`` flags): never trained."""


def _is_variable(node) -> bool:
    return isinstance(node, nnx.Variable)


def _is_low_rank(node) -> bool:
    return isinstance(node, base.LowRank)


class LaserModule(nnx.Module):
    """``LaserModule(model)``: the NNX module of a laser_jax :class:`~laser_jax.model.Model`, reduced or not."""

    def __init__(self, model: Model):
        self.family = model.family
        self.config = model.config
        self.tokenizer = model.tokenizer
        self.source = model.source

        def wrap(node):
            if _is_low_rank(node):
                return jax.tree.map(Factor, node)
            return nnx.Param(node) if jax.numpy.issubdtype(node.dtype, jax.numpy.inexact) else LayerConstant(node)

        self.params = nnx.data(jax.tree.map(wrap, model.params, is_leaf=_is_low_rank))

    def param_tree(self) -> dict:
        """The current parameter values as the family's plain pytree (LowRank factors included)."""
        return jax.tree.map(lambda variable: variable[...], self.params, is_leaf=_is_variable)

    def __call__(self, ids: jax.Array, attention_mask: Optional[jax.Array] = None, select: Optional[jax.Array] = None) -> jax.Array:
        """Logits [B, T, V], or [B, A, V] at the sequence indices ``select`` [B, A], as :meth:`Model.logits`."""
        return base.forward(self.family, self.config, self.param_tree(), ids, attention_mask, select)

    def to_model(self) -> Model:
        """A laser_jax model carrying this module's current parameter values."""
        return Model(family=self.family, config=self.config, params=self.param_tree(), tokenizer=self.tokenizer,
                     source=self.source)


__all__ = ["LaserModule", "Factor", "LayerConstant"]
