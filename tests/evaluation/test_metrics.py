"""Binary metrics against values worked out by hand on 8 predictions, and NaN (never 0) where
a metric is undefined: a fold with one class has no AUC."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neopain.errors import NeopainError
from neopain.runs.metrics import (
    METRICS, binary_metrics, confusion, metric_notes, predict, roc_points,
)

# 3 pain, 5 nopain; at 0.5: TP 2 (0.9, 0.6), FN 1 (0.4), FP 2 (0.7, 0.55), TN 3
Y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
P = np.array([0.9, 0.6, 0.4, 0.2, 0.7, 0.1, 0.3, 0.55])


def test_metrics_equal_hand_computed_values():
    m = binary_metrics(Y, P)
    assert list(m) == list(METRICS)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 3 / 5) / 2)
    # pain above nopain in 5 + 4 + 3 of the 3 x 5 pairs
    assert m["auc"] == pytest.approx(12 / 15)
    squared = [0.1, 0.4, 0.6, 0.2, 0.7, 0.1, 0.3, 0.55]
    assert m["brier"] == pytest.approx(sum(d * d for d in squared) / 8)


def test_threshold_moves_the_threshold_metrics_only():
    m = binary_metrics(Y, P, threshold=0.65)  # predicted pain: 0.9 and 0.7
    assert (m["accuracy"], m["precision"], m["recall"], m["specificity"]) == pytest.approx(
        (5 / 8, 1 / 2, 1 / 3, 4 / 5))
    assert m["auc"] == pytest.approx(12 / 15)
    assert predict([0.5, 0.4999], threshold=0.5).tolist() == [1, 0]


def test_confusion_rows_are_true_columns_predicted():
    assert confusion(Y, predict(P)).tolist() == [[3, 2], [1, 2]]
    assert confusion([1, 1], [1, 1]).tolist() == [[0, 0], [0, 2]]  # always 2x2


def test_roc_points_of_the_textbook_example():
    fpr, tpr = roc_points([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert fpr.tolist() == [0, 0, 0.5, 0.5, 1]
    assert tpr.tolist() == [0, 0.5, 0.5, 1, 1]
    assert roc_points([0, 0], [0.1, 0.2]) is None


def test_one_class_fold_gives_nan_auc_with_a_note_not_zero():
    m = binary_metrics([0, 0, 0], [0.1, 0.2, 0.7])
    for name in ("auc", "recall", "balanced_accuracy"):
        assert math.isnan(m[name]), name
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(2 / 3)
    assert any("AUC" in note for note in metric_notes([0, 0, 0], [0.1, 0.2, 0.7]))
    nothing_predicted = binary_metrics([1, 0], [0.2, 0.1])
    assert math.isnan(nothing_predicted["precision"]) and nothing_predicted["recall"] == 0
    assert metric_notes(Y, P) == []


@pytest.mark.parametrize(("y", "p", "says"), [
    ([0, 2], [0.1, 0.2], "0 (nopain) or 1 (pain); got 2"),
    ([0, 1], [0.1, 1.2], "[0, 1]; got [1.2]"),
    ([0, 1], [0.1, float("nan")], "[0, 1]"),
    ([0, 1], [0.1], "equal length"),
    ([], [], "empty"),
])
def test_bad_input_is_refused_naming_the_value(y, p, says):
    with pytest.raises(NeopainError) as error:
        binary_metrics(y, p)
    assert says in str(error.value)
