"""The paper's protocol on top of the sweep: pick the best variant on validation, and compose steps greedily.

Split: the first 20% of the examples, in order, is validation; the rest is
test (with a split seed, a seeded random 20% instead: :func:`validation_split`).
The best variant is chosen by :func:`rank_on_validation`, the one selection
rule of the package (every command calls it): the highest validation
accuracy, ties going to the lower validation answer NLL, then to the variant
that comes first in ``results.csv`` order; test metrics are reported for the
base and the best variant.

Composition is the paper's greedy search, done correctly (the official script
scores one prompt three times and never reverts a step): MLP matrices only,
from the largest layer down; for each (layer, τ) the candidates are tried from
the smallest ρ up, and the first one whose validation accuracy does not fall
below the current one is kept; if none qualifies, nothing changes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from laser_jax.errors import DataError, InterventionError
from laser_jax.examples import Example
from laser_jax.laser import Intervention, apply, check_intervention
from laser_jax.models import base
from laser_jax.sweep import SweepOptions, SweepPlan, SweepResult, SweepRow, evaluate, sweep

VALIDATION_FRACTION = 0.2
VALIDATION, TEST = "val", "test"  # the split names of a selection run's rows
PAPER_RHOS = (0.9, 0.8, 0.6, 0.2, 0.1, 0.05, 0.01)


def validation_split(n: int, fraction: float = VALIDATION_FRACTION,
                     seed: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the validation part and of the test part of ``n`` examples, each in increasing order.

    Without ``seed``: the first ``floor(fraction · n)`` examples, in order, then the rest (the paper's split, and
    every committed run's). With ``seed``: the first ``floor(fraction · n)`` positions of the permutation
    ``numpy.random.default_rng(seed).permutation(n)`` are validation, the others test.
    """
    n_validation = int(n * fraction)
    if not 0 < n_validation < n:
        raise DataError(f"cannot split {n} examples into validation ({fraction:.0%}) and test: one part would be empty")
    if seed is None:
        return np.arange(n_validation), np.arange(n_validation, n)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"a split seed is a non-negative integer, got {seed!r}")
    order = np.random.default_rng(int(seed)).permutation(n)
    return np.sort(order[:n_validation]), np.sort(order[n_validation:])


def _variant_order(variant) -> tuple:
    """Where ``variant`` comes in ``results.csv``: τ by name, then the lower layer, then the larger ρ (the milder
    cut), then the kept part before the removed one. ``variant``: an :class:`Intervention` or a
    ``(tau, layer, rho)`` key (:func:`laser_jax.results.variant_key`)."""
    if isinstance(variant, Intervention):
        return (variant.tau, variant.layer, -variant.rho, variant.keep != "top", variant.keep)
    tau, layer, rho = variant
    return (str(tau), int(layer), -float(rho), False, "top")


def _missing(value) -> bool:
    return value is None or math.isnan(float(value))


def _sort_key(variant, record: Mapping) -> tuple:
    """The order of :func:`rank_on_validation`: higher accuracy, lower loss (a missing or NaN value last), then
    :func:`_variant_order`."""
    accuracy = record.get("accuracy")
    loss = record["loss"] if "loss" in record else record.get("answer_nll")
    return (math.inf if _missing(accuracy) else -float(accuracy), math.inf if _missing(loss) else float(loss),
            *_variant_order(variant))


def rank_on_validation(records: Iterable[tuple[object, Mapping]], n_validation: int) -> list:
    """The selection rule, the only one in the package: the variants that compete, best first.

    ``records``: ``(variant, metrics)`` pairs, one per variant, where ``variant`` is an :class:`Intervention` or a
    ``(tau, layer, rho)`` key and ``metrics`` its validation ``accuracy``, its loss (``loss`` as in ``results.csv``,
    or ``answer_nll``), its item count ``n`` and, optionally, ``raced``. Pass the reduced variants only: the base
    model is not a candidate.

    1. Only a variant scored on the whole validation part competes: ``n == n_validation`` and not ``raced``.
       A variant stopped by racing, or a partial row of an unfinished run, is never chosen, whatever its accuracy.
    2. The higher validation accuracy comes first (a NaN or missing accuracy last).
    3. Equal accuracies: the lower validation loss first (NaN or missing last).
    4. Equal accuracy and loss: ``results.csv`` order, i.e. τ by name, then the lower layer, then the larger ρ
       (the milder cut), then the kept part before the removed one (``keep``). It depends on the variants only, not
       on the order in which they are given or were swept, so a run directory read back gives the same choice as
       the protocol that ran it. (No committed run of ``experiments/results`` has a tie at step 4.)

    The first of the list is the selected variant; the protocol also tests the first of each τ and the first
    ``--top-n``. An empty list: nothing competes.
    """
    records = list(records)
    competing = [(variant, record) for variant, record in records
                 if record.get("n") is not None and int(record["n"]) == int(n_validation) and not record.get("raced")]
    return [variant for variant, record in sorted(competing, key=lambda item: _sort_key(*item))]


@dataclasses.dataclass(frozen=True)
class Selection:
    """The best variant on validation and the base/best metrics on both parts."""

    best: SweepRow
    base_validation: dict
    best_validation: dict
    base_test: dict
    best_test: dict


def select_best(result: SweepResult, fraction: float = VALIDATION_FRACTION, metric: str = "accuracy",
                loss: str = "answer_nll", seed: Optional[int] = None) -> Selection:
    """The paper's selection (:func:`rank_on_validation`) over the variants of ``result`` (which must include the
    base row); ``seed``: the split seed of :func:`validation_split`."""
    variants = result.variants
    if not variants:
        raise InterventionError("the sweep has no variants to select from")
    validation, test = validation_split(len(result.base.scores), fraction, seed)
    records = []
    for variant in variants:
        metrics = variant.scores.subset(validation).metrics()
        records.append((variant.intervention, {"accuracy": metrics[metric], "loss": metrics[loss], "n": len(validation)}))
    best = result.row(rank_on_validation(records, len(validation))[0])
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
            split_seed: Optional[int] = None, options: SweepOptions = SweepOptions(),
            progress: bool = False) -> Composition:
    """Greedy composition of LASER steps on the validation part, reported on the test part.

    ``layers`` default to all (searched from the largest down), ``taus`` to the
    family's MLP matrices, ``rhos`` to the paper's grid (tried smallest first).
    Each stage's candidates are scored in one vectorised sweep of the current
    composed model. ``split_seed``: the run's split seed (:func:`validation_split`). ``options`` go to
    :func:`laser_jax.sweep.sweep`; one :class:`~laser_jax.sweep.SweepPlan` serves every stage and evaluation.
    """
    examples = list(examples)
    validation, test = validation_split(len(examples), fraction, split_seed)
    validation_examples = [examples[i] for i in validation]
    test_examples = [examples[i] for i in test]
    layers = sorted(range(model.n_layers) if layers is None else set(layers), reverse=True)
    taus = tuple(t for t in base.MLP_TAUS if t in model.family.taus) if taus is None else tuple(taus)
    rhos = sorted(set(float(r) for r in rhos))
    stages = [[Intervention(layer, tau, rho) for rho in rhos] for layer in layers for tau in taus]
    for stage in stages:
        check_intervention(model, stage[0])
    plan = SweepPlan.build(model, examples, [step for stage in stages for step in stage], options)
    current = {"model": model}

    def score_stage(kept, candidates):
        current["model"] = apply(model, kept) if kept else model
        result = sweep(current["model"], validation_examples, candidates, options=options, plan=plan, skip={"base"},
                       progress=progress)
        return [result.row(c).metrics[metric] for c in candidates]

    def scored(scored_model, part):
        return evaluate(scored_model, part, options=options, plan=plan).metrics

    base_validation = scored(model, validation_examples)
    steps, _, trials = greedy_search(stages, base_validation[metric], score_stage)
    composed = apply(model, steps) if steps else model
    return Composition(
        steps=steps, model=composed, trials=trials,
        base_validation=base_validation,
        final_validation=scored(composed, validation_examples),
        base_test=scored(model, test_examples),
        final_test=scored(composed, test_examples),
    )


__all__ = ["VALIDATION_FRACTION", "VALIDATION", "TEST", "PAPER_RHOS", "validation_split", "rank_on_validation", "Selection", "select_best", "Trial",
           "greedy_search", "Composition", "compose"]
