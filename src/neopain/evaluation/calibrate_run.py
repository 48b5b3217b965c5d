"""Calibrate a trained run (``neopain calibrate``): per fold, fit a calibrator on the fold's
validation images (validation.csv) and apply it to its test images (predictions.csv).

The validation subjects of a fold trained or stopped its model, but were never tested on, so a
calibrator fitted on them is judged fairly on the test subjects; no test image is ever fitted
on. Each ``fold_K/`` gains calibrator.json, and predictions.csv gains ``prob_pain_calibrated``,
``pred_calibrated`` (calibrated P(pain) at or above the run's threshold) and
``prediction_set`` after its other columns; calibrating again replaces them.

Example::

    folds = calibrate_run("runs/ncnn", method="temperature", alpha=0.1)
    folds[0].raw["ece"], folds[0].calibrated["ece"]      # 0.21, 0.04
    folds[0].sets["referral"]                            # 0.18: share told "uncertain"
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from neopain.data.manifest import sha256_file
from neopain.errors import NeopainError
from neopain.evaluation.calibration import (
    DEFAULT_ALPHA,
    HISTOGRAM_BINS,
    fit_calibrator,
    set_summary,
)
from neopain.models.calibrator import BOTH, METHODS, Calibrator
from neopain.runs import (
    FoldFolder,
    FoldRun,
    RunError,
    load_run,
    load_validation,
    write_calibrated,
)
from neopain.runs.metrics import binary_metrics


@dataclass(frozen=True)
class FoldCalibration:
    """One fold calibrated.

    Attributes:
        index: the fold index K.
        calibrator: what was fitted on the fold's validation images (and written).
        raw, calibrated: the test metrics (``runs.metrics.METRICS``) of P(pain) before and
            after calibration, at the run's threshold.
        sets: how the test images' prediction sets did (``set_summary``: coverage, referral,
            decided_accuracy).
    """

    index: int
    calibrator: Calibrator
    raw: dict[str, float]
    calibrated: dict[str, float]
    sets: dict[str, float]


def _check_arguments(*, method: str, alpha: float, bins: int) -> None:
    if method not in METHODS:
        raise NeopainError(f"method={method!r} is not a calibration method; valid: "
                           f"{', '.join(METHODS)}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise NeopainError(f"alpha={alpha!r} must be between 0 and 1 (exclusive), e.g. 0.1 "
                           "(at most 10% of prediction sets miss the true label)")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise NeopainError(f"bins={bins!r} must be a whole number >= 2, e.g. 10")


def assessable(table: pd.DataFrame) -> np.ndarray:
    """Which rows the fold model could judge: all but those its ``assessable`` column marks 0
    (the NFCS scorer's faces without a usable mesh, scored a meaningless 0.5)."""
    if "assessable" not in table:
        return np.ones(len(table), dtype=bool)
    return table["assessable"].astype(str).str.strip().to_numpy() != "0"


def _fit(fold: FoldRun, *, model: str, method: str, alpha: float, bins: int) -> Calibrator:
    """The calibrator of one fold, fitted on its validation.csv alone."""
    file = FoldFolder(fold.path).validation
    validation = load_validation(fold)
    if validation.empty:
        raise RunError(f"{file}: has no rows: fold {fold.index} has no validation subjects; "
                       "make folds with validation subjects (neopain folds make --val-share "
                       "0.1) and train again")
    if "logit_pain" not in validation or fold.logit is None:
        raise RunError(f"{fold.path}: predictions.csv or validation.csv has no column "
                       "logit_pain; this run predates calibration: train it again with "
                       "neopain train to calibrate it")
    for name, table in (("validation.csv", validation), ("predictions.csv", fold.predictions)):
        if "subject" not in table:
            raise RunError(f"{fold.path / name}: has no column subject; calibration needs it to "
                           "prove that no test subject is fitted on")
    shared = set(validation["subject"]) & set(fold.predictions["subject"])
    if shared:
        # a count, not the subjects: a pseudonym is still a patient's key
        raise RunError(f"{fold.path}: {len(shared)} subject(s) in both validation.csv and "
                       "predictions.csv; a calibrator must never be fitted on a test subject")
    judged = validation[assessable(validation)]
    weights = FoldFolder(fold.path).model
    # the model the logits came from: a calibrator fits those weights only (CalibratedPredictor)
    model_id = {"model": model, **({"model_sha256": sha256_file(weights)}
                                   if weights.is_file() else {})}
    try:
        return fit_calibrator(judged["label"].to_numpy(dtype=int),
                              judged["logit_pain"].to_numpy(dtype=float), method=method,
                              alpha=alpha, bins=bins,
                              fitted_on={"fold": fold.index, "images": len(judged),
                                         "subjects": judged["subject"].nunique(), **model_id})
    except NeopainError as error:
        raise NeopainError(f"{file}: {error}") from None


def calibrate_run(run_dir: str | os.PathLike[str], *, method: str,
                  alpha: float = DEFAULT_ALPHA,
                  bins: int = HISTOGRAM_BINS) -> list[FoldCalibration]:
    """Fit ``method`` with a referral band at ``alpha`` on each fold's validation images, and
    write calibrator.json and the calibrated columns of predictions.csv.

    Every fold is fitted before any file is written: a fold that cannot be calibrated leaves
    the run as it was.

    Args:
        run_dir: the run folder (``runs/NAME``, from ``neopain train``).
        method: ``temperature``, ``platt``, ``isotonic`` or ``histogram``.
        alpha: the conformal error rate: a prediction set misses the true label at most this
            often over new subjects like the validation ones.
        bins: histogram bins (``histogram`` only).

    Returns:
        One ``FoldCalibration`` per fold, in fold order.

    Raises:
        NeopainError: a bad method, alpha or bins; a run without validation.csv (trained
            before calibration), a fold without validation images or with one class only.
        TableError: a bad cell in predictions.csv or validation.csv (line and column named).
    """
    _check_arguments(method=method, alpha=alpha, bins=bins)
    run = load_run(run_dir)
    model = str(run.config.get("model") or "")
    fitted = [(fold, _fit(fold, model=model, method=method, alpha=alpha, bins=bins))
              for fold in run.folds]
    results = []
    for fold, calibrator in fitted:
        # a face the model could not judge keeps its raw P and label (0.5, meaningless: the
        # fold model says so) and is referred, never given a single label by the band
        judged = assessable(fold.predictions)
        prob = np.where(judged, calibrator.probability(fold.logit), fold.prob)
        sets = [s if ok else BOTH for s, ok in zip(calibrator.prediction_sets(prob), judged)]
        pred = np.where(prob >= run.threshold, "pain", "nopain")
        write_calibrated(FoldFolder(fold.path), calibrator=calibrator, prob=prob, pred=pred,
                         sets=sets)
        results.append(FoldCalibration(
            index=fold.index, calibrator=calibrator,
            raw=binary_metrics(fold.y_true, fold.prob, threshold=run.threshold),
            calibrated=binary_metrics(fold.y_true, prob, threshold=run.threshold),
            sets=set_summary(fold.y_true, sets, labels=list(pred))))
    return results
