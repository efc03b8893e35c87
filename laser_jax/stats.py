"""Uncertainty of a Table 1 row: intervals of an accuracy, a paired test of base vs LASER, Holm across rows.

Everything here works on per-example outcomes (numpy arrays), so it needs no model and no JAX:

- :func:`accuracy_interval`: the Wilson score (default) or the exact Clopper–Pearson interval of an accuracy.
- :func:`paired_bootstrap`: the difference of two accuracies on the same items (LASER − base) with a seeded paired
  bootstrap percentile interval: each resample draws the items with replacement and keeps each item's two outcomes
  together.
- :func:`mcnemar_exact`: the exact McNemar p-value, a two-sided binomial test on the discordant items (those one
  model gets right and the other wrong).
- :func:`auc_interval`: a ROC AUC (ties count one half) with a seeded bootstrap percentile interval, for two-way
  choice tasks.
- :func:`holm`: Holm's step-down correction of several p-values (the rows of a table).

A bootstrap takes :data:`DEFAULT_RESAMPLES` resamples unless told otherwise, and refuses fewer than
:data:`MIN_RESAMPLES`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator, Optional, Sequence

import numpy as np
from scipy import stats as scipy_stats

from laser_jax.errors import DataError

LEVEL = 0.95
DEFAULT_RESAMPLES = 10_000
MIN_RESAMPLES = 100
INTERVAL_METHODS = ("wilson", "exact")
_CHUNK = 250  # resamples drawn at once: a (250, n) count matrix


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval (``low``, ``high``) at ``level``."""

    value: float
    low: float
    high: float
    level: float = LEVEL


def check_resamples(resamples: int) -> int:
    """``resamples`` as an int, or a one-line :class:`~laser_jax.errors.DataError` below :data:`MIN_RESAMPLES`."""
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < MIN_RESAMPLES:
        raise DataError(f"a bootstrap needs at least {MIN_RESAMPLES} resamples, got {resamples!r}")
    return int(resamples)


def _check_level(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise DataError(f"an interval's level must be in (0, 1), got {level!r}")
    return float(level)


def _outcomes(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or not len(array):
        raise DataError(f"{name} must be a non-empty list of per-example outcomes")
    if not np.isin(array, (0, 1)).all():
        raise DataError(f"{name} must hold 0/1 (or False/True) outcomes")
    return array.astype(bool)


def accuracy_interval(correct: int, n: int, level: float = LEVEL, method: str = "wilson") -> Estimate:
    """The accuracy ``correct / n`` with its ``level`` interval: Wilson's score interval (``method="wilson"``) or the
    exact Clopper–Pearson one (``"exact"``, from beta quantiles). Both stay inside [0, 1]."""
    level = _check_level(level)
    correct, n = int(correct), int(n)
    if n < 1 or not 0 <= correct <= n:
        raise DataError(f"an accuracy needs 0 <= correct <= n and n >= 1, got {correct} of {n}")
    if method not in INTERVAL_METHODS:
        raise DataError(f"unknown interval method {method!r}; use one of {', '.join(INTERVAL_METHODS)}")
    p = correct / n
    alpha = 1.0 - level
    if method == "exact":
        low = 0.0 if correct == 0 else float(scipy_stats.beta.ppf(alpha / 2, correct, n - correct + 1))
        high = 1.0 if correct == n else float(scipy_stats.beta.ppf(1 - alpha / 2, correct + 1, n - correct))
        return Estimate(p, low, high, level)
    z = float(scipy_stats.norm.ppf(1 - alpha / 2))
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Estimate(p, max(0.0, center - half), min(1.0, center + half), level)


def resample_counts(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The bootstrap's resamples as count matrices: blocks of rows, row r holding how many times each of the ``n``
    items was drawn (``n`` draws with replacement) in resample r. Seeded, so the same call gives the same draws."""
    resamples = check_resamples(resamples)
    rng = np.random.default_rng(seed)
    done = 0
    while done < resamples:
        block = min(_CHUNK, resamples - done)
        draws = rng.integers(0, n, size=(block, n))
        flat = (np.arange(block)[:, None] * n + draws).ravel()
        yield np.bincount(flat, minlength=block * n).reshape(block, n)
        done += block


def _percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    alpha = 1.0 - level
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def paired_bootstrap(base, laser, resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = LEVEL) -> Estimate:
    """``mean(laser) − mean(base)`` over the same items, with the percentile interval of a seeded paired bootstrap.

    ``base``, ``laser``: per-example 0/1 outcomes, item i of one paired with item i of the other.
    """
    level = _check_level(level)
    base, laser = _outcomes(base, "base"), _outcomes(laser, "laser")
    if len(base) != len(laser):
        raise DataError(f"a paired bootstrap needs the same items: {len(base)} base outcomes, {len(laser)} LASER ones")
    n = len(base)
    difference = laser.astype(np.float64) - base.astype(np.float64)
    values = np.concatenate([counts @ difference / n for counts in resample_counts(n, resamples, seed)])
    return Estimate(float(difference.mean()), *_percentile_interval(values, level), level)


def discordant(base, laser) -> tuple[int, int]:
    """``(base right and LASER wrong, LASER right and base wrong)`` over paired 0/1 outcomes."""
    base, laser = _outcomes(base, "base"), _outcomes(laser, "laser")
    if len(base) != len(laser):
        raise DataError(f"McNemar's test needs the same items: {len(base)} base outcomes, {len(laser)} LASER ones")
    return int((base & ~laser).sum()), int((laser & ~base).sum())


def mcnemar_exact(base, laser) -> float:
    """The exact (binomial) McNemar p-value, two-sided: ``min(1, 2 · P(X <= min(b, c)))`` for X ~ Bin(b + c, 1/2),
    where b and c count the two kinds of discordant item (:func:`discordant`); 1 when there are none."""
    b, c = discordant(base, laser)
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2.0 * scipy_stats.binom.cdf(min(b, c), b + c, 0.5)))


def _weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The ROC AUC of each row of ``weights`` (item multiplicities): P(a positive scores above a negative), ties one
    half; NaN where a class has no weight."""
    order = np.argsort(scores, kind="stable")
    ordered, positive = scores[order], positive[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # first item of each run of equal scores
    weights = weights[:, order].astype(np.float64)
    negatives = np.add.reduceat(weights * ~positive, starts, axis=1)
    positives = np.add.reduceat(weights * positive, starts, axis=1)
    below = np.cumsum(negatives, axis=1) - negatives
    pairs = positives.sum(1) * negatives.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (positives * (below + 0.5 * negatives)).sum(1) / pairs, np.nan)


def auc_interval(scores, positive, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                 level: float = LEVEL) -> Estimate:
    """The ROC AUC of ``scores`` for the ``positive`` items against the others (ties one half), with the percentile
    interval of a seeded bootstrap over the items (resamples that miss a class are left out); NaN without both
    classes."""
    level = _check_level(level)
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    if scores.ndim != 1 or scores.shape != positive.shape or not len(scores) or np.isnan(scores).any():
        raise DataError("an AUC needs one finite score and one label per item")
    value = float(_weighted_auc(scores, positive, np.ones((1, len(scores))))[0])
    if math.isnan(value):
        check_resamples(resamples)
        return Estimate(math.nan, math.nan, math.nan, level)
    values = np.concatenate([_weighted_auc(scores, positive, counts)
                             for counts in resample_counts(len(scores), resamples, seed)])
    return Estimate(value, *_percentile_interval(values[~np.isnan(values)], level), level)


def holm(pvalues: Sequence[Optional[float]], alpha: float = 1.0 - LEVEL) -> tuple[list[Optional[bool]], list[Optional[float]]]:
    """Holm's step-down correction at family-wise level ``alpha``: per p-value, whether it is rejected and its
    adjusted p-value, ``max over j <= i of min(1, (m − j) · p_(j))`` in increasing order (j from 0). A missing
    (None or NaN) p-value is no part of the family and gets None for both."""
    if not 0.0 < alpha < 1.0:
        raise DataError(f"a family-wise level must be in (0, 1), got {alpha!r}")
    present = [i for i, p in enumerate(pvalues) if p is not None and not math.isnan(p)]
    for i in present:
        if not 0.0 <= pvalues[i] <= 1.0:
            raise DataError(f"a p-value must be in [0, 1], got {pvalues[i]!r}")
    m = len(present)
    adjusted: list[Optional[float]] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(present, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        adjusted[i] = running
    rejected = [None if value is None else value <= alpha for value in adjusted]
    return rejected, adjusted


__all__ = ["LEVEL", "DEFAULT_RESAMPLES", "MIN_RESAMPLES", "INTERVAL_METHODS", "Estimate", "check_resamples",
           "accuracy_interval", "resample_counts", "paired_bootstrap", "discordant", "mcnemar_exact", "auc_interval",
           "holm"]
