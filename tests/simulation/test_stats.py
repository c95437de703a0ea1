"""Welch's t with seed-weighted variances and the seed-weighted pooled std, checked against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ls_al_backend.simulation.stats import seed_weighted_pooled_std, welch

stats = pytest.importorskip("scipy.stats")

ARMS = [
    ([53.1, 54.0, 52.2, 55.3, 51.9], [47.0, 44.1, 50.2, 46.3, 48.8]),  # equal seed counts
    ([54.0, 53.2, 53.4, 51.9], [53.9, 37.2, 45.4, 41.4, 46.5, 40.4]),  # unequal counts and spreads
    ([0.31, 0.36], [0.35, 0.30, 0.33]),  # the smallest arms, gap below zero
]


@pytest.mark.parametrize(("a", "b"), ARMS)
def test_welch_matches_scipy(a, b):
    result = welch(a, b)
    expected = stats.ttest_ind(a, b, equal_var=False)
    assert result.gap == pytest.approx(np.mean(a) - np.mean(b))
    assert result.t == pytest.approx(expected.statistic, rel=1e-12)
    assert result.df == pytest.approx(expected.df, rel=1e-12)
    assert result.standard_error == pytest.approx(result.gap / result.t)


def test_welch_weights_each_variance_by_its_own_seed_count():
    a, b = [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0], [20.0, 21.0]  # var 24 over 8 seeds, var 0.5 over 2
    assert welch(a, b).standard_error == pytest.approx(math.sqrt(24 / 8 + 0.5 / 2))
    assert welch(b, a).t == pytest.approx(-welch(a, b).t)


def test_welch_without_spread():
    assert welch([5.0, 5.0], [3.0, 3.0]).t == math.inf
    assert welch([3.0, 3.0], [5.0, 5.0]).t == -math.inf
    same = welch([4.0, 4.0], [4.0, 4.0])
    assert same.t == 0.0 and math.isnan(same.df) and same.gap == 0.0


@pytest.mark.parametrize("bad", [[1.0], [], [1.0, float("nan")], [[1.0, 2.0]]])
def test_welch_rejects_arms_it_cannot_judge(bad):
    with pytest.raises(ValueError, match="arm a"):
        welch(bad, [1.0, 2.0])


@pytest.mark.parametrize(("a", "b"), ARMS)
def test_seed_weighted_pooled_std_is_students_pooled_std(a, b):
    n_a, n_b = len(a), len(b)
    # Student's t (equal variances) is gap / (pooled std * sqrt(1/n_a + 1/n_b))
    student = stats.ttest_ind(a, b, equal_var=True).statistic
    pooled = seed_weighted_pooled_std(a, b)
    assert (np.mean(a) - np.mean(b)) / (pooled * math.sqrt(1 / n_a + 1 / n_b)) == pytest.approx(student, rel=1e-12)


def test_seed_weighted_pooled_std_with_equal_counts_is_the_mean_variance():
    a, b = [1.0, 2.0, 6.0], [3.0, 3.5, 10.0]
    expected = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
    assert seed_weighted_pooled_std(a, b) == pytest.approx(expected)
    # unequal counts: the arm with more seeds pulls the pooled variance towards its own
    wide, narrow = [0.0, 10.0], [5.0, 5.5, 6.0, 6.5, 7.0, 7.5]
    assert seed_weighted_pooled_std(wide, narrow) < math.sqrt((np.var(wide, ddof=1) + np.var(narrow, ddof=1)) / 2)
