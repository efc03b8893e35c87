"""The one selection rule (:func:`laser_jax.selection.rank_on_validation`): its order and tie-breaks, rows that do
not cover the whole validation part, every caller agreeing with it, and the committed runs' choices kept."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from laser_jax.laser import Intervention
from laser_jax.protocol import selected
from laser_jax.report import select_best as select_from_rows
from laser_jax.results import ResultsStore, read_csv
from laser_jax.selection import rank_on_validation, select_best, validation_split
from laser_jax.sweep import SweepResult, SweepRow
from laser_jax.table import table_row
from tests.test_sweep import fake_scores

REPO = Path(__file__).resolve().parents[1]
N_VAL = 10


def record(accuracy, loss, n=N_VAL, raced=False):
    return {"accuracy": accuracy, "loss": loss, "n": n, "raced": raced}


# Keys as (tau, layer, rho). Ties: three variants at 0.8 with loss 1.0; the rule's order among them is fc_in before
# fc_out (τ by name), then the lower layer, then the larger ρ (the milder cut).
TIED = [("fc_out", 1, 0.5), ("fc_in", 3, 0.1), ("fc_in", 3, 0.5), ("fc_in", 5, 0.9)]
RECORDS = {
    ("fc_in", 0, 0.9): record(0.6, 0.5),
    ("fc_out", 0, 0.5): record(0.8, 1.2),   # same accuracy as the tied ones, higher loss
    **{key: record(0.8, 1.0) for key in TIED},
    ("fc_out", 2, 0.2): record(0.9, 3.0, n=4),  # partial: best accuracy but only 4 of 10 items
    ("fc_in", 4, 0.2): record(1.0, 0.1, n=4, raced=True),  # stopped by racing on its partial count
    ("fc_out", 3, 0.9): record(1.0, 0.05, raced=True),  # marked raced: never chosen, even on a full count
    ("fc_out", 4, 0.1): record(float("nan"), 0.1),  # NaN accuracy ranks last
}
EXPECTED = [("fc_in", 3, 0.5), ("fc_in", 3, 0.1), ("fc_in", 5, 0.9), ("fc_out", 1, 0.5), ("fc_out", 0, 0.5),
            ("fc_in", 0, 0.9), ("fc_out", 4, 0.1)]


def test_rule_order_accuracy_then_loss_then_results_order_whatever_the_input_order():
    items = list(RECORDS.items())
    for seed in range(5):
        random.Random(seed).shuffle(items)
        assert rank_on_validation(items, N_VAL) == EXPECTED
    # An Intervention and its (tau, layer, rho) key take the same place; "answer_nll" stands for "loss".
    as_interventions = [(Intervention(layer, tau, rho), {**r, "answer_nll": r["loss"]}) for (tau, layer, rho), r in items]
    for item in as_interventions:
        del item[1]["loss"]
    assert [(iv.tau, iv.layer, iv.rho) for iv in rank_on_validation(as_interventions, N_VAL)] == EXPECTED


def test_partial_and_raced_rows_never_compete():
    partial, raced, raced_full = ("fc_out", 2, 0.2), ("fc_in", 4, 0.2), ("fc_out", 3, 0.9)
    ranked = rank_on_validation(RECORDS.items(), N_VAL)
    assert partial not in ranked and raced not in ranked and raced_full not in ranked
    assert rank_on_validation([(key, RECORDS[key]) for key in (partial, raced, raced_full)], N_VAL) == []
    # the same partial row covering the whole (smaller) part competes again
    assert rank_on_validation([(partial, RECORDS[partial])], 4) == [partial]


def rows_of(records, test_accuracy=0.5):
    """results.csv rows: the base and each variant on val (and test for the complete ones)."""
    rows = [{"layer": None, "tau": "none", "rho": None, "k": None, "split": split, "n": n, "accuracy": 0.5, "loss": 2.0}
            for split, n in (("val", N_VAL), ("test", 40))]
    for (tau, layer, rho), r in records.items():
        rows.append({"layer": layer, "tau": tau, "rho": rho, "k": 3, "split": "val", "n": r["n"], "accuracy": r["accuracy"],
                     "loss": r["loss"], **({"raced": 1} if r["raced"] else {})})
        if r["n"] == N_VAL:
            rows.append({"layer": layer, "tau": tau, "rho": rho, "k": 3, "split": "test", "n": 40,
                         "accuracy": test_accuracy, "loss": 2.0})
    return rows


def test_every_caller_follows_the_rule(tmp_path):
    """The results-rows selector (report, table, the generation check), the protocol's choice of what to test and
    the selector over in-memory sweep scores (selection, dynamics) all pick the rule's first."""
    rows = rows_of(RECORDS)
    assert select_from_rows(rows, "val") == EXPECTED[0]
    shuffled = rows[::-1]
    assert select_from_rows(shuffled, "val") == EXPECTED[0]

    # protocol.selected: the best, then the best of each τ, in the rule's order (grid given in another order)
    variants = [Intervention(layer, tau, rho) for tau, layer, rho in sorted(RECORDS, key=lambda k: (-k[1], k[0]))]
    done = {Intervention(layer, tau, rho).key: {**r, "answer_nll": r["loss"]} for (tau, layer, rho), r in RECORDS.items()}
    assert [(iv.tau, iv.layer, iv.rho) for iv in selected(done, variants, N_VAL, top_n=3)] == \
        [EXPECTED[0], ("fc_out", 1, 0.5), EXPECTED[1], EXPECTED[2]]

    # table_row on a run directory holding these rows
    store = ResultsStore(tmp_path / "run", {"task": "counterfact", "mode": "selection"})
    by_key = {}
    for row in rows:
        by_key.setdefault((row["tau"], row["layer"], row["rho"]), []).append(row)
    for group in by_key.values():
        store.record(group)
    row = table_row(tmp_path / "run")
    assert (row["tau"], row["layer"], row["rho"]) == EXPECTED[0] and row["raced"] == 2
    assert row["mcnemar_p"] is None  # no per-example scores stored: no intervals

    # selection.select_best over per-example scores: two variants tie on validation accuracy and loss
    base = SweepRow.build("base", None, fake_scores([0] * 10, [5.0] * 10))
    tied = [Intervention(3, "fc_in", 0.1), Intervention(1, "fc_out", 0.5), Intervention(3, "fc_in", 0.5)]
    result = SweepResult((base, *[SweepRow.build(iv.key, iv, fake_scores([1, 1] + [0] * 8, [4.0] * 10)) for iv in tied]),
                         top_k=1)
    assert select_best(result).best.intervention == Intervention(3, "fc_in", 0.5)


def test_a_partial_row_is_never_selected_from_results_rows():
    """report.select_best used to take any non-raced row: an unfinished run's partial row could win."""
    rows = rows_of({("fc_in", 0, 0.9): record(0.6, 0.5), ("fc_out", 2, 0.2): record(0.9, 3.0, n=4)})
    assert select_from_rows(rows, "val") == ("fc_in", 0, 0.9)
    assert select_from_rows(rows_of({("fc_out", 2, 0.2): record(0.9, 3.0, n=4)}), "val") is None


COMMITTED_TABLES = sorted((REPO / "experiments" / "results").rglob("table.csv"))


@pytest.mark.parametrize("table", COMMITTED_TABLES, ids=[str(p.parent.relative_to(REPO)) for p in COMMITTED_TABLES])
def test_the_committed_tables_keep_their_chosen_variants(table):
    """The rule changed only ties that no committed run has: every committed table row still selects its variant."""
    for row in read_csv(table):
        directory = table.parent / row["task"]
        now = table_row(directory, resamples=None)
        assert (now["tau"], now["layer"], now["rho"]) == (row["tau"], row["layer"], row["rho"]), directory


def test_a_seeded_split_is_a_reproducible_random_fifth():
    n = 103
    validation, test = validation_split(n, seed=7)
    assert len(validation) == 20 and len(test) == 83  # floor(0.2 n), the rest
    assert sorted(np.concatenate([validation, test]).tolist()) == list(range(n))  # a partition of the items
    assert validation.tolist() == sorted(np.random.default_rng(7).permutation(n)[:20].tolist())  # numpy's permutation
    again, _ = validation_split(n, seed=7)
    assert np.array_equal(again, validation)
    assert not np.array_equal(validation_split(n, seed=8)[0], validation)
    default, default_test = validation_split(n)
    assert default.tolist() == list(range(20)) and default_test.tolist() == list(range(20, n))  # unchanged
    assert not np.array_equal(validation, default)
    from laser_jax.results import split_indices

    assert split_indices(n, "val+test", 7)["val"].tolist() == validation.tolist()
    assert split_indices(n, "val+test")["val"].tolist() == default.tolist()
