"""The :class:`Model` object: a family, its config, a parameter pytree and a tokenizer.

It is an immutable convenience wrapper; all computation is in the pure,
jitted functions of :mod:`laser_jax.models.base`, with ``family`` and
``config`` as static arguments.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp

from laser_jax.models import base


@functools.partial(jax.jit, static_argnums=(0, 1))
def _forward(family, cfg, params, ids, attention_mask, select):
    return base.forward(family, cfg, params, ids, attention_mask, select)


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    family: base.Family
    config: Any
    params: dict
    tokenizer: Optional[Any] = None
    source: Optional[str] = None

    @property
    def n_layers(self) -> int:
        return base.n_layers(self.params)

    @property
    def taus(self) -> tuple[str, ...]:
        return self.family.taus

    @property
    def dtype(self):
        return self.params["blocks"][self.family.taus[0]].dtype

    def logits(self, ids, attention_mask=None, select=None) -> jax.Array:
        """Logits [B, T, V]; with ``select`` [B, A], only at those sequence indices."""
        ids = jnp.asarray(ids, jnp.int32)
        mask = jnp.ones(ids.shape, bool) if attention_mask is None else jnp.asarray(attention_mask, bool)
        select = None if select is None else jnp.asarray(select, jnp.int32)
        return _forward(self.family, self.config, self.params, ids, mask, select)

    __call__ = logits

    # The pieces the LASER engine composes (see laser_jax.models.base).
    def embed(self, ids, ctx: base.Context):
        return self.family.embed(self.params, self.config, ids, ctx)

    def run_blocks(self, h, ctx: base.Context, start, stop):
        return base.run_blocks(self.family, self.config, self.params, h, ctx, start, stop)

    def head(self, h):
        return self.family.head(self.params, self.config, h)

    def matrix(self, layer: int, tau: str):
        return base.get_matrix(self.family, self.params, layer, tau)

    def with_matrix(self, layer: int, tau: str, matrix) -> "Model":
        return self.replace(params=base.set_matrix(self.family, self.params, layer, tau, matrix))

    def replace(self, **changes) -> "Model":
        return dataclasses.replace(self, **changes)

    def astype(self, dtype) -> "Model":
        return self.replace(params=base.cast_params(self.params, dtype))

    def __repr__(self) -> str:
        return f"Model(family={self.family.name!r}, layers={self.n_layers}, dtype={self.dtype}, source={self.source!r})"
