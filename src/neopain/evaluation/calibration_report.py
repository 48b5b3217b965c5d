"""A calibrated run in the report: raw and calibrated metrics side by side, conformal coverage
and referrals per fold and pooled, and the numbers a reliability diagram draws.

``neopain calibrate runs/NAME`` adds to each ``fold_K/predictions.csv`` the columns
``prob_pain_calibrated`` (calibrated P(pain)) and ``prediction_set`` (``pain``, ``nopain``, or
``pain|nopain``: uncertain, refer), and writes ``fold_K/calibrator.json`` with the method and the
conformal ``alpha``. A run without these columns is reported uncalibrated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from neopain.evaluation.calibration import set_summary
from neopain.evaluation.formats import (
    format_ci,
    format_mean_std,
    format_number,
    format_share,
    metric_label,
)
from neopain.evaluation.bootstrap import run_intervals
from neopain.evaluation.stats import MetricSummary, summarize
from neopain.models.calibrator import CALIBRATOR_FILE
from neopain.runs import CALIBRATED_COLUMNS, FoldFolder, Run, read_calibrator
from neopain.runs.metrics import (
    CALIBRATION_BINS,
    METRICS,
    binary_metrics,
    calibration_bins,
    calibration_errors,
    width_bin,
)

CALIBRATED_COLUMN, _, SET_COLUMN = CALIBRATED_COLUMNS


@dataclass(frozen=True)
class ReliabilityCurve:
    """The equal-width bins of a reliability diagram that hold images, as
    :func:`runs.metrics.calibration_bins` makes them: each bin's number (0 … bins − 1), mean
    P(pain), share of pain images and count, and the ECE over them."""

    bins: int
    index: np.ndarray
    mean_prob: np.ndarray
    pain_share: np.ndarray
    counts: np.ndarray
    ece: float


def reliability_curve(y_true: ArrayLike, prob: ArrayLike, *,
                      bins: int = CALIBRATION_BINS) -> ReliabilityCurve:
    """The points and counts of a reliability diagram (equal-width bins over [0, 1])."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(prob, dtype=float)
    parts = calibration_bins(p, bins=bins, strategy="width")
    return ReliabilityCurve(
        bins=bins,
        index=np.array([width_bin(p[i[0]], bins=bins) for i in parts], dtype=int),
        mean_prob=np.array([p[i].mean() for i in parts]),
        pain_share=np.array([y[i].mean() for i in parts]),
        counts=np.array([len(i) for i in parts], dtype=int),
        ece=calibration_errors(y, p, bins=bins)["ece"],
    )


@dataclass(frozen=True)
class SetSummary:
    """How a fold's (or the pooled) conformal prediction sets did: ``coverage`` (share holding
    the true label) against the target ``1 − alpha``, ``referral`` (share "uncertain"), and
    the accuracy of the sets holding one label. ``alpha`` is NaN when unknown."""

    images: int
    alpha: float
    coverage: float
    referral: float
    decided_accuracy: float

    @property
    def target(self) -> float:
        return 1.0 - self.alpha

    def to_dict(self) -> dict:
        return {"images": self.images, "alpha": self.alpha, "target_coverage": self.target,
                "coverage": self.coverage, "referral": self.referral,
                "decided_accuracy": self.decided_accuracy}


def _summary_of_sets(y: np.ndarray, sets: list[str], labels: list[str] | None, *,
                     alpha: float) -> SetSummary:
    found = set_summary(y, sets, labels)
    return SetSummary(len(y), alpha, found["coverage"], found["referral"],
                      found["decided_accuracy"])


@dataclass
class CalibrationEvaluation:
    """A calibrated run: ``per_fold`` and ``summary`` as in the raw evaluation but on
    ``prob_pain_calibrated``; the calibration ``methods``; conformal ``sets`` per fold and
    ``pooled_sets`` (empty / None without a ``prediction_set`` column); pooled labels and
    calibrated probabilities for the figures."""

    per_fold: pd.DataFrame
    summary: dict[str, MetricSummary]
    methods: list[str]
    pooled: tuple[np.ndarray, np.ndarray]
    sets: dict[int, SetSummary] = field(default_factory=dict)
    pooled_sets: SetSummary | None = None

    def to_dict(self) -> dict:
        """The ``calibrated`` part of summary.json."""
        return {
            "methods": self.methods,
            "metrics": {name: s.to_dict() for name, s in self.summary.items()},
            "per_fold": [{"fold": int(fold), "metrics": row.to_dict(),
                          **({"conformal": self.sets[fold].to_dict()} if self.sets else {})}
                         for fold, row in self.per_fold.iterrows()],
            "conformal": self.pooled_sets.to_dict() if self.pooled_sets else None,
        }


def evaluate_calibration(run: Run) -> tuple[CalibrationEvaluation | None, list[str]]:
    """The calibrated metrics and conformal sets of a run, and notes on what was left out.

    None when no fold has ``prob_pain_calibrated``, or when only some have it (a note says
    which lack it). Coverage is reported when every fold has ``prediction_set``; its target
    comes from each fold's ``calibrator.json`` (``alpha``).
    """
    have = [CALIBRATED_COLUMN in fold.predictions.columns for fold in run.folds]
    if not any(have):
        return None, []
    if not all(have):
        lacking = ", ".join(f"fold_{f.index}" for f, ok in zip(run.folds, have) if not ok)
        return None, [f"{lacking}: no {CALIBRATED_COLUMN} column while other folds have one; "
                      f"calibrated metrics are left out (run neopain calibrate {run.path})"]
    probs = {fold.index: fold.prob_calibrated for fold in run.folds}
    rows = {fold.index: binary_metrics(fold.y_true, probs[fold.index], threshold=run.threshold)
            for fold in run.folds}
    per_fold = pd.DataFrame.from_dict(rows, orient="index", columns=list(METRICS))
    per_fold.index.name = "fold"
    y = np.concatenate([fold.y_true for fold in run.folds])
    prob = np.concatenate([probs[fold.index] for fold in run.folds])
    calibrators = {fold.index: read_calibrator(FoldFolder(fold.path)) for fold in run.folds}
    methods = sorted({c.method for c in calibrators.values() if c is not None})
    intervals, _, interval_notes = run_intervals(run, prob=prob)
    evaluation = CalibrationEvaluation(
        per_fold, summarize(per_fold, binary_metrics(y, prob, threshold=run.threshold),
                            intervals=intervals), methods, (y, prob))
    notes = [f"fold {index}: no {CALIBRATOR_FILE}; the calibration method and alpha are "
             f"unknown" for index, c in calibrators.items() if c is None]
    # a metric undefined on some resamples may differ once calibration moves the labels; the
    # note on subjects is the raw metrics' own
    notes += [f"calibrated {note}" for note in interval_notes if " undefined on " in note]
    if not all(SET_COLUMN in fold.predictions.columns for fold in run.folds):
        return evaluation, notes
    alphas = {index: c.alpha if c is not None and c.alpha is not None else math.nan
              for index, c in calibrators.items()}
    sets = {fold.index: fold.prediction_sets for fold in run.folds}
    # the label each face was shown with (at the run's threshold): a set it contradicts refers
    labels = ({fold.index: list(fold.predictions["pred_calibrated"]) for fold in run.folds}
              if all("pred_calibrated" in fold.predictions for fold in run.folds) else None)
    evaluation.sets = {fold.index: _summary_of_sets(fold.y_true, sets[fold.index],
                                                    None if labels is None
                                                    else labels[fold.index],
                                                    alpha=alphas[fold.index])
                       for fold in run.folds}
    known = [a for a in alphas.values() if not math.isnan(a)]
    common = known[0] if len(known) == len(alphas) and len(set(known)) == 1 else math.nan
    if len(set(known)) > 1:
        notes.append("the folds' calibrators have different alpha; the pooled coverage has no "
                     "single target")
    evaluation.pooled_sets = _summary_of_sets(
        y, [s for fold in run.folds for s in sets[fold.index]],
        None if labels is None else [a for fold in run.folds for a in labels[fold.index]],
        alpha=common)
    return evaluation, notes


def comparison_rows(raw: dict[str, MetricSummary],
                    calibrated: dict[str, MetricSummary]) -> list[dict[str, str]]:
    """One row per metric: raw and calibrated mean ± std over folds, raw and calibrated pooled
    with its 95% interval."""
    def pooled(summary: MetricSummary) -> str:
        return f"{format_number(summary.pooled)} {format_ci(summary.ci_low, summary.ci_high)}"

    return [{"metric": metric_label(name),
             "raw": format_mean_std(raw[name].mean, raw[name].std),
             "calibrated": format_mean_std(calibrated[name].mean, calibrated[name].std),
             "raw_pooled": pooled(raw[name]),
             "calibrated_pooled": pooled(calibrated[name])} for name in raw]


def set_rows(evaluation: CalibrationEvaluation) -> list[dict[str, str]]:
    """One row per fold and a last ``pooled`` row: images, target coverage (1 − alpha),
    coverage, referral share, accuracy of the single-label sets."""
    items = [(str(fold), s) for fold, s in evaluation.sets.items()]
    if evaluation.pooled_sets is not None:
        items.append(("pooled", evaluation.pooled_sets))
    return [{"fold": name, "images": str(s.images), "target": format_share(s.target),
             "coverage": format_share(s.coverage), "referral": format_share(s.referral),
             "decided_accuracy": format_share(s.decided_accuracy)} for name, s in items]


def coverage_spread(evaluation: CalibrationEvaluation) -> str:
    """A sentence on how far a fold's coverage strays from its target by chance (one binomial
    standard error of the test images at the mean fold size, a lower bound: the band's own
    validation images add to it); empty without sets or a common alpha."""
    pooled = evaluation.pooled_sets
    if pooled is None or math.isnan(pooled.alpha):
        return ""
    images = pooled.images / len(evaluation.sets)
    error = 100 * math.sqrt(pooled.alpha * (1 - pooled.alpha) / images)
    return (f"A fold's coverage strays from the target by chance: drawing {images:.0f} test "
            f"images alone moves it by about {error:.1f} points (one standard error at "
            f"α = {pooled.alpha:g}), and the few validation images its band was fitted on move "
            f"it more; hold the pooled coverage against the target.")
