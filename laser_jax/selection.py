"""The paper's protocol on top of the sweep: pick the best variant on validation, and compose steps greedily.

Split: the first 20% of the examples, in order, is validation; the rest is
test. The best variant has the highest validation accuracy, ties going to the
lower validation answer NLL (then to grid order); test metrics are reported for
the base and the best variant.

Composition is the paper's greedy search, done correctly (the official script
scores one prompt three times and never reverts a step): MLP matrices only,
from the largest layer down; for each (layer, τ) the candidates are tried from
the smallest ρ up, and the first one whose validation accuracy does not fall
below the current one is kept; if none qualifies, nothing changes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from laser_jax.errors import DataError, InterventionError
from laser_jax.examples import Example
from laser_jax.laser import Intervention, apply, check_intervention
from laser_jax.models import base
from laser_jax.sweep import SweepResult, SweepRow, evaluate, sweep

VALIDATION_FRACTION = 0.2
PAPER_RHOS = (0.9, 0.8, 0.6, 0.2, 0.1, 0.05, 0.01)


def validation_split(n: int, fraction: float = VALIDATION_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the validation part (the first ``floor(fraction · n)``, in order) and of the test part."""
    n_validation = int(n * fraction)
    if not 0 < n_validation < n:
        raise DataError(f"cannot split {n} examples into validation ({fraction:.0%}) and test: one part would be empty")
    return np.arange(n_validation), np.arange(n_validation, n)


def _rank_key(metrics: dict, metric: str, loss: str) -> tuple[float, float]:
    """Sort key: higher ``metric`` first, then lower ``loss``; NaN ranks last."""
    accuracy, nll = metrics[metric], metrics[loss]
    return (-accuracy if not math.isnan(accuracy) else math.inf, nll if not math.isnan(nll) else math.inf)


@dataclasses.dataclass(frozen=True)
class Selection:
    """The best variant on validation and the base/best metrics on both parts."""

    best: SweepRow
    base_validation: dict
    best_validation: dict
    base_test: dict
    best_test: dict


def select_best(result: SweepResult, fraction: float = VALIDATION_FRACTION, metric: str = "accuracy",
                loss: str = "answer_nll") -> Selection:
    """The paper's selection over the variants of ``result`` (which must include the base row)."""
    variants = result.variants
    if not variants:
        raise InterventionError("the sweep has no variants to select from")
    validation, test = validation_split(len(result.base.scores), fraction)
    ranked = sorted(range(len(variants)),
                    key=lambda i: (*_rank_key(variants[i].scores.subset(validation).metrics(), metric, loss), i))
    best = variants[ranked[0]]
    return Selection(
        best=best,
        base_validation=result.base.scores.subset(validation).metrics(),
        best_validation=best.scores.subset(validation).metrics(),
        base_test=result.base.scores.subset(test).metrics(),
        best_test=best.scores.subset(test).metrics(),
    )


# ----------------------------------------------------------------------------- greedy composition


@dataclasses.dataclass(frozen=True)
class Trial:
    """One candidate tried during the greedy search, its validation accuracy, and whether it was kept."""

    step: Intervention
    accuracy: float
    kept: bool


def greedy_search(stages: Sequence[Sequence[Intervention]], start_accuracy: float,
                  score_stage: Callable[[tuple[Intervention, ...], Sequence[Intervention]], Sequence[float]]):
    """The greedy search, independent of how candidates are scored.

    ``stages``: candidate lists in search order, each in order of preference.
    ``score_stage(kept_steps, candidates)`` returns the validation accuracy of
    ``kept_steps + (candidate,)`` for every candidate. In each stage the first
    candidate that does not lower the current accuracy is kept. Returns
    ``(kept_steps, accuracy, trials)``.
    """
    kept: list[Intervention] = []
    accuracy = start_accuracy
    trials: list[Trial] = []
    for candidates in stages:
        if not candidates:
            continue
        scores = score_stage(tuple(kept), candidates)
        choice = next((i for i, score in enumerate(scores) if score >= accuracy), None)
        trials.extend(Trial(step, float(score), i == choice) for i, (step, score) in enumerate(zip(candidates, scores)))
        if choice is not None:
            kept.append(candidates[choice])
            accuracy = float(scores[choice])
    return tuple(kept), accuracy, tuple(trials)


@dataclasses.dataclass(frozen=True)
class Composition:
    """The steps kept by :func:`compose`, the composed model, and base/final metrics on both parts."""

    steps: tuple[Intervention, ...]
    model: object
    trials: tuple[Trial, ...]
    base_validation: dict
    final_validation: dict
    base_test: dict
    final_test: dict


def compose(model, examples: Sequence[Example], layers: Optional[Iterable[int]] = None, rhos: Iterable[float] = PAPER_RHOS,
            taus: Optional[Iterable[str]] = None, fraction: float = VALIDATION_FRACTION, metric: str = "accuracy",
            **sweep_kwargs) -> Composition:
    """Greedy composition of LASER steps on the validation part, reported on the test part.

    ``layers`` default to all (searched from the largest down), ``taus`` to the
    family's MLP matrices, ``rhos`` to the paper's grid (tried smallest first).
    Each stage's candidates are scored in one vectorised sweep of the current
    composed model. ``sweep_kwargs`` go to :func:`laser_jax.sweep.sweep`.
    """
    examples = list(examples)
    validation, test = validation_split(len(examples), fraction)
    validation_examples = [examples[i] for i in validation]
    test_examples = [examples[i] for i in test]
    layers = sorted(range(model.n_layers) if layers is None else set(layers), reverse=True)
    taus = tuple(t for t in base.MLP_TAUS if t in model.family.taus) if taus is None else tuple(taus)
    rhos = sorted(set(float(r) for r in rhos))
    stages = [[Intervention(layer, tau, rho) for rho in rhos] for layer in layers for tau in taus]
    for stage in stages:
        check_intervention(model, stage[0])
    current = {"model": model}

    def score_stage(kept, candidates):
        current["model"] = apply(model, kept) if kept else model
        layer, tau = candidates[0].layer, candidates[0].tau
        result = sweep(current["model"], validation_examples, [layer], [tau], [c.rho for c in candidates],
                       skip={"base"}, **sweep_kwargs)
        return [result.row(c).metrics[metric] for c in candidates]

    base_validation = evaluate(model, validation_examples, **sweep_kwargs).metrics
    steps, _, trials = greedy_search(stages, base_validation[metric], score_stage)
    composed = apply(model, steps) if steps else model
    return Composition(
        steps=steps, model=composed, trials=trials,
        base_validation=base_validation,
        final_validation=evaluate(composed, validation_examples, **sweep_kwargs).metrics,
        base_test=evaluate(model, test_examples, **sweep_kwargs).metrics,
        final_test=evaluate(composed, test_examples, **sweep_kwargs).metrics,
    )


__all__ = ["VALIDATION_FRACTION", "PAPER_RHOS", "validation_split", "Selection", "select_best", "Trial",
           "greedy_search", "Composition", "compose"]
