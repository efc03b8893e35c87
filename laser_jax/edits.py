"""Edits as text: ``TAU:LAYER:RHO`` strings, ρ lists and ``compose.json`` files, parsed into interventions.

The one parser every entry point shares: the ``laser-jax`` command line
(``--edit``, ``--edits``, ``--rhos``), the lm-eval backend's ``model_args``
(:mod:`laser_jax.harness`) and anything else that takes edits as text.
:func:`resolve_edits` then checks them against a model (a layer it lacks, a τ
its family lacks) and resolves ``mp`` ranks. Errors are one-line
:class:`~laser_jax.errors.LaserJaxError` messages.
"""

from __future__ import annotations

import json
from pathlib import Path

from laser_jax.errors import DataError, InterventionError


def parse_rhos(text: str) -> list:
    """``"0.1,0.01"`` to a list of distinct ρs, or ``"mp"`` to ``["mp"]`` (each matrix's MP rank, :mod:`laser_jax.rmt`)."""
    parts = [part.strip() for part in text.split(",")]
    if "mp" in parts:
        if len(parts) > 1:
            raise InterventionError(f"rho 'mp' (each matrix's Marchenko-Pastur rank) cannot be mixed with other values: {text!r}")
        return ["mp"]
    rhos = []
    for part in parts:
        try:
            rho = float(part)
        except ValueError:
            raise InterventionError(f"rho {part.strip()!r} is not a number (give e.g. --rhos 0.1,0.01)") from None
        if not 0.0 <= rho <= 1.0:
            raise InterventionError(f"rho={rho:g} is outside [0, 1] (rho is the fraction of the rank kept)")
        rhos.append(rho)
    return list(dict.fromkeys(rhos))


def parse_edit(text: str):
    """``fc_in:27:0.01`` (τ, layer, ρ) to an :class:`~laser_jax.laser.Intervention`; ``fc_in:27:0.01:bottom``
    keeps the removed part; ``fc_in:27:mp`` is an :class:`~laser_jax.rmt.MPEdit` (resolved against the model)."""
    from laser_jax.laser import Intervention
    from laser_jax.rmt import MPEdit

    parts = str(text).split(":")
    if len(parts) not in (3, 4):
        raise InterventionError(f"bad --edit {text!r}: use TAU:LAYER:RHO[:top|bottom], e.g. fc_in:27:0.01")
    tau, layer, rho, *keep = parts
    try:
        layer = int(layer)
    except ValueError:
        raise InterventionError(f"bad --edit {text!r}: layer {layer!r} is not an integer") from None
    (rho,) = parse_rhos(rho)
    if rho == "mp":
        return MPEdit(layer, tau.strip(), *keep)
    return Intervention(layer, tau.strip(), rho, *keep)


def read_composition(path) -> list:
    """The edits of a ``compose.json`` file (``{"edits": ["TAU:LAYER:RHO", ...], ...}``) as interventions."""
    try:
        record = json.loads(Path(path).read_text())
        edits = record["edits"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path} is not a laser-jax composition file ({type(error).__name__}: {error})") from None
    if not isinstance(edits, list):
        raise DataError(f"{path}: 'edits' must be a list of TAU:LAYER:RHO strings")
    return [parse_edit(str(edit)) for edit in edits]


def resolve_edits(model, steps) -> list:
    """``steps`` checked against ``model`` (layer in range, τ in its family) with ``mp`` ranks resolved."""
    from laser_jax.laser import check_intervention
    from laser_jax.rmt import resolve

    resolved = [resolve(model, step) for step in steps]
    for step in resolved:
        check_intervention(model, step)
    return resolved


def edit_text(step) -> str:
    """The ``TAU:LAYER:RHO[:bottom]`` text of an intervention (:func:`parse_edit` reads it back)."""
    text = f"{step.tau}:{step.layer}:{step.rho!r}"
    return text if step.keep == "top" else f"{text}:{step.keep}"


__all__ = ["parse_rhos", "parse_edit", "read_composition", "resolve_edits", "edit_text"]
