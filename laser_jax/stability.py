"""Selection stability: how often the protocol would pick the same variant if the validation items were resampled.

It works from a selection run's stored per-example validation scores alone (no model, no JAX). Each of
``resamples`` seeded bootstrap draws of the validation items (``n`` items with replacement, the same draw for every
variant: :func:`laser_jax.stats.resample_counts`) re-weights every competing variant's validation accuracy and answer
NLL, and the protocol's own rule, :func:`laser_jax.selection.rank_on_validation`, picks again (ties to the lower
loss, then ``results.csv`` order). :class:`Stability` reports:

- the share of draws that pick the run's chosen (ℓ, τ, ρ);
- the share that pick its matrix, (ℓ, τ), at any ρ;
- the most frequent other picks, with their shares.

What it holds fixed: which variants compete. They are the ones the run scored on the whole validation part, so a
screened run's screen (which also read the validation items) is not redone and a raced run's stopped variants stay
out. The stability is therefore that of the choice among the swept variants.
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np

from laser_jax import stats
from laser_jax.errors import DataError
from laser_jax.report import select_best, split_rows, split_scores, split_size
from laser_jax.results import BASE_TAU, load_results, variant_name
from laser_jax.selection import VALIDATION, rank_on_validation

DEFAULT_RESAMPLES = 1000
STABILITY_FILE = "stability.json"
FIGURE_FILE = "stability.png"


@dataclasses.dataclass(frozen=True)
class Stability:
    """The picks of :func:`selection_stability`: ``picks[key]`` draws chose variant ``key`` (``(tau, layer, rho)``)."""

    chosen: tuple
    picks: dict
    resamples: int
    seed: int
    n_validation: int
    n_competing: int

    @property
    def chosen_share(self) -> float:
        """The share of draws that pick the run's chosen (ℓ, τ, ρ)."""
        return self.picks.get(self.chosen, 0) / self.resamples

    @property
    def matrix_share(self) -> float:
        """The share of draws that pick the chosen variant's matrix (same τ and ℓ), at any ρ."""
        tau, layer, _ = self.chosen
        return sum(count for (t, l, _), count in self.picks.items() if (t, l) == (tau, layer)) / self.resamples

    def alternatives(self, count: int = 3) -> list[tuple[tuple, float]]:
        """The ``count`` most frequent picks other than the chosen one, with their shares (ties in grid order)."""
        others = sorted(((key, n) for key, n in self.picks.items() if key != self.chosen),
                        key=lambda item: (-item[1], item[0][0], item[0][1], -item[0][2]))
        return [(key, n / self.resamples) for key, n in others[:count]]

    def record(self) -> dict:
        """A JSON-ready summary (``stability.json``)."""
        name = lambda key: {"tau": key[0], "layer": key[1], "rho": key[2]}  # noqa: E731
        return {"chosen": name(self.chosen), "chosen_share": self.chosen_share, "matrix_share": self.matrix_share,
                "alternatives": [{**name(key), "share": share} for key, share in self.alternatives()],
                "picks": [{**name(key), "count": n} for key, n in sorted(self.picks.items(), key=lambda kv: -kv[1])],
                "resamples": self.resamples, "seed": self.seed, "n_validation": self.n_validation,
                "n_competing": self.n_competing}


def selection_stability(directory, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Optional[Stability]:
    """The stability of the choice of the selection run in ``directory`` (see the module docstring).

    None when the run's stored scores lack the validation scores of a competing variant (a run committed before
    ``scores.npz``, or one whose scores were recomputed for the test part only). A one-line
    :class:`~laser_jax.errors.DataError` when the run has no validation rows, nothing competes, or the stored scores
    disagree with ``results.csv``.
    """
    resamples = stats.check_resamples(resamples)
    directory = Path(directory)
    _, rows = load_results(directory)
    n_validation = split_size(rows, VALIDATION)
    chosen = select_best(rows, VALIDATION)
    if n_validation is None or chosen is None:
        raise DataError(f"{directory}: no variant competes on the validation part; a selection run's validation rows are needed")
    part = split_rows(rows, VALIDATION)
    competing = rank_on_validation([(key, row) for key, row in part.items() if key[0] != BASE_TAU], n_validation)
    correct, loss, index = [], [], None
    for key in competing:
        scores = split_scores(directory, key, VALIDATION, part[key])
        if scores is None or "answer_nll" not in scores:
            return None
        if index is None:
            index = scores["index"]
        elif not np.array_equal(index, scores["index"]):
            raise DataError(f"{directory}: the stored validation scores of {variant_name(key)} cover other items")
        correct.append(scores["correct"].astype(np.int64))
        loss.append(scores["answer_nll"])
    right, nll = np.stack(correct), np.stack(loss)
    picks: collections.Counter = collections.Counter()
    for counts in stats.resample_counts(n_validation, resamples, seed):
        # integer counts divided once: draws with equal counts right tie exactly, as in results.csv
        accuracy, mean_nll = (counts @ right.T) / n_validation, (counts @ nll.T) / n_validation
        for draw in range(len(counts)):
            records = [(key, {"accuracy": accuracy[draw, v], "loss": mean_nll[draw, v], "n": n_validation})
                       for v, key in enumerate(competing)]
            picks[rank_on_validation(records, n_validation)[0]] += 1
    return Stability(chosen, dict(picks), resamples, int(seed), n_validation, len(competing))


def figure(stability: Stability, title: str = "", shown: int = 10):
    """A matplotlib Figure: the share of resamples picking each variant (the ``shown`` most frequent), the chosen one
    highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranked = [(stability.chosen, stability.picks.get(stability.chosen, 0))] + [
        (key, share * stability.resamples) for key, share in stability.alternatives(shown - 1)]
    ranked.sort(key=lambda kv: -kv[1])
    labels = [f"{tau} L{layer} ρ={rho:g}" for (tau, layer, rho), _ in ranked]
    shares = [100.0 * n / stability.resamples for _, n in ranked]
    colours = ["tab:red" if key == stability.chosen else "tab:gray" for key, _ in ranked]
    fig, ax = plt.subplots(figsize=(6.4, 0.35 * len(ranked) + 1.4))
    ax.barh(range(len(ranked))[::-1], shares, color=colours)
    ax.set_yticks(range(len(ranked))[::-1], labels, fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"% of {stability.resamples} validation resamples picking it")
    ax.set_title(f"{title}: selection stability (chosen in red; its matrix {100 * stability.matrix_share:.0f}%)".lstrip(": "),
                 fontsize=9)
    fig.tight_layout()
    return fig


def write_stability(directory, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Optional[Stability]:
    """:func:`selection_stability` of the run in ``directory``, written to ``stability.json`` and ``stability.png``
    there; None (and nothing written) without the validation scores it needs."""
    import json

    from laser_jax.ground import write_text_atomic

    directory = Path(directory)
    found = selection_stability(directory, resamples, seed)
    if found is None:
        return None
    write_text_atomic(directory / STABILITY_FILE, json.dumps(found.record(), indent=2) + "\n")
    fig = figure(found, directory.name)
    fig.savefig(directory / FIGURE_FILE, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return found


__all__ = ["Stability", "selection_stability", "write_stability", "figure", "DEFAULT_RESAMPLES", "STABILITY_FILE",
           "FIGURE_FILE"]
