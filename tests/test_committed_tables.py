"""Every committed Table 1 row that has its scores: its numbers again from ``scores.npz`` alone.

Read with numpy only (not through laser_jax), and checked against the row of the committed ``table.csv``: the item
count, both test accuracies, the paired difference, the exact McNemar p-value (scipy's binomial test) and the Wilson
intervals (statsmodels). A stale ``table.csv``, or a ``scores.npz`` of another run, fails here.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest
from statsmodels.stats.proportion import proportion_confint

RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results"
ROWS = [(table.parent, row) for table in sorted(RESULTS.glob("*/table.csv"))
        for row in csv.DictReader(open(table)) if (table.parent / row["task"] / "scores.npz").exists()]


def test_committed_tables_have_stored_scores():
    assert len(ROWS) >= 6  # SmolLM2's three recall/FEVER rows on two splits at least


def stored_test_outcomes(directory: Path, name: str) -> np.ndarray:
    with np.load(directory / "scores.npz", allow_pickle=False) as data:
        split, index, correct = data[f"{name}/split"], data[f"{name}/index"], data[f"{name}/correct"]
    test = split == "test"
    return correct[test][np.argsort(index[test], kind="stable")].astype(bool)


@pytest.mark.parametrize("table, row", ROWS, ids=[f"{table.name}/{row['task']}" for table, row in ROWS])
def test_a_committed_row_comes_back_from_its_scores(table, row):
    directory = table / row["task"]
    base = stored_test_outcomes(directory, "base")
    laser = stored_test_outcomes(directory, f"{row['tau']}-L{row['layer']}-rho{float(row['rho'])!r}")
    assert len(base) == len(laser) == int(row["n_test"])
    assert base.mean() == float(row["base_accuracy"]) and laser.mean() == float(row["laser_accuracy"])
    assert laser.mean() - base.mean() == pytest.approx(float(row["difference"]), abs=1e-12)
    only_base, only_laser = int((base & ~laser).sum()), int((laser & ~base).sum())
    expected = binomtest(only_laser, only_base + only_laser, 0.5).pvalue if only_base + only_laser else 1.0
    assert float(row["mcnemar_p"]) == pytest.approx(expected, rel=1e-9)
    for name, outcomes in (("base", base), ("laser", laser)):
        low, high = proportion_confint(int(outcomes.sum()), len(outcomes), alpha=0.05, method="wilson")
        assert (float(row[f"{name}_low"]), float(row[f"{name}_high"])) == pytest.approx((low, high), abs=1e-12)
    low, high = float(row["difference_low"]), float(row["difference_high"])
    assert low <= float(row["difference"]) <= high
