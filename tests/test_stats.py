"""laser_jax.stats against scipy and statsmodels on known answers (never against itself), and its one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from laser_jax import stats
from laser_jax.errors import DataError
from tests.test_imports import import_graph


@pytest.mark.parametrize("correct, n", [(28, 100), (0, 10), (10, 10), (216, 3071), (1, 2), (812, 1600)])
@pytest.mark.parametrize("method, theirs", [("wilson", "wilson"), ("exact", "beta")])
def test_accuracy_interval_is_statsmodels_proportion_confint(correct, n, method, theirs):
    mine = stats.accuracy_interval(correct, n, method=method)
    low, high = proportion_confint(correct, n, alpha=0.05, method=theirs)
    assert mine.value == correct / n
    assert mine.low == pytest.approx(low, abs=1e-12) and mine.high == pytest.approx(high, abs=1e-12)
    ninety = stats.accuracy_interval(correct, n, level=0.9, method=method)
    assert (ninety.low, ninety.high) == pytest.approx(proportion_confint(correct, n, alpha=0.1, method=theirs), abs=1e-12)


def paired_outcomes(n=1600, seed=1):
    """Paired 0/1 outcomes: LASER agrees with the base on 90% of items and is right on 70% of the others."""
    rng = np.random.default_rng(seed)
    base = rng.random(n) < 0.5
    laser = np.where(rng.random(n) < 0.9, base, rng.random(n) < 0.7)
    return base, laser


@pytest.mark.parametrize("b, c", [(18, 58), (5, 5), (0, 7), (3, 0), (30, 21), (0, 0)])
def test_mcnemar_is_statsmodels_exact_mcnemar(b, c):
    base = np.array([1] * b + [0] * c + [1] * 40 + [0] * 25, bool)
    laser = np.array([0] * b + [1] * c + [1] * 40 + [0] * 25, bool)
    assert stats.discordant(base, laser) == (b, c)
    expected = mcnemar([[40, b], [c, 25]], exact=True).pvalue
    assert stats.mcnemar_exact(base, laser) == pytest.approx(expected, rel=1e-12)
    assert stats.mcnemar_exact(laser, base) == pytest.approx(expected, rel=1e-12)  # two-sided


def test_paired_bootstrap_is_scipy_bootstrap_paired_percentile():
    """The same case through scipy.stats.bootstrap(paired=True, method='percentile'), with other random draws: the two
    intervals agree to Monte Carlo error (a half-width here is about 1.1 points; they agree within 0.2)."""
    base, laser = paired_outcomes()
    mine = stats.paired_bootstrap(base, laser)  # 10,000 resamples, seed 0
    theirs = scipy.stats.bootstrap((base.astype(float), laser.astype(float)),
                                   lambda a, b, axis: np.mean(b - a, axis=axis), paired=True, vectorized=True,
                                   method="percentile", n_resamples=10_000, rng=np.random.default_rng(12345))
    assert mine.value == pytest.approx(laser.mean() - base.mean(), abs=1e-15)
    assert mine.low == pytest.approx(theirs.confidence_interval.low, abs=0.002)
    assert mine.high == pytest.approx(theirs.confidence_interval.high, abs=0.002)
    # A paired bootstrap, not an unpaired one: with the pairs kept together the interval is much narrower than the
    # normal interval of two independent proportions.
    unpaired = 1.96 * math.sqrt(base.mean() * (1 - base.mean()) / len(base) + laser.mean() * (1 - laser.mean()) / len(base))
    assert mine.high - mine.low < unpaired
    assert stats.paired_bootstrap(base, laser, seed=0) == mine  # seeded: the same call gives the same interval
    few = [stats.paired_bootstrap(base, laser, 200, seed) for seed in (0, 0, 1)]
    assert few[0] == few[1] != few[2]


def mann_whitney_auc(scores, positive):
    positive = np.asarray(positive).astype(bool)
    u = scipy.stats.mannwhitneyu(scores[positive], scores[~positive]).statistic
    return u / (positive.sum() * (~positive).sum())


def test_auc_is_mann_whitney_and_its_interval_scipy_bootstrap():
    rng = np.random.default_rng(3)
    positive = rng.random(300) < 0.4
    scores = np.round(rng.normal(size=300) + 0.5 * positive, 1)  # rounded: many ties, which count one half
    mine = stats.auc_interval(scores, positive)
    assert mine.value == pytest.approx(mann_whitney_auc(scores, positive), abs=1e-12)
    theirs = scipy.stats.bootstrap((scores, positive.astype(float)), mann_whitney_auc, paired=True, vectorized=False,
                                   method="percentile", n_resamples=4000, rng=np.random.default_rng(5))
    assert mine.low == pytest.approx(theirs.confidence_interval.low, abs=0.012)
    assert mine.high == pytest.approx(theirs.confidence_interval.high, abs=0.012)
    assert math.isnan(stats.auc_interval(scores, np.ones(300, bool)).value)  # one class only: no AUC


@pytest.mark.parametrize("pvalues", [[0.01, 0.04, 0.03, 0.2, 0.005], [0.001, 0.02, 0.02, 0.5], [0.3, 0.6], [0.049],
                                     [0.0125, 0.02, 0.03, 0.04]])
def test_holm_is_statsmodels_multipletests_holm(pvalues):
    reject, adjusted, _, _ = multipletests(pvalues, alpha=0.05, method="holm")
    mine_reject, mine_adjusted = stats.holm(pvalues)
    assert mine_reject == reject.tolist()
    assert mine_adjusted == pytest.approx(adjusted.tolist(), abs=1e-15)


def test_holm_leaves_out_rows_without_a_p_value():
    reject, adjusted = stats.holm([0.01, None, 0.04, math.nan])
    theirs_reject, theirs_adjusted, _, _ = multipletests([0.01, 0.04], alpha=0.05, method="holm")
    assert reject == [theirs_reject[0], None, theirs_reject[1], None]
    assert adjusted == [theirs_adjusted[0], None, theirs_adjusted[1], None]


def test_bad_input_is_a_one_line_error():
    base, laser = paired_outcomes(50)
    for resamples in (99, 0, -5):
        with pytest.raises(DataError, match=r"^a bootstrap needs at least 100 resamples, got -?\d+$"):
            stats.paired_bootstrap(base, laser, resamples=resamples)
    with pytest.raises(DataError, match="at least 100 resamples"):
        stats.auc_interval(np.arange(50.0), laser, resamples=10)
    stats.paired_bootstrap(base, laser, resamples=100)  # the least allowed
    for call, message in ((lambda: stats.paired_bootstrap(base, laser[:-1]), "the same items"),
                          (lambda: stats.paired_bootstrap([0, 2], [1, 1]), "0/1"),
                          (lambda: stats.accuracy_interval(5, 4), "correct <= n"),
                          (lambda: stats.accuracy_interval(1, 4, method="normal"), "unknown interval method"),
                          (lambda: stats.holm([1.5]), "p-value")):
        with pytest.raises(DataError, match=message) as error:
            call()
        assert "\n" not in str(error.value)


def test_stats_needs_no_jax():
    """The module sits below everything that needs JAX: it imports only laser_jax.errors from the package."""
    assert import_graph()["laser_jax.stats"] == {"laser_jax.errors"}
    source = stats.__loader__.get_source("laser_jax.stats")
    assert "import jax" not in source and "from jax" not in source
