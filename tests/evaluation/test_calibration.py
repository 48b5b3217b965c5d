"""Calibrators and the conformal band (issue 20): fitted on validation images, they must make
P(pain) mean what it says on new images, keep the ranking where promised, travel as JSON
unchanged, and give prediction sets that cover the truth at the rate promised."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from neopain.errors import NeopainError
from neopain.evaluation.calibration import (
    conformal_quantile,
    fit_calibrator,
    set_summary,
)
from neopain.models.calibrator import (
    BOTH, METHODS, NONE, NOPAIN, PAIN, Calibrator, logit_of, sigmoid,
)
from neopain.runs.metrics import binary_metrics, calibration_bins, calibration_errors


def overconfident(n: int, *, seed: int, stretch: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(z), logits reported ``stretch`` times too large."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n)
    y = (rng.uniform(size=n) < sigmoid(z)).astype(int)
    return y, z * stretch


@pytest.mark.parametrize("method", METHODS)
def test_each_calibrator_fitted_on_validation_makes_test_probabilities_honest(method):
    y_val, z_val = overconfident(3000, seed=1)
    y_test, z_test = overconfident(6000, seed=2)
    raw = calibration_errors(y_test, sigmoid(z_test))["ece"]
    calibrator = fit_calibrator(y_val, z_val, method=method, alpha=None)
    fitted = calibration_errors(y_test, calibrator.probability(z_test))["ece"]
    assert raw > 0.1, raw
    assert fitted < 0.04, (method, raw, fitted)


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_monotone_calibrators_keep_the_ranking_and_the_labels_at_one_half(method):
    y_val, z_val = overconfident(2000, seed=3)
    y_test, z_test = overconfident(2000, seed=4)
    p = fit_calibrator(y_val, z_val, method=method, alpha=None).probability(z_test)
    assert roc_auc_score(y_test, p) == pytest.approx(roc_auc_score(y_test, z_test), abs=1e-12)
    if method == "temperature":  # sigmoid(z / t) >= 0.5 exactly when z >= 0
        assert ((p >= 0.5) == (z_test >= 0)).all()


def test_temperature_recovers_the_stretch_it_was_given():
    y, z = overconfident(20000, seed=5, stretch=3.0)
    assert fit_calibrator(y, z, method="temperature", alpha=None).params["t"] == \
        pytest.approx(3.0, rel=0.08)


@pytest.mark.parametrize("method", METHODS)
def test_a_calibrator_survives_json_unchanged(method):
    y, z = overconfident(500, seed=6)
    calibrator = fit_calibrator(y, z, method=method, alpha=0.1, fitted_on={"fold": 2})
    again = Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    probe = np.linspace(-30, 30, 601)
    np.testing.assert_array_equal(again.probability(probe), calibrator.probability(probe))
    assert again.quantile == calibrator.quantile and again.fitted_on == {"fold": 2}


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_conformal_sets_cover_new_images_at_one_minus_alpha(alpha):
    """Over many draws of validation and test images the sets hold the true label in
    1 - alpha of test images or a little more (split conformal's promise)."""
    coverages = []
    for seed in range(40):
        y_val, z_val = overconfident(400, seed=100 + seed)
        y_test, z_test = overconfident(400, seed=200 + seed)
        calibrator = fit_calibrator(y_val, z_val, method="temperature", alpha=alpha)
        sets = calibrator.prediction_sets(calibrator.probability(z_test))
        coverages.append(set_summary(y_test, sets)["coverage"])
    assert 1 - alpha - 0.01 <= np.mean(coverages) <= 1 - alpha + 0.03, np.mean(coverages)


def test_the_conformal_threshold_is_the_finite_sample_rank():
    y = np.array([1] * 9)
    p = np.linspace(0.1, 0.9, 9)  # scores 1 - p: 0.1 .. 0.9
    assert conformal_quantile(y, p, alpha=0.2) == pytest.approx(0.8)  # ceil(10 * 0.8) = 8th
    assert conformal_quantile(y, p, alpha=0.05) == 1.0  # rank 10 > 9 images: refer them all


def test_sets_name_one_label_only_when_the_other_is_excluded():
    calibrator = Calibrator(method="temperature", params={"t": 1.0}, alpha=0.1, quantile=0.3)
    # narrow (quantile < 0.5): a P between 0.3 and 0.7 excludes both labels: the empty set,
    # referred like both, never a label
    assert calibrator.prediction_sets([0.9, 0.1, 0.5, 0.72, 0.28, 0.65]) == \
        [PAIN, NOPAIN, NONE, PAIN, NOPAIN, NONE]
    wide = Calibrator(method="temperature", params={"t": 1.0}, alpha=0.1, quantile=0.8)
    assert wide.prediction_sets([0.9, 0.1, 0.5]) == [PAIN, NOPAIN, BOTH]


def test_set_summary_counts_both_as_covered_an_empty_set_as_a_miss_and_both_as_referred():
    summary = set_summary([1, 0, 1, 0, 1], [PAIN, PAIN, BOTH, NOPAIN, NONE])
    assert summary == {"coverage": 0.6, "referral": 0.4, "decided_accuracy": 2 / 3}


@pytest.mark.parametrize(("data", "says"), [
    ({"method": "softmax", "params": {}}, "valid: temperature, platt, isotonic, histogram"),
    ({"method": "temperature", "params": {"t": -1}}, "t=-1 must be positive"),
    ({"method": "temperature", "params": {"t": 1, "u": 2}}, "params must be exactly t"),
    ({"method": "platt", "params": {"a": "x", "b": 0}}, "a='x' must be a finite number"),
    ({"method": "isotonic", "params": {"x": [0, 1], "y": [0.9, 0.1]}}, "non-decreasing"),
    ({"method": "histogram", "params": {"edges": [0, 1], "values": [0.5, 0.5]}}, "one longer"),
    ({"method": "temperature", "params": {"t": 1}, "alpha": 0.1}, "go together"),
    ({"method": "temperature", "params": {"t": 1}, "alpha": 1.5, "quantile": 0.2},
     "alpha=1.5 must be between 0 and 1"),
    ([1, 2], "must be a mapping"),
    # guards (review of issue 20): these raised ValueError / TypeError tracebacks
    ({"method": "isotonic", "params": {"x": ["a", "b"], "y": [0, 1]}}, "x must be a non-empty"),
    ({"method": "isotonic", "params": {"x": [[0, 1], [2]], "y": [0, 1]}}, "x must be a non-emp"),
    ({"method": "temperature", "params": {"t": 10 ** 400}}, "must be a finite number"),
])
def test_a_damaged_calibrator_is_refused_naming_what_is_wrong(data, says):
    with pytest.raises(NeopainError, match="calibrator.json") as caught:
        Calibrator.from_dict(data, where="fold_0/calibrator.json")
    assert says in str(caught.value)


def test_fitting_refuses_too_few_images_or_one_class():
    with pytest.raises(NeopainError, match="at least 10"):
        fit_calibrator([0, 1] * 3, [0.1] * 6, method="platt")
    with pytest.raises(NeopainError, match="one class only"):
        fit_calibrator([1] * 20, np.linspace(-1, 1, 20), method="platt")


def test_probabilities_rounded_to_zero_or_one_still_have_a_logit():
    z = logit_of([0.0, 1.0, 0.5])
    assert np.isfinite(z).all() and z[0] < -15 and z[1] > 15 and z[2] == 0


def test_calibration_errors_are_zero_when_each_bin_holds_its_rate_and_large_when_not():
    p = np.repeat([0.05, 0.35, 0.65, 0.95], 20)
    y = np.concatenate([np.r_[np.ones(1), np.zeros(19)], np.r_[np.ones(7), np.zeros(13)],
                        np.r_[np.ones(13), np.zeros(7)], np.r_[np.ones(19), np.zeros(1)]])
    honest = calibration_errors(y, p)
    assert honest["ece"] == pytest.approx(0, abs=1e-12) and honest["mce"] == pytest.approx(0)
    flipped = calibration_errors(1 - y, p)
    # rates 0.95, 0.65, 0.35, 0.05 against P 0.05, 0.35, 0.65, 0.95: gaps 0.9, 0.3, 0.3, 0.9
    assert flipped["ece"] == pytest.approx(0.6) and flipped["mce"] == pytest.approx(0.9)
    assert binary_metrics(y, p)["ece"] == honest["ece"]


def test_equal_mass_bins_hold_nearly_equal_counts_and_every_image_once():
    p = np.random.default_rng(7).beta(0.3, 0.3, 1003)
    parts = calibration_bins(p, bins=15, strategy="mass")
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1
    assert sorted(np.concatenate(parts).tolist()) == list(range(1003))
    width = calibration_bins(np.array([0.0, 1.0, 0.5]), bins=15)
    assert [part.tolist() for part in width] == [[0], [2], [1]]


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_a_small_separable_validation_set_cannot_drive_a_fit_to_certainty(method):
    """Guards (review of issue 20): 20 validation images the model separated drove the
    temperature to its bound 0.01 (P = sigmoid(100 z)) and Platt's slope to 7, making the model
    surer still and the referral band refer no one."""
    z = np.r_[np.linspace(-3, -0.5, 10), np.linspace(0.5, 3, 10)]
    y = np.r_[np.zeros(10), np.ones(10)].astype(int)
    calibrator = fit_calibrator(y, z, method=method, alpha=0.1)
    assert calibrator.probability(np.array([3.0]))[0] < 0.99
    assert calibrator.quantile > 0.05


def test_the_conformal_rank_is_not_pushed_up_by_rounding():
    # (19 + 1) * (1 - 0.7) = 6.000000000000001 in floating point: the 6th score, not the 7th
    scores = np.linspace(0.05, 0.95, 19)
    assert conformal_quantile(np.ones(19, int), 1 - scores, alpha=0.7) == \
        pytest.approx(scores[5])


def test_a_set_its_label_contradicts_counts_as_referred_not_decided():
    # guards: evaluate reporting fewer referrals than the nurse is given when the threshold
    # is below 0.5 (a one-label set the shown label contradicts is referred, calibrator.refers)
    y = [1, 0, 1, 0]
    sets = ["nopain", "nopain", "pain", "pain|nopain"]
    plain = set_summary(y, sets)
    shown = set_summary(y, sets, ["pain", "nopain", "pain", "pain"])
    assert plain == {"coverage": 0.75, "referral": 0.25, "decided_accuracy": 2 / 3}
    assert shown == {"coverage": 0.75, "referral": 0.5, "decided_accuracy": 1.0}
