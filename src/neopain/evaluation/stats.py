"""Statistics over folds and between runs: mean ± std, t confidence intervals, ANOVA + Tukey HSD.

A run's summary pairs the description over folds (mean ± std) with the interval of the pooled
metric from a subject-level bootstrap (:mod:`neopain.evaluation.bootstrap`): a t interval of a
few fold values can pass the metric's range. Values are one number per fold. NaN values (a
metric undefined on a fold) are left out and the count ``n`` says how many were used. The
standard deviation is the sample one (ddof=1), as the published fold tables report it. A
comparison knows whether its metric is better high (accuracy) or low (Brier, NLL, ECE) and
names the best run and the better run of each significant pair accordingly.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from neopain.errors import NeopainError
from neopain.evaluation.bootstrap import Interval


def finite(values: ArrayLike) -> np.ndarray:
    """The values as a 1-D float array without NaN."""
    array = np.asarray(values, dtype=float).ravel()
    return array[~np.isnan(array)]


def mean_std(values: ArrayLike) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of the non-NaN values.

    The std is NaN with fewer than 2 values; both are NaN with none.
    """
    array = finite(values)
    if len(array) == 0:
        return math.nan, math.nan
    std = float(np.std(array, ddof=1)) if len(array) > 1 else math.nan
    return float(np.mean(array)), std


def confidence_interval(values: ArrayLike, *, level: float = 0.95) -> tuple[float, float]:
    """Two-sided t-distribution interval for the mean: mean ± t(level, n−1) · std / √n.

    NaN values are left out; (NaN, NaN) with fewer than 2 values. A zero std gives (mean, mean).
    Over a few folds of a bounded metric it can pass the metric's range; the reports use
    :func:`neopain.evaluation.bootstrap.subject_bootstrap` instead.
    """
    if not 0.0 < level < 1.0:
        raise NeopainError(f"level={level!r} must be strictly between 0 and 1, e.g. 0.95")
    array = finite(values)
    if len(array) < 2:
        return math.nan, math.nan
    mean, std = float(np.mean(array)), float(np.std(array, ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, df=len(array) - 1)) * std / math.sqrt(len(array))
    return mean - half, mean + half


@dataclass(frozen=True)
class MetricSummary:
    """One metric: mean and sample std (ddof=1) over the ``n`` non-NaN folds, the ``pooled``
    value and its interval (``ci_method``: how it was made; NaN bounds when none)."""

    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int
    pooled: float
    ci_method: str = "none"

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n": self.n, "pooled": self.pooled,
                "ci95": [self.ci_low, self.ci_high], "ci_method": self.ci_method}


def summarize(per_fold: pd.DataFrame, pooled: dict[str, float], *,
              intervals: dict[str, Interval] | None = None) -> dict[str, MetricSummary]:
    """A :class:`MetricSummary` per column of ``per_fold`` (one row per fold), with the value
    of ``pooled`` and the interval of ``intervals`` for that column (NaN when it has none)."""
    summary = {}
    for name in per_fold.columns:
        mean, std = mean_std(per_fold[name])
        interval = (intervals or {}).get(name, Interval(math.nan, math.nan, "none", 0))
        summary[name] = MetricSummary(mean, std, interval.low, interval.high,
                                      int(per_fold[name].notna().sum()),
                                      float(pooled.get(name, math.nan)), interval.method)
    return summary


@dataclass(frozen=True)
class TukeyPair:
    """One pair of runs: ``difference`` is mean(a) − mean(b), ``low``/``high`` its 95% CI;
    ``better`` is the run whose mean is better when the pair is significant, else None."""

    a: str
    b: str
    difference: float
    p: float
    low: float
    high: float
    significant: bool
    better: str | None = None

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "difference": self.difference, "p": self.p,
                "ci": [self.low, self.high], "significant": self.significant,
                "better": self.better}


@dataclass(frozen=True)
class Group:
    """One run's values of one metric: mean, sample std and count of the non-NaN folds."""

    mean: float
    std: float
    n: int

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n": self.n}


@dataclass(frozen=True)
class Comparison:
    """One-way ANOVA across runs (``f``, ``p``) and every Tukey HSD pair, at ``alpha``.

    ``f`` and ``p`` are NaN when every value of every run is the same (nothing to compare).
    ``best`` is the run with the best mean (the lowest when ``lower_is_better``), None when
    runs tie for it; whether it is better than another run, the pairs say.
    """

    groups: dict[str, Group]
    f: float
    p: float
    pairs: list[TukeyPair]
    alpha: float = 0.05
    notes: list[str] = field(default_factory=list)
    lower_is_better: bool = False
    best: str | None = None

    def to_dict(self) -> dict:
        return {"groups": {name: g.to_dict() for name, g in self.groups.items()},
                "lower_is_better": self.lower_is_better, "best": self.best,
                "anova": {"f": self.f, "p": self.p}, "alpha": self.alpha,
                "tukey": [pair.to_dict() for pair in self.pairs], "notes": list(self.notes)}


def compare_runs(per_run: dict[str, Sequence[float]], *, alpha: float = 0.05,
                 lower_is_better: bool = False) -> Comparison:
    """One-way ANOVA (``scipy.stats.f_oneway``) and Tukey HSD (``scipy.stats.tukey_hsd``).

    Args:
        per_run: run name → one value per fold (NaN values are left out).
        alpha: significance level of the Tukey pairs; their CIs are at level 1 − alpha.
        lower_is_better: the metric is an error (Brier, NLL, ECE): the lowest mean is best.

    Raises:
        NeopainError: fewer than 2 runs, or a run with fewer than 2 non-NaN values.

    Example:
        >>> compare_runs({"ncnn": [0.9, 0.92, 0.88], "vgg": [0.7, 0.72, 0.69]}).pairs[0].significant
        True
    """
    if not 0.0 < alpha < 1.0:
        raise NeopainError(f"alpha={alpha!r} must be strictly between 0 and 1, e.g. 0.05")
    if len(per_run) < 2:
        raise NeopainError(f"comparing needs at least 2 runs; got {len(per_run)}")
    names = list(per_run)
    samples = [finite(per_run[name]) for name in names]
    short = [f"{name} ({len(s)})" for name, s in zip(names, samples) if len(s) < 2]
    if short:
        raise NeopainError(f"every run needs at least 2 fold values to compare; too few in: "
                           f"{', '.join(short)}")
    groups = {name: Group(*mean_std(s), n=len(s)) for name, s in zip(names, samples)}
    sign = -1.0 if lower_is_better else 1.0
    top = max(sign * group.mean for group in groups.values())
    leaders = [name for name in names if sign * groups[name].mean == top]
    best = leaders[0] if len(leaders) == 1 else None
    notes = []
    if np.ptp(np.concatenate(samples)) == 0:
        notes.append("every fold of every run has the same value: nothing to compare")
        return Comparison(groups, math.nan, math.nan, [], alpha, notes, lower_is_better, best)
    with warnings.catch_warnings():
        # zero spread within every run but different means: F is infinite, p is 0
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        anova = stats.f_oneway(*samples)
        tukey = stats.tukey_hsd(*samples)
        ci = tukey.confidence_interval(confidence_level=1 - alpha)
    if all(np.std(s) == 0 for s in samples):
        notes.append("no spread within any run: F is infinite and every p is 0")
    pairs = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            significant = bool(tukey.pvalue[i, j] < alpha)
            ahead = names[i] if sign * tukey.statistic[i, j] > 0 else names[j]
            pairs.append(TukeyPair(names[i], names[j], float(tukey.statistic[i, j]),
                                   float(tukey.pvalue[i, j]), float(ci.low[i, j]),
                                   float(ci.high[i, j]), significant,
                                   ahead if significant else None))
    return Comparison(groups, float(anova.statistic), float(anova.pvalue), pairs, alpha, notes,
                      lower_is_better, best)
