"""Binary pain / no-pain metrics on arrays: labels are 0 (nopain) or 1 (pain), prob = P(pain).

Pure functions over scikit-learn. A metric that is undefined on the data (AUC when only one
class is present, precision when nothing is predicted pain, ...) is NaN, never 0, and
:func:`metric_notes` says why.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from neopain.errors import NeopainError

METRICS = (
    "accuracy", "precision", "recall", "specificity", "f1", "auc", "balanced_accuracy", "brier",
    "nll", "ece", "ece_mass", "mce",
)  # fmt: skip
"""The metrics of :func:`binary_metrics`, in report order. recall is sensitivity; the last four
say whether P(pain) means what it says (:func:`calibration_errors`)."""

LOWER_IS_BETTER = frozenset({"brier", "nll", "ece", "ece_mass", "mce"})
CALIBRATION_BINS = 15
"""Bins of the calibration errors and reliability diagrams (Guo et al. 2017 use 15)."""


def _labels_and_probs(y_true: ArrayLike, prob: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(prob, dtype=float)
    if y.ndim != 1 or p.ndim != 1 or len(y) != len(p):
        raise NeopainError(f"y_true and prob must be 1-D of equal length; got shapes "
                           f"{y.shape} and {p.shape}")
    if len(y) == 0:
        raise NeopainError("y_true is empty; metrics need at least one prediction")
    if not np.isin(y, (0, 1)).all():
        bad = sorted({str(v) for v in y[~np.isin(y, (0, 1))]})[:5]
        raise NeopainError(f"y_true must hold 0 (nopain) or 1 (pain); got {', '.join(bad)}")
    if not (np.isfinite(p) & (p >= 0) & (p <= 1)).all():
        bad = p[~(np.isfinite(p) & (p >= 0) & (p <= 1))][:5]
        raise NeopainError(f"prob must be probabilities in [0, 1]; got {bad.tolist()}")
    return y.astype(int), p


def predict(prob: ArrayLike, *, threshold: float = 0.5) -> np.ndarray:
    """Predicted labels: 1 (pain) where ``prob >= threshold``, else 0."""
    if not 0.0 < threshold < 1.0:
        raise NeopainError(f"threshold={threshold!r} must be strictly between 0 and 1")
    return (np.asarray(prob, dtype=float) >= threshold).astype(int)


def binary_metrics(y_true: ArrayLike, prob: ArrayLike, *,
                   threshold: float = 0.5) -> dict[str, float]:
    """The metrics of ``METRICS`` for one set of predictions.

    Threshold metrics use ``prob >= threshold`` as pain; AUC, Brier, NLL and the calibration
    errors use ``prob``.
    Undefined metrics are NaN (see :func:`metric_notes`).

    Raises:
        NeopainError: labels other than 0/1, probabilities outside [0, 1], unequal lengths.
    """
    y, p = _labels_and_probs(y_true, prob)
    pred = predict(p, threshold=threshold)
    both = len(np.unique(y)) == 2
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=np.nan)),
        "recall": float(recall_score(y, pred, zero_division=np.nan)),
        "specificity": float(recall_score(y, pred, pos_label=0, zero_division=np.nan)),
        "f1": float(f1_score(y, pred, zero_division=np.nan)),
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        # sklearn warns and averages over the one class present; undefined is clearer
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if both else float("nan"),
        "brier": float(brier_score_loss(y, p, pos_label=1)),
        "nll": float(log_loss(y, p, labels=[0, 1])),
        **calibration_errors(y, p),
    }


def width_bin(prob: ArrayLike, *, bins: int = CALIBRATION_BINS) -> np.ndarray:
    """The equal-width bin (0 … bins − 1) of each P over [0, 1]; a P of 1 in the last."""
    return np.minimum((np.asarray(prob, dtype=float) * bins).astype(int), bins - 1)


def calibration_bins(prob: ArrayLike, *, bins: int = CALIBRATION_BINS,
                     strategy: str = "width") -> list[np.ndarray]:
    """The indices of ``prob`` in each non-empty bin: ``width``, equal-width bins over [0, 1]
    (a P of 1 in the last); ``mass``, ``bins`` bins of nearly equal counts in order of P."""
    p = np.asarray(prob, dtype=float)
    if strategy == "width":
        which = width_bin(p, bins=bins)
        return [np.flatnonzero(which == b) for b in range(bins) if (which == b).any()]
    if strategy == "mass":
        return [part for part in np.array_split(np.argsort(p, kind="stable"), bins) if len(part)]
    raise NeopainError(f"strategy={strategy!r}; valid: width, mass")


def calibration_errors(y_true: ArrayLike, prob: ArrayLike, *,
                       bins: int = CALIBRATION_BINS) -> dict[str, float]:
    """How far P(pain) is from the share of pain among images given about that P.

    ``ece``: the mean over equal-width bins of |share of pain - mean P|, weighted by the bins'
    counts; ``ece_mass`` the same over equal-mass bins; ``mce`` the largest gap of an
    equal-width bin. 0 is perfect. (scikit-learn's ``calibration_curve`` gives the points of a
    reliability diagram but not the bins' counts these need.)
    """
    y, p = _labels_and_probs(y_true, prob)

    def gaps(strategy: str) -> tuple[np.ndarray, np.ndarray]:
        parts = calibration_bins(p, bins=bins, strategy=strategy)
        return (np.array([abs(y[i].mean() - p[i].mean()) for i in parts]),
                np.array([len(i) for i in parts]))

    width, counts = gaps("width")
    mass, mass_counts = gaps("mass")
    return {"ece": float(width @ counts / counts.sum()),
            "ece_mass": float(mass @ mass_counts / mass_counts.sum()),
            "mce": float(width.max())}


def metric_notes(y_true: ArrayLike, prob: ArrayLike, *, threshold: float = 0.5) -> list[str]:
    """Why metrics of :func:`binary_metrics` are NaN on these predictions (empty when none)."""
    y, p = _labels_and_probs(y_true, prob)
    pred = predict(p, threshold=threshold)
    notes = []
    if not y.any():
        notes.append("no pain images: recall, AUC and balanced accuracy are undefined")
    if y.all():
        notes.append("no nopain images: specificity, AUC and balanced accuracy are undefined")
    if not pred.any():
        notes.append("nothing predicted pain: precision is undefined"
                     + ("" if y.any() else ", and so is F1"))
    return notes


def confusion(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    """2×2 counts: rows true nopain, pain; columns predicted nopain, pain."""
    return confusion_matrix(np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int),
                            labels=[0, 1])


def roc_points(y_true: ArrayLike, prob: ArrayLike) -> tuple[np.ndarray, np.ndarray] | None:
    """ROC curve as (false positive rate, true positive rate); None with only one class."""
    y, p = _labels_and_probs(y_true, prob)
    if len(np.unique(y)) < 2:
        return None
    fpr, tpr, _ = roc_curve(y, p)
    return fpr, tpr
