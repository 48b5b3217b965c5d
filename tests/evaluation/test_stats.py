"""Fold statistics against independent formulas and a published Tukey HSD example: sample std
(ddof=1, not the population one), t intervals (not normal ones), and significance that follows
the data."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neopain.errors import NeopainError
from neopain.evaluation.bootstrap import (
    RESAMPLES,
    _ResampledMetrics,
    subject_bootstrap,
    subject_groups,
)
from neopain.evaluation.stats import compare_runs, confidence_interval, mean_std
from neopain.runs.metrics import METRICS, binary_metrics

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


# --- the subject-level bootstrap of the pooled metrics (issue 24, point 5) ---

BOUNDED = [m for m in METRICS if m != "nll"]  # every metric but NLL lies in [0, 1]


def cohort(draw_or_rng, *, subjects: int, images: int, skill: float):
    """Pooled predictions of ``subjects`` infants with ``images`` images each, both labels,
    P(pain) that separates them by ``skill``: (y, prob, subject index)."""
    rng = draw_or_rng
    groups = np.repeat(np.arange(subjects), images)
    y = np.tile(np.arange(images) % 2, subjects)
    own = rng.normal(0, 0.15, subjects)[groups]  # each infant reads higher or lower
    prob = 1 / (1 + np.exp(-(skill * (y - 0.5) * 4 + own * 4 + rng.normal(0, 1, len(y)))))
    return y, prob.round(4), groups


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), subjects=st.integers(6, 30), images=st.integers(2, 12),
       skill=st.floats(0.2, 2.0), threshold=st.sampled_from([0.3, 0.5, 0.7]))
def test_bootstrap_intervals_stay_in_range_and_hold_the_pooled_value(seed, subjects, images,
                                                                      skill, threshold):
    # guards: the t interval of the mean over folds gave recall [0.350, 1.123]
    y, prob, groups = cohort(np.random.default_rng(seed), subjects=subjects, images=images,
                             skill=skill)
    intervals = subject_bootstrap(y, prob, groups, threshold=threshold, resamples=400, seed=seed)
    point = binary_metrics(y, prob, threshold=threshold)
    for name in METRICS:
        interval = intervals[name]
        if math.isnan(point[name]):
            continue
        if name in BOUNDED:
            assert 0.0 <= interval.low <= interval.high <= 1.0, (name, interval)
        if name not in ("ece", "ece_mass", "mce"):  # biased upward by resampling, see below
            assert interval.low - 1e-9 <= point[name] <= interval.high + 1e-9, (name, interval)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), images=st.integers(2, 40), subjects=st.integers(2, 8),
       decimals=st.integers(1, 3))
def test_the_vectorised_metrics_of_a_resample_are_binary_metrics_of_its_images(seed, images,
                                                                               subjects,
                                                                               decimals):
    # the bootstrap recomputes the metrics on weighted counts; they must be the same metrics
    rng = np.random.default_rng(seed)
    y, prob = rng.integers(0, 2, images), rng.random(images).round(decimals)  # ties included
    groups = np.unique(rng.integers(0, subjects, images), return_inverse=True)[1]
    drawn = rng.integers(0, groups.max() + 1, (3, groups.max() + 1))
    values = _ResampledMetrics(y, prob, groups, threshold=0.5)(drawn)
    for b, draw in enumerate(drawn):
        weights = np.bincount(draw, minlength=groups.max() + 1)[groups]
        expected = binary_metrics(np.repeat(y, weights), np.repeat(prob, weights))
        assert values[:, b] == pytest.approx([expected[m] for m in METRICS], nan_ok=True)


def demo_folds():
    """5 folds of 3 infants each (4 images per infant) whose recall is 1, 1, 1, 2/3 and 0:
    the demo's recall of 0.736 ± 0.311 over 5 folds, in miniature."""
    rng = np.random.default_rng(3)
    y, prob, groups = [], [], []
    for fold, recall in enumerate([1.0, 1.0, 1.0, 2 / 3, 0.0]):
        for infant in range(3):
            caught = infant < round(recall * 3)
            y += [1, 1, 0, 0]
            prob += [0.8 if caught else 0.3, 0.7 if caught else 0.2] + list(rng.uniform(0, .4, 2))
            groups += [3 * fold + infant] * 4
    return np.array(y), np.array(prob), np.array(groups)


def test_the_demo_case_no_longer_gives_a_recall_interval_past_one():
    y, prob, groups = demo_folds()
    per_fold = [binary_metrics(y[groups // 3 == f], prob[groups // 3 == f])["recall"]
                for f in range(5)]
    assert confidence_interval(per_fold)[1] > 1.0  # the old t interval of the mean
    recall = subject_bootstrap(y, prob, groups)["recall"]
    assert 0.0 <= recall.low < binary_metrics(y, prob)["recall"] < recall.high <= 1.0


def test_resampling_is_by_subject_so_more_images_per_infant_do_not_narrow_the_interval():
    rng = np.random.default_rng(7)
    y, prob, groups = cohort(rng, subjects=12, images=4, skill=0.6)
    width = {}
    for copies in (1, 5):  # every infant's images, photographed 5 times over
        many = [np.repeat(a, copies) for a in (y, prob, groups)]
        interval = subject_bootstrap(*many)["accuracy"]
        width[copies] = interval.high - interval.low
        as_images = subject_bootstrap(many[0], many[1], np.arange(len(many[0])))["accuracy"]
        width[f"images {copies}"] = as_images.high - as_images.low
    assert width[5] == pytest.approx(width[1], rel=0.15)
    assert width["images 5"] < 0.6 * width["images 1"]  # what resampling images would claim


def test_an_undefined_resample_falls_back_to_the_percentile_interval_and_says_so():
    # 2 of 6 infants have pain images: some resamples draw none, recall is undefined there
    y = np.array([1, 0] * 2 + [0, 0] * 4)
    prob = np.array([0.9, 0.1, 0.4, 0.2] + [0.3, 0.1] * 4)
    intervals = subject_bootstrap(y, prob, np.repeat(np.arange(6), 2))
    recall = intervals["recall"]
    assert recall.method == "percentile" and 0 < recall.defined < RESAMPLES
    assert 0.0 <= recall.low <= 0.5 <= recall.high <= 1.0
    assert intervals["accuracy"].defined == RESAMPLES


def test_subject_groups_give_a_missing_subject_its_own_group():
    groups, by_subject = subject_groups(["a", "b", "a", "", None], images=5)
    assert groups[0] == groups[2] and len(set(groups.tolist())) == 4 and not by_subject
    assert subject_groups(["a", "b"], images=2)[1]
    with pytest.raises(NeopainError, match="at least 2 subjects"):
        subject_bootstrap([0, 1], [0.2, 0.8], [0, 0])
