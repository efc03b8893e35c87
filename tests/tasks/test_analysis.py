"""Paraphrase robustness and the generic-token table (pure functions)."""

import math

import numpy as np
import pytest

from laser_jax.tasks import generic_token_table, paraphrase_robustness


def test_paraphrase_robustness_counts_facts_with_every_item_correct():
    correct = [True, True, True, True, False, True, True, True]
    groups = [0, 0, 0, 1, 1, 1, 2, 2]
    assert paraphrase_robustness(correct, groups) == pytest.approx(2 / 3)
    order = [7, 0, 4, 2, 6, 1, 5, 3]
    assert paraphrase_robustness([correct[i] for i in order], [groups[i] for i in order]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        paraphrase_robustness([True], [0, 1])


def test_generic_token_table():
    log = np.log
    # item 0: " the" beats the answer before, the answer wins after; item 1: the answer wins both times.
    table = generic_token_table(
        answer_before=log([0.1, 0.5]),
        probes_before=log([[0.4, 0.1], [0.2, 0.1]]),
        answer_after=log([0.3, 0.6]),
        probes_after=log([[0.2, 0.05], [0.1, 0.1]]),
        probe_names=[" the", " a"],
    )
    assert table.rows[0]["p_answer_before"] == pytest.approx(0.1) and table.rows[0]["p[ the]_after"] == pytest.approx(0.2)
    s = table.summary
    assert s["items"] == 2 and s["p_answer_after"] == pytest.approx(0.45) and s["p[ a]_before"] == pytest.approx(0.1)
    assert s["p_generic_before"] == pytest.approx(0.4) and s["p_generic_after"] == pytest.approx(0.225)
    assert (s["answer_wins_before"], s["answer_wins_after"]) == (0.5, 1.0)
    assert (s["generic_to_answer"], s["answer_to_generic"]) == (1, 0)
    assert "generic_to_answer" in table.format() and math.isfinite(s["p_answer_before"])
    with pytest.raises(ValueError):
        generic_token_table([0.0], [[0.0]], [0.0, 0.0], [[0.0], [0.0]])
