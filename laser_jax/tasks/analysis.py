"""Pure functions over per-item results: paraphrase robustness and the generic-token table.

Inputs are what the sweep engine reports per item (correctness, log-probs of the
answer's first token and of the probe tokens at the last prompt position);
nothing here runs a model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import Optional

import numpy as np


def paraphrase_robustness(correct: Sequence[bool], groups: Sequence[Hashable]) -> float:
    """The fraction of groups (CounterFact facts) whose items are all correct.

    ``correct[i]`` is item i's correctness and ``groups[i]`` its group id (e.g.
    ``[item.group for item in items]``): a fact counts when its prompt and every
    paraphrase are answered correctly.
    """
    if len(correct) != len(groups):
        raise ValueError(f"{len(correct)} correctness values for {len(groups)} group ids")
    if not groups:
        raise ValueError("paraphrase robustness of no items")
    all_correct: dict[Hashable, bool] = {}
    for ok, group in zip(correct, groups):
        all_correct[group] = all_correct.get(group, True) and bool(ok)
    return sum(all_correct.values()) / len(all_correct)


@dataclasses.dataclass(frozen=True)
class GenericTokenTable:
    """Per-item probabilities before/after an intervention, and their summary.

    ``rows[i]`` has ``p_answer_before/after`` and, per probe, ``p[<probe>]_before/after``;
    ``summary`` has the means, the fraction of items where the answer beats every
    probe (``answer_wins_before/after``), and how many items moved from a generic
    winner to the answer (``generic_to_answer``) or back (``answer_to_generic``).
    """

    probes: tuple[str, ...]
    rows: tuple[dict, ...]
    summary: dict

    def format(self) -> str:
        """The summary as aligned text lines."""
        width = max(len(k) for k in self.summary)
        return "\n".join(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}" for k, v in self.summary.items())


def generic_token_table(
    answer_before: Sequence[float],
    probes_before: Sequence[Sequence[float]],
    answer_after: Sequence[float],
    probes_after: Sequence[Sequence[float]],
    probe_names: Optional[Sequence[str]] = None,
) -> GenericTokenTable:
    """The "Madrid is located in -> Spain vs the" measurement over items.

    Log-probs at the last prompt position: of the answer's first token ``[N]``
    and of the probe tokens ``[N, P]``, before and after an intervention.
    """
    a0, a1 = _column(answer_before, "answer_before"), _column(answer_after, "answer_after")
    g0, g1 = _matrix(probes_before, len(a0), "probes_before"), _matrix(probes_after, len(a0), "probes_after")
    if len(a1) != len(a0) or g1.shape != g0.shape:
        raise ValueError(f"before/after shapes differ: {a0.shape}, {g0.shape} vs {a1.shape}, {g1.shape}")
    names = tuple(probe_names) if probe_names is not None else tuple(f"probe{j}" for j in range(g0.shape[1]))
    if len(names) != g0.shape[1]:
        raise ValueError(f"{len(names)} probe names for {g0.shape[1]} probe columns")
    pa0, pa1, pg0, pg1 = np.exp(a0), np.exp(a1), np.exp(g0), np.exp(g1)
    wins0 = pa0 > pg0.max(axis=1, initial=0.0)
    wins1 = pa1 > pg1.max(axis=1, initial=0.0)
    rows = []
    for i in range(len(a0)):
        row = {"p_answer_before": float(pa0[i]), "p_answer_after": float(pa1[i])}
        for j, name in enumerate(names):
            row[f"p[{name}]_before"] = float(pg0[i, j])
            row[f"p[{name}]_after"] = float(pg1[i, j])
        rows.append(row)
    summary = {"items": len(a0), "p_answer_before": _mean(pa0), "p_answer_after": _mean(pa1)}
    for j, name in enumerate(names):
        summary[f"p[{name}]_before"] = _mean(pg0[:, j])
        summary[f"p[{name}]_after"] = _mean(pg1[:, j])
    summary.update(
        p_generic_before=_mean(pg0.sum(axis=1)),
        p_generic_after=_mean(pg1.sum(axis=1)),
        answer_wins_before=_mean(wins0),
        answer_wins_after=_mean(wins1),
        generic_to_answer=int(np.sum(~wins0 & wins1)),
        answer_to_generic=int(np.sum(wins0 & ~wins1)),
    )
    return GenericTokenTable(probes=names, rows=tuple(rows), summary=summary)


def _column(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or not len(array):
        raise ValueError(f"{name} should be a non-empty vector of log-probs, got shape {array.shape}")
    return array


def _matrix(values, n: int, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != n:
        raise ValueError(f"{name} should have shape [{n}, probes], got {array.shape}")
    return array


def _mean(values) -> float:
    return float(np.mean(values))
