"""Fit a ``models.calibrator.Calibrator`` on a fold's validation subjects, and judge prediction
sets.

Calibrators are fitted on labelled images of subjects the fold's model never tested on (its
validation subjects); applied to its test subjects they are judged by the calibration errors of
``runs.metrics``. The conformal band is fitted on the same images, after calibration: its
threshold is the ``ceil((n + 1)(1 - alpha))``-th smallest ``1 - P(true label)`` (split conformal,
Vovk et al. 2005; Angelopoulos & Bates 2021), so a new image's set holds its true label with
probability at least ``1 - alpha`` when new subjects are like the validation subjects.

Example::

    calibrator = fit_calibrator(y_val, logit_val, method="temperature", alpha=0.1)
    p_test = calibrator.probability(logit_test)
    sets = calibrator.prediction_sets(p_test)
    set_summary(y_test, sets)      # {"coverage": 0.91, "referral": 0.18, ...}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize_scalar
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from neopain.errors import NeopainError
from neopain.models.calibrator import (
    BOTH, METHODS, NOPAIN, PAIN, SETS, Calibrator, refers, sigmoid,
)

DEFAULT_ALPHA = 0.1
HISTOGRAM_BINS = 10
MIN_IMAGES = 10
"""Fewer validation images than this cannot fit a calibrator worth trusting."""


def _checked(y_true: ArrayLike, logit: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    z = np.asarray(logit, dtype=float)
    if y.ndim != 1 or z.shape != y.shape:
        raise NeopainError(f"labels and logits must be 1-D of equal length; got {y.shape} and "
                           f"{z.shape}")
    if len(y) < MIN_IMAGES:
        raise NeopainError(f"{len(y)} validation images; a calibrator needs at least "
                           f"{MIN_IMAGES} (give the folds more validation subjects)")
    if not np.isin(y, (0, 1)).all() or not np.isfinite(z).all():
        raise NeopainError("labels must be 0 (nopain) or 1 (pain) and logits finite")
    if len(np.unique(y)) < 2:
        raise NeopainError("the validation images hold one class only; a calibrator needs "
                           "both pain and nopain images")
    return y.astype(int), z


def soft_targets(y: np.ndarray) -> np.ndarray:
    """Platt's (1999) targets: (N+ + 1) / (N+ + 2) for pain, 1 / (N- + 2) for no pain, so that
    a few validation images a model happens to separate cannot drive a fit to certainty (a
    temperature near 0, which would also make the referral band refer no one)."""
    pain = int(y.sum())
    return np.where(y == 1, (pain + 1) / (pain + 2), 1 / (len(y) - pain + 2))


def _temperature(y: np.ndarray, z: np.ndarray) -> dict[str, float]:
    # one number minimizing the NLL; scikit-learn's temperature scaling (CalibratedClassifierCV)
    # wants an estimator and keeps T in a private class, and T must go into the ONNX file
    target = soft_targets(y)

    def nll(log_t: float) -> float:
        scaled = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, scaled) - target * scaled))

    found = minimize_scalar(nll, bounds=(math.log(0.01), math.log(100.0)), method="bounded",
                            options={"xatol": 1e-6})
    return {"t": math.exp(float(found.x))}


def _platt(y: np.ndarray, z: np.ndarray) -> dict[str, float]:
    # the soft targets as weights: each image once as pain (weight t) and once as no pain (1 - t)
    target = soft_targets(y)
    model = LogisticRegression(C=np.inf).fit(
        np.concatenate([z, z]).reshape(-1, 1), np.r_[np.ones(len(z)), np.zeros(len(z))],
        sample_weight=np.r_[target, 1 - target])
    return {"a": float(model.coef_[0, 0]), "b": float(model.intercept_[0])}


def _isotonic(y: np.ndarray, z: np.ndarray) -> dict[str, list[float]]:
    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(sigmoid(z), y)
    return {"x": model.X_thresholds_.tolist(), "y": model.y_thresholds_.tolist()}


def _histogram(y: np.ndarray, z: np.ndarray, *, bins: int) -> dict[str, list[float]]:
    # equal-mass bins (Zadrozny & Elkan 2001); no library fits this, it is a few lines
    raw = sigmoid(z)
    inner = np.unique(np.quantile(raw, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = np.concatenate([[0.0], inner[(inner > 0) & (inner < 1)], [1.0 + 1e-12]])
    which = np.clip(np.searchsorted(edges, raw, side="right") - 1, 0, len(edges) - 2)
    values = [float(y[which == b].mean()) if (which == b).any() else float(edges[b:b + 2].mean())
              for b in range(len(edges) - 1)]
    return {"edges": edges.tolist(), "values": values}


def conformal_quantile(y_true: ArrayLike, prob: ArrayLike, *, alpha: float) -> float:
    """The split-conformal threshold on ``1 - P(true label)`` for error rate ``alpha``: the
    ``ceil((n + 1)(1 - alpha))``-th smallest score, or 1 (every set holds both labels) when
    there are too few images for that rank."""
    if not 0 < alpha < 1:
        raise NeopainError(f"alpha={alpha!r} must be between 0 and 1 (exclusive), e.g. 0.1")
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(prob, dtype=float)
    scores = np.sort(np.where(y == 1, 1.0 - p, p))
    # ceil((n + 1)(1 - alpha)), less a hair: (19 + 1) * (1 - 0.7) is 6.000000000000001
    rank = math.ceil((len(scores) + 1) * (1 - alpha) - 1e-9)
    return 1.0 if rank > len(scores) else float(scores[rank - 1])


def fit_calibrator(y_true: ArrayLike, logit: ArrayLike, *, method: str,
                   alpha: float | None = DEFAULT_ALPHA, bins: int = HISTOGRAM_BINS,
                   fitted_on: Mapping[str, Any] | None = None) -> Calibrator:
    """Fit ``method`` on validation labels and raw logits, then the conformal band at
    ``alpha`` on the calibrated probabilities (None: no band).

    Raises:
        NeopainError: an unknown method, fewer than ``MIN_IMAGES`` images, one class only.
    """
    if method not in METHODS:
        raise NeopainError(f"method={method!r}; valid: {', '.join(METHODS)}")
    y, z = _checked(y_true, logit)
    params = (_histogram(y, z, bins=bins) if method == "histogram"
              else {"temperature": _temperature, "platt": _platt,
                    "isotonic": _isotonic}[method](y, z))
    calibrator = Calibrator(method=method, params=params, fitted_on=dict(fitted_on or {}))
    if alpha is None:
        return calibrator
    quantile = conformal_quantile(y, calibrator.probability(z), alpha=alpha)
    return Calibrator(method=method, params=params, alpha=alpha, quantile=quantile,
                      fitted_on=calibrator.fitted_on)


def set_summary(y_true: ArrayLike, sets: Sequence[str],
                labels: Sequence[str] | None = None) -> dict[str, float]:
    """How prediction sets did: ``coverage`` (share holding the true label: what the band
    guarantees), ``referral`` (share referred, "uncertain": both labels or none, and with
    ``labels`` — each face's label at the model's threshold — also one label its label
    contradicts, ``models.calibrator.refers``), and the accuracy of the faces decided
    (``decided_accuracy``, NaN when none is)."""
    y = np.asarray(y_true, dtype=int)
    s = np.asarray(sets)
    if len(s) != len(y) or not len(y):
        raise NeopainError(f"{len(y)} labels and {len(s)} sets; one set per label, at least one")
    if labels is not None and len(labels) != len(s):
        raise NeopainError(f"{len(labels)} predicted labels and {len(s)} sets; one each")
    unknown = sorted(set(s) - set(SETS))
    if unknown:
        raise NeopainError(f"prediction set {unknown[0]!r}; valid: {', '.join(SETS)}")
    truth = np.where(y == 1, PAIN, NOPAIN)
    covered = (s == BOTH) | (s == truth)  # an empty set covers nothing (it is still referred)
    decided = np.array([not refers(one, label) for one, label
                        in zip(s, s if labels is None else labels)], dtype=bool)
    return {"coverage": float(covered.mean()), "referral": float((~decided).mean()),
            "decided_accuracy": float((s[decided] == truth[decided]).mean()) if decided.any()
            else math.nan}
