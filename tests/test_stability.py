"""Selection stability (laser_jax.stability) on run directories with known answers: no model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from laser_jax.errors import DataError
from laser_jax.results import ResultsStore
from laser_jax.stability import selection_stability, write_stability

N = 10  # validation items


def record(store, key, correct, nll):
    tau, layer, rho = key
    correct, nll = np.asarray(correct), np.asarray(nll, np.float32)
    row = {"layer": layer, "tau": tau, "rho": rho, "k": None, "split": "val", "n": len(correct),
           "accuracy": float(correct.mean()), "loss": float(nll.mean())}
    store.record([row], scores={"index": list(range(len(correct))), "split": ["val"] * len(correct),
                                "correct": correct.tolist(), "answer_nll": nll.tolist()})


def one_hot(item):
    return [int(i == item) for i in range(N)]


def two_variant_run(directory, nll_a, nll_b):
    """Variant A is right on item 0 only, B on item 1 only: on a resample, A wins when item 0 was drawn more often
    than item 1, B when item 1 was; equal draws tie on accuracy, and the loss then the grid order decide."""
    store = ResultsStore(directory, {"mode": "selection"})
    record(store, ("none", None, None), [0] * N, [1.0] * N)
    record(store, ("fc_in", 0, 0.5), one_hot(0), nll_a)
    record(store, ("fc_in", 1, 0.5), one_hot(1), nll_b)
    store.close()


def multinomial_share(win):
    """P(win(c0, c1)) when (c0, c1, rest) ~ Multinomial(N; 1/N, 1/N, 1 - 2/N): the exact share of draws."""
    p = 1.0 / N
    total = 0.0
    for c0 in range(N + 1):
        for c1 in range(N + 1 - c0):
            if win(c0, c1):
                rest = N - c0 - c1
                total += math.factorial(N) / (math.factorial(c0) * math.factorial(c1) * math.factorial(rest)) \
                    * p ** c0 * p ** c1 * (1 - 2 * p) ** rest
    return total


def test_ties_go_to_grid_order_with_the_exact_multinomial_share(tmp_path):
    two_variant_run(tmp_path / "run", [1.0] * N, [1.0] * N)  # equal losses: ties go to the lower layer, A
    found = selection_stability(tmp_path / "run", resamples=20_000, seed=1)
    assert found.chosen == ("fc_in", 0, 0.5) and found.n_competing == 2 and sum(found.picks.values()) == 20_000
    expected = multinomial_share(lambda c0, c1: c0 >= c1)  # about 0.66: ties (often 0 = 0) go to A
    assert found.chosen_share == pytest.approx(expected, abs=0.015)  # 4 standard errors of 20,000 draws
    assert found.alternatives() == [(("fc_in", 1, 0.5), pytest.approx(1 - found.chosen_share))]
    assert found.matrix_share == found.chosen_share  # the other variant is another layer's matrix


def test_ties_on_accuracy_go_to_the_lower_resampled_loss(tmp_path):
    # B has the lower loss on item 5 only; A is lower everywhere else; on a tie in accuracy the resampled loss decides
    nll_a, nll_b = [1.0] * N, [1.0] * N
    nll_b[5] = 0.0
    two_variant_run(tmp_path / "run", nll_a, nll_b)
    found = selection_stability(tmp_path / "run", resamples=20_000, seed=2)
    assert found.chosen == ("fc_in", 1, 0.5)  # the run itself: a tie at 1/10, B's loss lower
    # B wins when item 1 was drawn more often than item 0, or as often and item 5 at least once; with c0 = c1 and no
    # draw of item 5 the losses tie too and A (grid order) wins. Item 5 is drawn with the rest, so condition on it.
    p = 1.0 / N
    share = 0.0
    for c0 in range(N + 1):
        for c1 in range(N + 1 - c0):
            rest = N - c0 - c1
            weight = math.factorial(N) / (math.factorial(c0) * math.factorial(c1) * math.factorial(rest)) \
                * p ** (c0 + c1) * (1 - 2 * p) ** rest
            none_of_5 = ((1 - 3 * p) / (1 - 2 * p)) ** rest  # no draw of the rest is item 5
            share += weight * (c1 > c0) + weight * (c0 == c1) * (1 - none_of_5)
    assert found.chosen_share == pytest.approx(share, abs=0.015)


def test_is_seeded_and_refuses_what_it_cannot_do(tmp_path):
    two_variant_run(tmp_path / "run", [1.0] * N, [1.0] * N)
    first = selection_stability(tmp_path / "run", resamples=500, seed=3)
    assert first == selection_stability(tmp_path / "run", resamples=500, seed=3)
    assert first != selection_stability(tmp_path / "run", resamples=500, seed=4)
    with pytest.raises(DataError, match="at least 100 resamples"):
        selection_stability(tmp_path / "run", resamples=99)
    (tmp_path / "run" / "scores.npz").unlink()
    for path in (tmp_path / "run" / "scores").glob("fc_in-L1*"):
        path.unlink()  # a competing variant without validation scores: no stability, nothing written
    assert write_stability(tmp_path / "run", resamples=100) is None
    assert not (tmp_path / "run" / "stability.json").exists()
    empty = ResultsStore(tmp_path / "empty", {"mode": "selection"})
    record(empty, ("none", None, None), [0] * N, [1.0] * N)
    with pytest.raises(DataError, match="no variant competes"):
        selection_stability(tmp_path / "empty")
