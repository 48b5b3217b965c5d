"""95% intervals of a run's pooled metrics by a subject-level (cluster) bootstrap.

The images of one infant are not independent, and a handful of folds is too few for a t
interval (it gave recall "[0.350, 1.123]" over 5 folds). So the interval is drawn from the
pooled out-of-fold predictions: subjects are resampled with replacement, each keeping all its
images, every metric is recomputed on the resample, and ``scipy.stats.bootstrap`` gives the
bias-corrected and accelerated (BCa) interval (Efron & Tibshirani 1993, ch. 14), the
jackknife leaving out one subject at a time. A BCa interval is a pair of percentiles of the
resampled values, so it never leaves the metric's range ([0, 1] for all but NLL).

Where BCa cannot be computed (every resample gives the same value, e.g. an AUC of 1.0) or a
metric is undefined on some resamples (no pain image drawn: no recall), the interval is the
percentile one over the resamples where the metric is defined, and :attr:`Interval.method`
says so.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from neopain.errors import NeopainError
from neopain.runs import Run
from neopain.runs.metrics import CALIBRATION_BINS, METRICS, predict, width_bin

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
_CELLS_PER_BATCH = 2_000_000
"""Resamples × images evaluated at once (about 16 MB a float array)."""



def method_text(*, by_subject: bool = True) -> str:
    """How the intervals are made, as the reports state it."""
    unit = "subject" if by_subject else "image"
    return (f"{unit}-level bootstrap of the pooled predictions ({RESAMPLES} resamples of the "
            f"{unit}s with replacement, seed {SEED}; BCa, else percentile)")


@dataclass(frozen=True)
class Interval:
    """One metric's interval: ``method`` is ``BCa``, or ``percentile`` where BCa cannot be
    computed; ``defined`` counts the resamples on which the metric is defined."""

    low: float
    high: float
    method: str
    defined: int


class _ResampledMetrics:
    """Every metric of ``METRICS`` on many weighted copies of the predictions at once.

    A resample is a weight per image: how often its subject was drawn. scikit-learn's metrics
    take one resample per call (2000 × 12 calls, tens of seconds); these are the same formulas
    on weighted counts, computed for a whole batch of resamples in a few array operations
    (a test holds them equal to :func:`neopain.runs.metrics.binary_metrics`).
    """

    def __init__(self, y: np.ndarray, prob: np.ndarray, groups: np.ndarray, *,
                 threshold: float) -> None:
        order = np.argsort(prob, kind="stable")  # by P, as the AUC and equal-mass bins need
        self.y = y[order].astype(float)
        self.prob = prob[order]
        self.groups = groups[order]
        self.n_groups = int(groups.max()) + 1
        pred = predict(self.prob, threshold=threshold).astype(float)
        self.cells = np.stack([self.y * pred, (1 - self.y) * pred, self.y * (1 - pred),
                               (1 - self.y) * (1 - pred)])  # tp, fp, fn, tn
        self.brier = (self.prob - self.y) ** 2
        eps = np.finfo(float).eps  # scikit-learn's log_loss clips P to [eps, 1 − eps]
        clipped = np.clip(self.prob, eps, 1 - eps)
        self.nll = -(self.y * np.log(clipped) + (1 - self.y) * np.log(1 - clipped))
        self.bins = np.eye(CALIBRATION_BINS)[width_bin(self.prob)]  # images × bins
        starts = np.flatnonzero(np.r_[True, np.diff(self.prob) > 0])  # runs of equal P
        tie = np.cumsum(np.r_[True, np.diff(self.prob) > 0]) - 1
        self.tie_start, self.tie_end = starts[tie], np.r_[starts[1:], len(self.prob)][tie]

    def __call__(self, drawn: np.ndarray, axis: int = -1) -> np.ndarray:
        """Metrics (len(METRICS), *batch) of resamples of group indices (*batch, subjects)."""
        drawn = np.moveaxis(np.asarray(drawn, dtype=int), axis, -1)
        batch = drawn.shape[:-1]
        flat = drawn.reshape(-1, drawn.shape[-1])
        offsets = self.n_groups * np.arange(len(flat))[:, None]
        counts = np.bincount((flat + offsets).ravel(), minlength=len(flat) * self.n_groups)
        weights = counts.reshape(len(flat), self.n_groups)[:, self.groups].astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = self._metrics(weights)
        return np.stack([values[name] for name in METRICS]).reshape(len(METRICS), *batch)

    def _metrics(self, w: np.ndarray) -> dict[str, np.ndarray]:
        tp, fp, fn, tn = (w @ cell for cell in self.cells)
        total = w.sum(axis=1)
        pain, nopain = tp + fn, fp + tn
        both = (pain > 0) & (nopain > 0)
        recall, specificity = tp / pain, tn / nopain
        in_bin = w @ self.bins
        gap = np.abs(w @ (self.bins * (self.y - self.prob)[:, None]))
        return {
            "accuracy": (tp + tn) / total, "precision": tp / (tp + fp),
            "recall": recall, "specificity": specificity, "f1": 2 * tp / (2 * tp + fp + fn),
            "auc": np.where(both, self._auc(w) / (pain * nopain), np.nan),
            "balanced_accuracy": np.where(both, (recall + specificity) / 2, np.nan),
            "brier": w @ self.brier / total, "nll": w @ self.nll / total,
            "ece": gap.sum(axis=1) / total,
            "ece_mass": self._ece_mass(w, total),
            "mce": np.where(in_bin > 0, gap / in_bin, -np.inf).max(axis=1),
        }

    def _auc(self, w: np.ndarray) -> np.ndarray:
        """Σ over pain images of weight × (nopain weight below its P + half that at its P)."""
        below = np.cumsum(w * (1 - self.y), axis=1)
        below = np.concatenate([np.zeros((len(w), 1)), below], axis=1)
        under = below[:, self.tie_start]
        tied = below[:, self.tie_end] - under
        return (w * self.y * (under + tied / 2)).sum(axis=1)

    def _ece_mass(self, w: np.ndarray, total: np.ndarray) -> np.ndarray:
        """ECE over CALIBRATION_BINS bins of equal counts of the resample in order of P, as
        ``np.array_split`` cuts them: Σ |Σ (y − P) in the bin| / images."""
        reached = np.cumsum(w, axis=1)  # images up to and including each one
        gaps = np.cumsum(w * (self.y - self.prob), axis=1)
        n = total.astype(int)[:, None]
        k = np.arange(CALIBRATION_BINS + 1)
        edges = k * (n // CALIBRATION_BINS) + np.minimum(k, n % CALIBRATION_BINS)
        # batched searchsorted: each resample's cumulative counts shifted past the previous
        shift = (np.arange(len(w)) * (n.max() + 1))[:, None]
        where = np.searchsorted((reached + shift).ravel(), (edges + shift).ravel())
        where = where.reshape(edges.shape) - (np.arange(len(w)) * w.shape[1])[:, None]
        rows = np.arange(len(w))[:, None]
        # the gap up to edge e: all images up to the one reaching e, less its copies past e
        upto = gaps[rows, where] - (reached[rows, where] - edges) * (self.y - self.prob)[where]
        return np.abs(np.diff(upto, axis=1)).sum(axis=1) / total


def subject_groups(subjects: ArrayLike | None, *, images: int) -> tuple[np.ndarray, bool]:
    """A group index per image (0 … subjects − 1) and whether it came from ``subjects``; an
    image with no subject (None, or an empty or missing cell) is a group of its own."""
    if subjects is None:
        return np.arange(images), False
    names = np.array(["" if s is None or (isinstance(s, float) and math.isnan(s)) else str(s)
                      for s in subjects], dtype=object)
    if len(names) != images:
        raise NeopainError(f"subjects has {len(names)} entries for {images} images")
    missing = names == ""
    names[missing] = [f"\0image {i}" for i in np.flatnonzero(missing)]
    return np.unique(names, return_inverse=True)[1].ravel(), not missing.any()


def subject_bootstrap(y_true: ArrayLike, prob: ArrayLike, groups: ArrayLike, *,
                      threshold: float = 0.5, resamples: int = RESAMPLES, seed: int = SEED,
                      level: float = LEVEL) -> dict[str, Interval]:
    """A bootstrap interval of every metric of ``METRICS``, resampling ``groups`` (subjects).

    Args:
        y_true: 0/1 labels of the pooled out-of-fold predictions.
        prob: their P(pain).
        groups: the subject index (0 … S − 1) of each image (:func:`subject_groups`).
        threshold: pain when P >= threshold.
        resamples: bootstrap resamples; seed: of the resampling (the same numbers each run).
        level: of the two-sided interval.

    Returns:
        metric → :class:`Interval`; NaN bounds where the metric is undefined on the data.

    Raises:
        NeopainError: fewer than 2 subjects, or a level outside (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise NeopainError(f"level={level!r} must be strictly between 0 and 1, e.g. 0.95")
    y, p = np.asarray(y_true, dtype=int), np.asarray(prob, dtype=float)
    groups = np.asarray(groups, dtype=int)
    if groups.max(initial=0) < 1:
        raise NeopainError("a subject-level bootstrap needs at least 2 subjects; got "
                           f"{groups.max(initial=-1) + 1}")
    metrics = _ResampledMetrics(y, p, groups, threshold=threshold)
    with warnings.catch_warnings():
        # a degenerate or partly undefined distribution: its percentile interval follows
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.bootstrap((np.arange(metrics.n_groups),), metrics, vectorized=True,
                                 n_resamples=resamples, confidence_level=level, method="BCa",
                                 batch=max(1, _CELLS_PER_BATCH // len(y)),
                                 rng=np.random.default_rng(seed))
    point = metrics(np.arange(metrics.n_groups))
    intervals = {}
    for i, name in enumerate(METRICS):
        values = result.bootstrap_distribution[i]
        defined = values[np.isfinite(values)]
        low, high = result.confidence_interval.low[i], result.confidence_interval.high[i]
        if math.isnan(point[i]) or len(defined) == 0:
            intervals[name] = Interval(math.nan, math.nan, "undefined", len(defined))
        elif math.isnan(low) or math.isnan(high):
            low, high = np.quantile(defined, [(1 - level) / 2, (1 + level) / 2])
            intervals[name] = Interval(float(low), float(high), "percentile", len(defined))
        else:
            intervals[name] = Interval(float(low), float(high), "BCa", len(defined))
    return intervals


def run_intervals(run: Run, *, prob: ArrayLike | None = None
                  ) -> tuple[dict[str, Interval], str, list[str]]:
    """The bootstrap interval of each pooled metric of a run, the text saying how they were
    made, and notes (images without a subject in predictions.csv are resampled one by one).

    ``prob``: pooled probabilities to score instead of the run's own (the calibrated ones, in
    fold order); None: the run's P(pain)."""
    tables = [fold.predictions for fold in run.folds]
    subjects = (np.concatenate([t["subject"].to_numpy(dtype=object) for t in tables])
                if all("subject" in t.columns for t in tables) else None)
    y, raw = run.pooled()
    prob = raw if prob is None else np.asarray(prob, dtype=float)
    groups, by_subject = subject_groups(subjects, images=len(y))
    named = subjects is not None and int(groups.max(initial=-1)) + 1 < len(y)
    notes, text = [], method_text(by_subject=by_subject)
    if subjects is None:
        notes.append("predictions.csv has no subject column: the 95% intervals resample "
                     "images as if independent, and are too narrow when a subject has several "
                     "images")
    elif not by_subject:
        text = (f"{method_text(by_subject=True)}; images without a subject resampled alone"
                if named else text)
        notes.append("predictions.csv has no subject for some images: those are resampled "
                     "one by one, as if independent, which narrows the 95% intervals when "
                     "they share a subject")
    if groups.max(initial=0) < 1:
        return {}, "none (a single subject)", notes + [
            "a single subject: no interval can be drawn by resampling subjects"]
    intervals = subject_bootstrap(y, prob, groups, threshold=run.threshold)
    notes += [f"{name}: undefined on {RESAMPLES - i.defined} of {RESAMPLES} resamples; its "
              f"interval is the percentile one over the rest"
              for name, i in intervals.items() if 0 < i.defined < RESAMPLES]
    return intervals, text, notes
