"""Evaluate a run (per-fold and pooled metrics, mean ± std, CI) and write its report files.

The 95% interval of each metric is that of its pooled value, from a subject-level bootstrap
(:mod:`neopain.evaluation.bootstrap`). ``write_report`` leaves in the run folder (or ``out``):
``summary.json``, ``report.md`` (a Markdown table: metric, pooled, 95% CI, mean ± std, folds),
``report.html`` (self-contained: the pictures are embedded) and ``figures/{confusion,
confusion_folds,roc,precision_recall,reliability,probabilities}.png``. A calibrated run
(``neopain calibrate``) also gets its calibrated metrics beside the raw ones and its conformal
coverage and referrals (:mod:`neopain.evaluation.calibration_report`).
``compare`` runs ANOVA + Tukey HSD per metric across runs; ``write_comparison`` leaves
``comparison.json`` and a box plot per metric.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from neopain import __version__
from neopain.errors import NeopainError
from neopain.evaluation.bootstrap import method_text, run_intervals
from neopain.evaluation.calibration_report import (
    CalibrationEvaluation,
    comparison_rows,
    coverage_spread,
    evaluate_calibration,
    reliability_curve,
    set_rows,
)
from neopain.evaluation.figures import (
    box_figure,
    confusion_figure,
    fold_confusions_figure,
    precision_recall_figure,
    probability_histograms_figure,
    reliability_figure,
    roc_figure,
)
from neopain.evaluation.formats import (
    format_ci,
    format_mean_std,
    format_number,
    format_p,
    format_share,
    metric_label,
)
from neopain.runs.metrics import (
    CALIBRATION_BINS,
    LOWER_IS_BETTER,
    METRICS,
    binary_metrics,
    confusion,
    metric_notes,
    predict,
)
from neopain.runs import Run, load_run
from neopain.evaluation.stats import Comparison, MetricSummary, compare_runs, summarize

SAVED_METRICS_TOLERANCE = 1e-3
"""|saved − recomputed| above which a fold's metrics.json is reported as disagreeing."""

ProgressFn = Callable[[int, int], None]


@dataclass
class Evaluation:
    """A run's metrics: ``per_fold`` (one row per fold, columns ``METRICS``), ``summary``
    per metric, confusion matrices per fold and pooled, notes on undefined values, the
    calibrated metrics and conformal sets when the run is calibrated (else None), and
    ``ci_text``: how the intervals were made."""

    run: Run
    per_fold: pd.DataFrame
    summary: dict[str, MetricSummary]
    confusions: dict[int, np.ndarray]
    pooled_confusion: np.ndarray
    notes: list[str] = field(default_factory=list)
    calibration: CalibrationEvaluation | None = None
    ci_text: str = field(default_factory=method_text)

    def to_dict(self) -> dict:
        """The content of summary.json (NaN written as null)."""
        folds = [{"fold": int(fold), "images": int(self.confusions[fold].sum()),
                  "metrics": row.to_dict(), "confusion": self.confusions[fold].tolist()}
                 for fold, row in self.per_fold.iterrows()]
        return _nan_to_none({
            "neopain_version": __version__,
            "run": self.run.name,
            "folds": len(self.per_fold),
            "images": int(self.pooled_confusion.sum()),
            "threshold": self.run.threshold,
            "std": "sample standard deviation over folds (ddof=1)",
            "ci": f"95% interval of the pooled value: {self.ci_text}",
            "metrics": {name: s.to_dict() for name, s in self.summary.items()},
            "pooled_confusion": self.pooled_confusion.tolist(),
            "confusion_layout": "rows true nopain, pain; columns predicted nopain, pain",
            "per_fold": folds,
            "calibrated": self.calibration.to_dict() if self.calibration else None,
            "notes": self.notes,
        })


def _nan_to_none(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def evaluate_run(run: Run) -> Evaluation:
    """Per-fold metrics recomputed from predictions.csv, their mean ± std, pooled metrics and
    their subject-level bootstrap intervals.

    Saved metrics.json values that differ from the recomputed ones by more than 1e-3 are named
    in ``notes`` (the recomputed values are the ones used); a metric the file lacks (one added
    to ``METRICS`` after the run was trained) is not a difference.
    """
    rows, confusions, notes = {}, {}, list(run.notes)
    for fold in run.folds:
        rows[fold.index] = binary_metrics(fold.y_true, fold.prob, threshold=run.threshold)
        confusions[fold.index] = confusion(fold.y_true, predict(fold.prob,
                                                                threshold=run.threshold))
        notes += [f"fold {fold.index}: {note}"
                  for note in metric_notes(fold.y_true, fold.prob, threshold=run.threshold)]
        for name, saved in (fold.saved_metrics or {}).items():
            ours = rows[fold.index].get(name)
            if ours is None or (math.isnan(saved) and math.isnan(ours)):
                continue
            if math.isnan(saved) != math.isnan(ours) or abs(saved - ours) > \
                    SAVED_METRICS_TOLERANCE:
                notes.append(f"fold {fold.index}: metrics.json says {name} = {saved:.4g} but "
                             f"predictions.csv gives {ours:.4g}; the report uses predictions.csv")
    per_fold = pd.DataFrame.from_dict(rows, orient="index", columns=list(METRICS))
    per_fold.index.name = "fold"
    y, prob = run.pooled()
    intervals, ci_text, interval_notes = run_intervals(run)
    summary = summarize(per_fold, binary_metrics(y, prob, threshold=run.threshold),
                        intervals=intervals)
    pooled_confusion = confusion(y, predict(prob, threshold=run.threshold))
    calibration, calibration_notes = evaluate_calibration(run)
    return Evaluation(run, per_fold, summary, confusions, pooled_confusion,
                      notes + interval_notes + calibration_notes, calibration, ci_text)


def _metric_rows(evaluation: Evaluation) -> list[dict[str, str]]:
    return [{"metric": metric_label(name), "pooled": format_number(s.pooled),
             "ci": format_ci(s.ci_low, s.ci_high), "mean_std": format_mean_std(s.mean, s.std),
             "n": str(s.n)} for name, s in evaluation.summary.items()]


def markdown_table(evaluation: Evaluation) -> str:
    """The Markdown table of report.md: metric | pooled | 95% CI | mean ± std | folds."""
    lines = ["| metric | pooled | 95% CI | mean ± std over folds | folds |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['metric']} | {r['pooled']} | {r['ci']} | {r['mean_std']} | {r['n']} |"
              for r in _metric_rows(evaluation)]
    return "\n".join(lines)


FIGURES = ("confusion", "roc", "precision_recall", "reliability", "probabilities",
           "confusion_folds")
"""The report's pictures, in report order; each is ``figures/<name>.png``."""


def _figures(evaluation: Evaluation, folder: Path) -> dict[str, tuple[Path, str]]:
    """Draw every figure; name → (path, alt text saying what it shows and its key numbers)."""
    folder.mkdir(parents=True, exist_ok=True)
    run, calibration = evaluation.run, evaluation.calibration
    folds = {f.index: (f.y_true, f.prob) for f in run.folds}
    auc = evaluation.summary["auc"]
    auc_text = (f"AUC over folds {format_mean_std(auc.mean, auc.std)}, "
                f"pooled {format_number(auc.pooled)}")
    curves = {"raw": reliability_curve(*run.pooled())}
    panels = {"raw": run.pooled()}
    if calibration is not None:
        curves["calibrated"] = reliability_curve(*calibration.pooled)
        panels["calibrated"] = calibration.pooled
    eces = ", ".join(f"{name} ECE {curve.ece:.3f}" for name, curve in curves.items())
    return {
        "confusion": (confusion_figure(evaluation.pooled_confusion, folder / "confusion.png",
                                       title=f"{run.name}: all folds pooled"),
                      "Confusion matrix of all folds pooled: counts and shares of true nopain "
                      "and pain images predicted nopain and pain"),
        "roc": (roc_figure(folds, run.pooled(), folder / "roc.png", title=run.name,
                           auc_text=auc_text),
                f"ROC curves of each fold (grey) and pooled (red); {auc_text}"),
        "precision_recall": (precision_recall_figure(folds, run.pooled(),
                                                     folder / "precision_recall.png",
                                                     title=f"{run.name}: precision-recall"),
                             "Precision-recall curves of each fold (grey) and pooled (red), "
                             "average precision in the legend; the dashed line is the share of "
                             "pain images"),
        "reliability": (reliability_figure(curves, folder / "reliability.png",
                                           title=f"{run.name}: reliability, all folds pooled"),
                        f"Reliability diagram of all folds pooled: share of pain images "
                        f"against mean P(pain) in {CALIBRATION_BINS} equal-width bins, the "
                        f"diagonal is perfect calibration, marker areas and the bars below (log "
                        f"scale) count the images per bin; {eces}"),
        "probabilities": (probability_histograms_figure(panels, folder / "probabilities.png",
                                                        threshold=run.threshold),
                          "Histograms of P(pain) for the nopain and the pain images, all "
                          "folds pooled" + (", raw and calibrated" if calibration else "")
                          + f"; the dashed line is the threshold {run.threshold:g}"),
        "confusion_folds": (fold_confusions_figure(evaluation.confusions,
                                                   folder / "confusion_folds.png"),
                            "Confusion matrix of each fold"),
    }


def _calibration_context(evaluation: Evaluation) -> dict | None:
    calibration = evaluation.calibration
    if calibration is None:
        return None
    return {
        "methods": ", ".join(calibration.methods) or "unknown (no calibrator.json)",
        "rows": comparison_rows(evaluation.summary, calibration.summary),
        "per_fold": [(int(fold), [format_number(v) for v in row])
                     for fold, row in calibration.per_fold.iterrows()],
        "sets": set_rows(calibration),
        "spread": coverage_spread(calibration),
    }


def _template(name: str) -> jinja2.Template:
    text = files("neopain.evaluation").joinpath("templates", name).read_text(encoding="utf-8")
    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True).from_string(text)


def write_report(run: Run, out: str | os.PathLike[str] | None = None, *,
                 evaluation: Evaluation | None = None,
                 on_progress: ProgressFn | None = None) -> dict[str, Path]:
    """Write summary.json, report.md, report.html and figures/*.png for a run.

    Args:
        run: from :func:`load_run`.
        out: the folder to write into; the run folder when None.
        evaluation: from :func:`evaluate_run`; computed when None.
        on_progress: called ``(done, total)`` after the figures and after each file.

    Returns:
        name → path of every file written (``summary``, ``markdown``, ``html``, and the
        ``FIGURES``).
    """
    out = Path(out) if out is not None else run.path
    evaluation = evaluation or evaluate_run(run)
    total, done = 4, 0

    def step() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    out.mkdir(parents=True, exist_ok=True)
    figures = _figures(evaluation, out / "figures")
    written = {name: path for name, (path, _) in figures.items()}
    step()
    written["summary"] = out / "summary.json"
    written["summary"].write_text(json.dumps(evaluation.to_dict(), indent=2) + "\n",
                                  encoding="utf-8")
    step()
    context = {
        "run": run.name, "folds": len(run.folds), "threshold": f"{run.threshold:g}",
        "images": int(evaluation.pooled_confusion.sum()), "rows": _metric_rows(evaluation),
        "table": markdown_table(evaluation), "notes": evaluation.notes,
        "metrics": [metric_label(m) for m in METRICS], "version": __version__,
        "bins": CALIBRATION_BINS, "ci_text": evaluation.ci_text,
        "per_fold": [(int(fold), [format_number(v) for v in row])
                     for fold, row in evaluation.per_fold.iterrows()],
        "calibration": _calibration_context(evaluation),
        "alts": {name: alt for name, (_, alt) in figures.items()},
    }
    written["markdown"] = out / "report.md"
    links = {name: path.relative_to(out).as_posix() for name, (path, _) in figures.items()}
    written["markdown"].write_text(_template("report.md.j2").render(**context, figures=links),
                                   encoding="utf-8")
    step()
    embedded = {name: "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
                for name, (path, _) in figures.items()}
    written["html"] = out / "report.html"
    written["html"].write_text(_template("report.html.j2").render(**context, figures=embedded),
                               encoding="utf-8")
    step()
    return written


def run_names(runs: Sequence[Run]) -> list[str]:
    """Folder names, or paths when two folder names are equal.

    Raises:
        NeopainError: the same folder given twice.
    """
    names = [run.name for run in runs]
    if len(set(names)) < len(names):
        names = [str(run.path) for run in runs]
    if len(set(names)) < len(names):
        raise NeopainError(f"the same run is given twice: {', '.join(names)}")
    return names


def _fold_values(runs: Sequence[Run], *, calibrated: bool) -> dict[str, pd.DataFrame]:
    """Run name → its per-fold metrics, of the raw or the calibrated P(pain)."""
    tables = {}
    for name, run in zip(run_names(runs), runs):
        evaluation = evaluate_run(run)
        if not calibrated:
            tables[name] = evaluation.per_fold
        elif evaluation.calibration is None:
            raise NeopainError(f"{run.path} is not calibrated (no prob_pain_calibrated in every "
                               f"fold); run neopain calibrate {run.path}, or compare the raw "
                               f"P(pain) without --calibrated")
        else:
            tables[name] = evaluation.calibration.per_fold
    return tables


def compare(runs: Sequence[Run], *, metrics: Sequence[str] = METRICS, alpha: float = 0.05,
            calibrated: bool = False) -> dict[str, Comparison]:
    """ANOVA + Tukey HSD across runs for each metric, on the per-fold values.

    A metric that some run has on fewer than 2 folds (undefined on the others) is left out of
    the result. Runs are named by folder name, or by path when two folder names are equal.
    With ``calibrated`` the metrics are those of each run's calibrated P(pain).

    Raises:
        NeopainError: fewer than 2 runs, a run with fewer than 2 folds, an unknown metric, an
            uncalibrated run with ``calibrated``.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise NeopainError(f"unknown metric {', '.join(unknown)}; valid: {', '.join(METRICS)}")
    if len(runs) < 2:
        raise NeopainError(f"compare needs at least 2 runs; got {len(runs)}")
    few = [f"{run.path} ({len(run.folds)} fold)" for run in runs if len(run.folds) < 2]
    if few:
        raise NeopainError(f"every run needs at least 2 folds to compare; too few: "
                           f"{', '.join(few)}")
    per_fold = _fold_values(runs, calibrated=calibrated)
    result = {}
    for metric in metrics:
        values = {name: table[metric].tolist() for name, table in per_fold.items()}
        if all(sum(not math.isnan(v) for v in vals) >= 2 for vals in values.values()):
            result[metric] = compare_runs(values, alpha=alpha,
                                          lower_is_better=metric in LOWER_IS_BETTER)
    return result


def comparison_to_dict(comparisons: dict[str, Comparison]) -> dict:
    """JSON-ready comparisons (NaN as null)."""
    return _nan_to_none({metric: c.to_dict() for metric, c in comparisons.items()})


def write_comparison(runs: Sequence[Run], comparisons: dict[str, Comparison],
                     out: str | os.PathLike[str], *, calibrated: bool = False) -> dict[str, Path]:
    """Write ``comparison.json`` and ``box_<metric>.png`` per compared metric into ``out``
    (``calibrated``: as :func:`compare` made them)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / "comparison.json"}
    written["json"].write_text(json.dumps(comparison_to_dict(comparisons), indent=2) + "\n",
                               encoding="utf-8")
    per_fold = _fold_values(runs, calibrated=calibrated)
    for metric, comparison in comparisons.items():
        caption = (f"ANOVA F = {format_number(comparison.f, digits=2)}, "
                   f"p = {format_p(comparison.p)}; "
                   + ("lower is better" if comparison.lower_is_better else "higher is better"))
        values = {name: table[metric].tolist() for name, table in per_fold.items()}
        written[metric] = box_figure(values, out / f"box_{metric}.png",
                                     metric=f"calibrated {metric}" if calibrated else metric,
                                     caption=caption)
    return written


__all__ = [
    "Evaluation", "MetricSummary", "Run", "compare", "comparison_to_dict", "evaluate_run",
    "format_ci", "format_mean_std", "format_number", "format_p", "format_share", "load_run",
    "markdown_table", "metric_label", "run_names", "write_comparison", "write_report",
]  # fmt: skip
