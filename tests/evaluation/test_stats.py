"""Fold statistics against independent formulas and a published Tukey HSD example: sample std
(ddof=1, not the population one), t intervals (not normal ones), and significance that follows
the data."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from neopain.errors import NeopainError
from neopain.evaluation.stats import compare_runs, confidence_interval, mean_std

FOLDS = [0.9, 0.85, 0.95, 0.8, 0.92]


def test_mean_std_is_the_sample_std_and_skips_nan():
    mean, std = mean_std(FOLDS + [math.nan])
    assert mean == pytest.approx(statistics.mean(FOLDS))
    assert std == pytest.approx(statistics.stdev(FOLDS))  # n - 1 in the denominator
    assert std != pytest.approx(statistics.pstdev(FOLDS))
    assert math.isnan(mean_std([0.7])[1])
    assert all(math.isnan(v) for v in mean_std([math.nan]))


def test_confidence_interval_uses_t_with_n_minus_1_degrees_of_freedom():
    low, high = confidence_interval(FOLDS)
    t_4 = 2.776445105  # t(0.975, df=4), from a printed t table
    half = t_4 * statistics.stdev(FOLDS) / math.sqrt(5)
    assert (low, high) == pytest.approx((statistics.mean(FOLDS) - half,
                                         statistics.mean(FOLDS) + half), abs=1e-9)
    low99, high99 = confidence_interval(FOLDS, level=0.99)
    assert low99 < low and high99 > high
    assert all(math.isnan(v) for v in confidence_interval([0.9]))
    with pytest.raises(NeopainError, match="level=95"):
        confidence_interval(FOLDS, level=95)


# Hollander & Wolfe's example (as in scipy's tukey_hsd documentation): 3 groups of 5.
GROUPS = {
    "a": [24.5, 23.5, 26.4, 27.1, 29.9],
    "b": [28.4, 34.2, 29.5, 32.2, 30.1],
    "c": [26.1, 28.3, 24.3, 26.2, 27.8],
}


def test_anova_f_and_p_match_the_sums_of_squares():
    comparison = compare_runs(GROUPS)
    data = [np.array(v) for v in GROUPS.values()]
    grand = np.concatenate(data).mean()
    between = sum(len(d) * (d.mean() - grand) ** 2 for d in data) / (3 - 1)
    within = sum(((d - d.mean()) ** 2).sum() for d in data) / (15 - 3)
    assert comparison.f == pytest.approx(between / within)
    f = between / within
    # with 2 numerator degrees of freedom the F tail has a closed form: (d2 / (d2 + 2F))^(d2/2)
    assert comparison.p == pytest.approx((12 / (12 + 2 * f)) ** 6)


def test_tukey_pairs_match_the_published_example():
    pairs = {(p.a, p.b): p for p in compare_runs(GROUPS).pairs}
    expected = {  # difference, p, CI low, CI high
        ("a", "b"): (-4.600, 0.014, -8.249, -0.951),
        ("a", "c"): (-0.260, 0.980, -3.909, 3.389),
        ("b", "c"): (4.340, 0.020, 0.691, 7.989),
    }
    assert set(pairs) == set(expected)
    for key, (difference, p, low, high) in expected.items():
        pair = pairs[key]
        assert (pair.difference, pair.p, pair.low, pair.high) == pytest.approx(
            (difference, p, low, high), abs=1e-3), key
        assert pair.significant == (p < 0.05)


def test_clearly_different_runs_are_significant_and_equal_ones_are_not():
    rng = np.random.default_rng(3)
    good = 0.92 + rng.normal(0, 0.02, 10)
    poor = 0.75 + rng.normal(0, 0.02, 10)
    different = compare_runs({"good": good, "poor": poor})
    assert different.p < 0.001 and different.pairs[0].significant
    same = compare_runs({"good": good, "reordered": good[::-1]})
    assert same.p == pytest.approx(1.0) and not same.pairs[0].significant
    assert same.pairs[0].difference == pytest.approx(0.0, abs=1e-12)


def test_comparison_needs_two_runs_with_two_values_each():
    with pytest.raises(NeopainError, match="at least 2 runs; got 1"):
        compare_runs({"a": [1.0, 2.0]})
    with pytest.raises(NeopainError, match=r"too few in: b \(1\)"):
        compare_runs({"a": [1.0, 2.0], "b": [1.0, math.nan]})
    flat = compare_runs({"a": [0.5, 0.5], "b": [0.5, 0.5]})
    assert math.isnan(flat.f) and flat.pairs == [] and flat.notes


def test_the_best_run_and_the_better_of_a_pair_follow_the_metric_direction():
    rng = np.random.default_rng(5)
    low = 0.05 + rng.normal(0, 0.01, 8)
    high = 0.20 + rng.normal(0, 0.01, 8)
    error = compare_runs({"low": low, "high": high}, lower_is_better=True)
    assert error.best == "low" and error.pairs[0].better == "low"
    score = compare_runs({"low": low, "high": high})
    assert score.best == "high" and score.pairs[0].better == "high"
    assert error.to_dict()["lower_is_better"] and error.to_dict()["tukey"][0]["better"] == "low"
    same = compare_runs({"a": low, "b": low.copy()}, lower_is_better=True)
    assert same.best is None and same.pairs[0].better is None  # a tie, nothing significant
