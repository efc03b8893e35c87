"""Two-way conversion between Hugging Face state dicts and our parameter pytrees.

Each family declares one table of :class:`Rule` rows. A rule maps one Hugging
Face tensor (per layer when its name holds ``{layer}``) to one or more of our
leaves, with the expected HF shape and the functions that convert each way.
:func:`from_hf_state` checks every key: a missing, unexpected or mis-shaped
tensor is a one-line :class:`~laser_jax.errors.ConversionError`, and every
leaf of our pytree is proven filled. :func:`to_hf_state` is the exact inverse,
used by export.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Mapping, Optional

import numpy as np

from laser_jax.errors import ConversionError


def _identity(array, cfg):
    return (array,)


def _identity_back(arrays, cfg):
    return arrays[0]


@dataclasses.dataclass(frozen=True)
class Rule:
    """One row of a family's name-mapping table.

    ``hf``: the Hugging Face name; ``{layer}`` marks a per-block tensor.
    ``ours``: our leaf paths, ``"group/name"``; per-block leaves live under
    ``blocks/`` and are stacked over layers.
    ``shape``: the HF tensor's expected shape, from the config.
    ``to_ours`` / ``to_hf``: numpy conversions, one HF array to ``len(ours)``
    arrays and back.
    """

    hf: str
    ours: tuple[str, ...]
    shape: Callable[[object], tuple]
    to_ours: Callable = _identity
    to_hf: Callable = _identity_back

    @property
    def per_layer(self) -> bool:
        return "{layer}" in self.hf


def transpose(array, cfg):
    """torch ``Linear`` (out, in) -> our (in, out)."""
    return (np.ascontiguousarray(np.swapaxes(array, -1, -2)),)


def transpose_back(arrays, cfg):
    return np.ascontiguousarray(np.swapaxes(arrays[0], -1, -2))


def linear_rule(hf: str, ours: str, n_in: Callable, n_out: Callable) -> Rule:
    """A torch ``nn.Linear`` weight, stored transposed as our (in, out) matrix."""
    return Rule(hf, (ours,), lambda c: (n_out(c), n_in(c)), transpose, transpose_back)


def vector_rule(hf: str, ours: str, size: Callable) -> Rule:
    return Rule(hf, (ours,), lambda c: (size(c),))


def set_path(tree: dict, path: str, value) -> None:
    *groups, leaf = path.split("/")
    for group in groups:
        tree = tree.setdefault(group, {})
    if leaf in tree:
        raise ConversionError(f"conversion table fills {path} twice")
    tree[leaf] = value


def get_path(tree: dict, path: str):
    for part in path.split("/"):
        tree = tree[part]
    return tree


def leaf_paths(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(leaf_paths(value, path + "/"))
        else:
            out.append(path)
    return out


def from_hf_state(
    family_name: str,
    rules: tuple[Rule, ...],
    n_layers: int,
    cfg,
    state: Mapping[str, object],
    ignored: tuple[str, ...] = (),
    constants: Optional[Mapping[str, np.ndarray]] = None,
) -> dict:
    """Build our numpy params pytree from an HF state dict, checking every key.

    ``state`` maps names to arrays, or to zero-argument callables returning
    arrays (so large checkpoints are read lazily). ``ignored`` are regexes of
    HF buffers that hold no weights (rotary caches, causal-mask buffers).
    ``constants`` are leaves that come from the config rather than the
    checkpoint (a family's ``layer_constants``), by path.
    """
    expected: dict[str, tuple[Rule, Optional[int]]] = {}
    for rule in rules:
        for layer in range(n_layers) if rule.per_layer else [None]:
            name = rule.hf.format(layer=layer) if layer is not None else rule.hf
            expected[name] = (rule, layer)

    ignored_re = [re.compile(pattern) for pattern in ignored]
    unexpected = sorted(k for k in state if k not in expected and not any(p.fullmatch(k) for p in ignored_re))
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise ConversionError(f"{family_name}: unexpected checkpoint key {unexpected[0]!r}{more}")
    missing = [k for k in expected if k not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ConversionError(f"{family_name}: checkpoint is missing key {missing[0]!r}{more}")

    per_layer: dict[str, list] = {}
    tree: dict = {}
    for name, (rule, layer) in expected.items():
        value = state[name]
        array = np.asarray(value() if callable(value) else value)
        want = tuple(rule.shape(cfg))
        if tuple(array.shape) != want:
            raise ConversionError(f"{family_name}: {name} has shape {tuple(array.shape)}, expected {want}")
        converted = rule.to_ours(array, cfg)
        if len(converted) != len(rule.ours):
            raise ConversionError(f"{family_name}: rule for {rule.hf} produced {len(converted)} arrays for {len(rule.ours)} targets")
        for path, piece in zip(rule.ours, converted):
            if rule.per_layer:
                per_layer.setdefault(path, [None] * n_layers)[layer] = piece
            else:
                set_path(tree, path, piece)
    for path, pieces in per_layer.items():
        set_path(tree, path, np.stack(pieces))
    for path, array in (constants or {}).items():
        set_path(tree, path, np.asarray(array))

    filled = set(leaf_paths(tree))
    declared = {p for rule in rules for p in rule.ours} | set(constants or {})
    if filled != declared:
        raise ConversionError(f"{family_name}: leaves not filled: {sorted(declared - filled)}")
    return tree


def to_hf_state(rules: tuple[Rule, ...], n_layers: int, cfg, params: dict) -> dict[str, np.ndarray]:
    """The inverse of :func:`from_hf_state`: our params to HF names and layouts."""
    state = {}
    for rule in rules:
        leaves = [np.asarray(get_path(params, path)) for path in rule.ours]
        if rule.per_layer:
            for layer in range(n_layers):
                state[rule.hf.format(layer=layer)] = rule.to_hf([leaf[layer] for leaf in leaves], cfg)
        else:
            state[rule.hf] = rule.to_hf(leaves, cfg)
    return state
