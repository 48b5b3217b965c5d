"""Evaluate a run (per-fold and pooled metrics, mean ± std, CI) and write its report files.

``write_report`` leaves in the run folder (or ``out``): ``summary.json``, ``report.md`` (a
Markdown table: metric, mean ± std, 95% CI, pooled), ``report.html`` (self-contained: the
pictures are embedded) and ``figures/{confusion,confusion_folds,roc}.png``.
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
from neopain.evaluation.figures import (
    box_figure,
    confusion_figure,
    fold_confusions_figure,
    roc_figure,
)
from neopain.runs.metrics import METRICS, binary_metrics, confusion, metric_notes, predict
from neopain.runs import Run, load_run
from neopain.evaluation.stats import Comparison, compare_runs, confidence_interval, mean_std

SAVED_METRICS_TOLERANCE = 1e-3
"""|saved − recomputed| above which a fold's metrics.json is reported as disagreeing."""

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class MetricSummary:
    """One metric over folds: mean, sample std (ddof=1), t CI, non-NaN folds, pooled value."""

    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int
    pooled: float

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "ci95": [self.ci_low, self.ci_high],
                "n": self.n, "pooled": self.pooled}


@dataclass
class Evaluation:
    """A run's metrics: ``per_fold`` (one row per fold, columns ``METRICS``), ``summary``
    per metric, confusion matrices per fold and pooled, and notes on undefined values."""

    run: Run
    per_fold: pd.DataFrame
    summary: dict[str, MetricSummary]
    confusions: dict[int, np.ndarray]
    pooled_confusion: np.ndarray
    notes: list[str] = field(default_factory=list)

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
            "ci": "95% t-distribution interval of the mean over folds",
            "metrics": {name: s.to_dict() for name, s in self.summary.items()},
            "pooled_confusion": self.pooled_confusion.tolist(),
            "confusion_layout": "rows true nopain, pain; columns predicted nopain, pain",
            "per_fold": folds,
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
    """Per-fold metrics recomputed from predictions.csv, their mean ± std and CI, pooled metrics.

    Saved metrics.json values that differ from the recomputed ones by more than 1e-3 are named
    in ``notes`` (the recomputed values are the ones used).
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
    pooled = binary_metrics(y, prob, threshold=run.threshold)
    summary = {}
    for name in METRICS:
        mean, std = mean_std(per_fold[name])
        low, high = confidence_interval(per_fold[name])
        summary[name] = MetricSummary(mean, std, low, high, int(per_fold[name].notna().sum()),
                                      pooled[name])
    pooled_confusion = confusion(y, predict(prob, threshold=run.threshold))
    return Evaluation(run, per_fold, summary, confusions, pooled_confusion, notes)


def format_mean_std(mean: float, std: float, *, digits: int = 3) -> str:
    """'0.912 ± 0.031'; 'n/a' for NaN parts."""
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± " + ("n/a" if math.isnan(std) else f"{std:.{digits}f}")


def format_number(value: float, *, digits: int = 3) -> str:
    """A rounded number, or 'n/a' for NaN."""
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def format_ci(low: float, high: float, *, digits: int = 3) -> str:
    """'[0.880, 0.944]'; 'n/a' when undefined."""
    if math.isnan(low):
        return "n/a"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def _metric_rows(evaluation: Evaluation) -> list[dict[str, str]]:
    return [{"metric": name, "mean_std": format_mean_std(s.mean, s.std),
             "ci": format_ci(s.ci_low, s.ci_high), "n": str(s.n),
             "pooled": format_number(s.pooled)} for name, s in evaluation.summary.items()]


def markdown_table(evaluation: Evaluation) -> str:
    """The Markdown table of report.md: metric | mean ± std | 95% CI | folds | pooled."""
    lines = ["| metric | mean ± std | 95% CI | folds | pooled |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['metric']} | {r['mean_std']} | {r['ci']} | {r['n']} | {r['pooled']} |"
              for r in _metric_rows(evaluation)]
    return "\n".join(lines)


def _write_figures(evaluation: Evaluation, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    run = evaluation.run
    auc = evaluation.summary["auc"]
    auc_text = (f"AUC over folds {format_mean_std(auc.mean, auc.std)}, "
                f"pooled {format_number(auc.pooled)}")
    return {
        "confusion": confusion_figure(evaluation.pooled_confusion, folder / "confusion.png",
                                      title=f"{run.name}: all folds pooled"),
        "confusion_folds": fold_confusions_figure(evaluation.confusions,
                                                  folder / "confusion_folds.png"),
        "roc": roc_figure({f.index: (f.y_true, f.prob) for f in run.folds}, run.pooled(),
                          folder / "roc.png", title=run.name, auc_text=auc_text),
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
        on_progress: called ``(done, total)`` after each file.

    Returns:
        name → path of every file written (``summary``, ``markdown``, ``html``, and figures).
    """
    out = Path(out) if out is not None else run.path
    evaluation = evaluation or evaluate_run(run)
    total, done = 6, 0

    def step() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, path in _write_figures(evaluation, out / "figures").items():
        written[name] = path
        step()
    written["summary"] = out / "summary.json"
    written["summary"].write_text(json.dumps(evaluation.to_dict(), indent=2) + "\n",
                                  encoding="utf-8")
    step()
    context = {
        "run": run.name, "folds": len(run.folds), "threshold": f"{run.threshold:g}",
        "images": int(evaluation.pooled_confusion.sum()), "rows": _metric_rows(evaluation),
        "table": markdown_table(evaluation), "notes": evaluation.notes,
        "metrics": list(METRICS), "version": __version__,
        "per_fold": [(int(fold), [format_number(v) for v in row])
                     for fold, row in evaluation.per_fold.iterrows()],
    }
    written["markdown"] = out / "report.md"
    figures = {k: written[k].relative_to(out).as_posix() for k in ("confusion", "roc",
                                                                     "confusion_folds")}
    written["markdown"].write_text(_template("report.md.j2").render(**context, figures=figures),
                                   encoding="utf-8")
    step()
    embedded = {k: "data:image/png;base64," + base64.b64encode(written[k].read_bytes()).decode()
                for k in ("confusion", "roc", "confusion_folds")}
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


def compare(runs: Sequence[Run], *, metrics: Sequence[str] = METRICS,
            alpha: float = 0.05) -> dict[str, Comparison]:
    """ANOVA + Tukey HSD across runs for each metric, on the per-fold values.

    A metric that some run has on fewer than 2 folds (undefined on the others) is left out of
    the result. Runs are named by folder name, or by path when two folder names are equal.

    Raises:
        NeopainError: fewer than 2 runs, a run with fewer than 2 folds, an unknown metric.
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
    per_fold = {name: evaluate_run(run).per_fold for name, run in zip(run_names(runs), runs)}
    result = {}
    for metric in metrics:
        values = {name: table[metric].tolist() for name, table in per_fold.items()}
        if all(sum(not math.isnan(v) for v in vals) >= 2 for vals in values.values()):
            result[metric] = compare_runs(values, alpha=alpha)
    return result


def comparison_to_dict(comparisons: dict[str, Comparison]) -> dict:
    """JSON-ready comparisons (NaN as null)."""
    return _nan_to_none({metric: c.to_dict() for metric, c in comparisons.items()})


def write_comparison(runs: Sequence[Run], comparisons: dict[str, Comparison],
                     out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``comparison.json`` and ``box_<metric>.png`` per compared metric into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / "comparison.json"}
    written["json"].write_text(json.dumps(comparison_to_dict(comparisons), indent=2) + "\n",
                               encoding="utf-8")
    per_fold = {name: evaluate_run(run).per_fold for name, run in zip(run_names(runs), runs)}
    for metric, comparison in comparisons.items():
        caption = (f"ANOVA F = {format_number(comparison.f, digits=2)}, "
                   f"p = {format_p(comparison.p)}")
        values = {name: table[metric].tolist() for name, table in per_fold.items()}
        written[metric] = box_figure(values, out / f"box_{metric}.png", metric=metric,
                                     caption=caption)
    return written


def format_p(p: float) -> str:
    """A p-value for people: '<0.001', '0.034', or 'n/a'."""
    if math.isnan(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


__all__ = [
    "Evaluation", "MetricSummary", "Run", "compare", "comparison_to_dict", "evaluate_run",
    "format_ci", "format_mean_std", "format_number", "format_p", "load_run", "markdown_table",
    "run_names", "write_comparison", "write_report",
]  # fmt: skip
