"""``neopain evaluate`` and ``neopain compare``: metrics of a run, statistics between runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from neopain.cli.console import console, err_console, fail, progress_bar
from neopain.cli.dataset import count_problems, print_problems
from neopain.data.tables import TableError
from neopain.errors import NeopainError


SHORT_NAMES = {"accuracy": "acc", "precision": "prec", "recall": "sens", "specificity": "spec",
               "balanced_accuracy": "bal acc", "ece_mass": "ece mass"}


def _load(path: Path):
    from neopain.runs import load_run

    try:
        return load_run(path)
    except TableError as error:
        print_problems(error)
        fail(f"{escape(str(error.path))} cannot be evaluated: {count_problems(error)}")
    except NeopainError as error:
        fail(escape(str(error)))


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        err_console.print(Text(f"note: {note}", style="yellow"))


def evaluate(
    run: Annotated[Path, typer.Argument(
        help="The run folder, e.g. runs/ncnn (from neopain train).")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print summary.json only (no tables); the files are still written.")
    ] = False,
    out: Annotated[Optional[Path], typer.Option(
        help="Write the report here instead of into the run folder.")] = None,
) -> None:
    """Metrics of a run from its out-of-fold predictions: pooled, with a subject-level
    bootstrap 95% CI, and mean ± std over folds.

    Every fold's metrics are recomputed from fold_K/predictions.csv: accuracy,
    precision, recall (sensitivity), specificity, F1, AUC, balanced accuracy, and the
    errors of P(pain): Brier, NLL, ECE (equal-width and equal-mass bins), MCE. A
    calibrated run (neopain calibrate) also gets its calibrated metrics and its
    conformal coverage and referrals per fold. Writes summary.json, report.md,
    report.html and figures/ (confusion, ROC, precision-recall, reliability,
    probability histograms).
    """
    from neopain.evaluation.report import (
        evaluate_run, format_ci, format_mean_std, format_number, metric_label, write_report,
    )

    loaded = _load(run)
    try:
        evaluation = evaluate_run(loaded)
        if as_json:
            written = write_report(loaded, out, evaluation=evaluation)
        else:
            with progress_bar("writing the report") as update:
                written = write_report(loaded, out, evaluation=evaluation, on_progress=update)
    except NeopainError as error:
        fail(escape(str(error)))
    if as_json:
        print(written["summary"].read_text(encoding="utf-8"), end="")
        return

    table = Table(title=Text(f"{loaded.name}: {len(loaded.folds)} folds, "
                             f"{int(evaluation.pooled_confusion.sum())} test images, "
                             f"pain at P >= {loaded.threshold:g}"),
                  caption=Text(f"95% CI of the pooled value: {evaluation.ci_text}; "
                               f"mean ± sample std (ddof=1) over folds"))
    for name, justify in (("metric", "left"), ("pooled", "right"), ("95% CI", "right"),
                          ("mean ± std", "right"), ("folds", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    for name, s in evaluation.summary.items():
        table.add_row(metric_label(name), format_number(s.pooled),
                      Text(format_ci(s.ci_low, s.ci_high)), format_mean_std(s.mean, s.std),
                      str(s.n))
    console.print(table)
    _print_fold_tables(evaluation)
    (tn, fp), (fn, tp) = evaluation.pooled_confusion.tolist()
    console.print(f"pooled confusion: TN {tn}  FP {fp}  FN {fn}  TP {tp}", highlight=False)
    if evaluation.calibration is not None:
        _print_calibration(evaluation)
    _print_notes(evaluation.notes)
    for key in ("summary", "markdown", "html"):
        console.print(f"wrote {escape(str(written[key]))}", highlight=False)
    console.print(f"wrote {escape(str(written['roc'].parent))}/ (confusion matrices, ROC, "
                  f"precision-recall, reliability, probability histograms)", highlight=False)


def _fold_table(title: str, per_fold, names: list[str], *, images: dict | None = None,
                caption: str | None = None) -> Table:
    from neopain.evaluation.report import format_number

    table = Table(title=title, caption=caption)
    table.add_column("fold", justify="right")
    if images is not None:
        table.add_column("images", justify="right")
    for name in names:
        table.add_column(SHORT_NAMES.get(name, name), justify="right")
    for fold, row in per_fold[names].iterrows():
        table.add_row(str(fold), *([str(int(images[fold].sum()))] if images is not None else []),
                      *(format_number(v) for v in row))
    return table


def _print_fold_tables(evaluation) -> None:
    """Per fold: the decisions' metrics, then the errors of P(pain) (raw, and calibrated)."""
    from neopain.runs.metrics import LOWER_IS_BETTER

    errors = [m for m in evaluation.per_fold.columns if m in LOWER_IS_BETTER]
    decisions = [m for m in evaluation.per_fold.columns if m not in LOWER_IS_BETTER]
    console.print(_fold_table("per fold", evaluation.per_fold, decisions,
                              images=evaluation.confusions,
                              caption="sens = recall (sensitivity), spec = specificity"))
    console.print(_fold_table("per fold, errors of P(pain) (lower is better)",
                              evaluation.per_fold, errors))
    if evaluation.calibration is not None:
        console.print(_fold_table("per fold, errors of the calibrated P(pain)",
                                  evaluation.calibration.per_fold, errors))


def _print_calibration(evaluation) -> None:
    """Raw against calibrated metrics, and the conformal sets per fold and pooled."""
    from neopain.evaluation.calibration_report import comparison_rows, coverage_spread, set_rows

    calibration = evaluation.calibration
    table = Table(title=f"calibrated by {', '.join(calibration.methods) or 'unknown'} "
                        f"(mean ± std over folds, pooled [95% CI])")
    for name in ("metric", "raw", "calibrated", "pooled", "pooled cal"):
        table.add_column(name, justify="left" if name == "metric" else "right", no_wrap=True)
    for row in comparison_rows(evaluation.summary, calibration.summary):
        table.add_row(row["metric"], row["raw"], row["calibrated"], row["raw_pooled"],
                      row["calibrated_pooled"])
    console.print(table)
    if not calibration.sets:
        return
    sets = Table(title="conformal prediction sets (coverage target 1 − alpha)",
                 caption="referred = both labels, none, or one the label contradicts "
                         "(uncertain: look at the baby)")
    for name in ("fold", "images", "target", "coverage", "referred", "decided acc"):
        sets.add_column(name, justify="right")
    for row in set_rows(calibration):
        sets.add_row(row["fold"], row["images"], row["target"], row["coverage"],
                     row["referral"], row["decided_accuracy"],
                     style="bold" if row["fold"] == "pooled" else None)
    console.print(sets)
    if spread := coverage_spread(calibration):
        console.print(Text(spread, style="dim"))


def _p_text(p: float) -> str:
    from neopain.evaluation.report import format_p

    text = format_p(p)
    return text if text.startswith("<") else f"= {text}"


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run folders.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON only.")]
    = False,
    out: Annotated[Optional[Path], typer.Option(
        help="Also write comparison.json and a box plot per metric (PNG) here.")] = None,
    metric: Annotated[Optional[list[str]], typer.Option(
        "--metric", help="Compare only this metric (repeatable); default all.")] = None,
    alpha: Annotated[float, typer.Option(help="Significance level of the Tukey pairs.")] = 0.05,
    calibrated: Annotated[bool, typer.Option(
        "--calibrated", help="Compare the metrics of the calibrated P(pain) (every run must "
                             "be calibrated: neopain calibrate).")] = False,
) -> None:
    """One-way ANOVA and Tukey HSD across runs for each metric, on the per-fold values.

    Each run needs at least 2 folds. For every metric: each run's mean ± std,
    the ANOVA F and p, the best run (the lowest for the errors of P(pain), marked ↓),
    and every pair's difference, CI, p and significance. --calibrated compares the
    metrics of the calibrated P(pain).
    """
    from neopain.runs.metrics import METRICS
    from neopain.evaluation.report import (
        compare as compare_metrics, comparison_to_dict, format_mean_std, format_number,
        format_p, metric_label, write_comparison,
    )

    if len(runs) < 2:
        fail(f"compare needs at least 2 run folders; got {len(runs)}")
    loaded = [_load(path) for path in runs]
    try:
        comparisons = compare_metrics(loaded, metrics=metric or METRICS, alpha=alpha,
                                      calibrated=calibrated)
        written = (write_comparison(loaded, comparisons, out, calibrated=calibrated)
                   if out is not None else {})
    except NeopainError as error:
        fail(escape(str(error)))
    if as_json:
        print(json.dumps(comparison_to_dict(comparisons), indent=2))
        return

    names = list(next(iter(comparisons.values())).groups) if comparisons else []
    table = Table(title=f"one-way ANOVA across runs{' (calibrated P(pain))' if calibrated else ''}"
                        f" (mean ± sample std over folds)",
                  caption="↓ lower is better; best = the best mean (whether it is "
                          "significantly better, the pairs say)")
    table.add_column("metric", no_wrap=True)
    for name in names:
        table.add_column(Text(name), justify="right", no_wrap=True)
    table.add_column("F", justify="right")
    table.add_column("p", justify="right")
    table.add_column("best")
    for name, c in comparisons.items():
        table.add_row(metric_label(name),
                      *(format_mean_std(g.mean, g.std) for g in c.groups.values()),
                      format_number(c.f, digits=2), format_p(c.p), Text(c.best or "tie"))
    console.print(table)

    pairs = Table(title=f"Tukey HSD pairs (difference = mean A − mean B; "
                        f"{100 * (1 - alpha):g}% CI)")
    for column in ("metric", "A", "B", "difference", "CI", "p", "significant"):
        pairs.add_column(column, justify="left" if column in ("metric", "A", "B") else "right",
                         no_wrap=column in ("metric", "CI"))
    for name, c in comparisons.items():
        for pair in c.pairs:
            pairs.add_row(metric_label(name), Text(pair.a), Text(pair.b),
                          format_number(pair.difference),
                          Text(f"[{pair.low:.3f}, {pair.high:.3f}]"), format_p(pair.p),
                          "[bold green]yes[/]" if pair.significant else "no")
    console.print(pairs)
    better = [Text(f"{metric_label(name)}: {pair.better} is better than "
                   f"{pair.b if pair.better == pair.a else pair.a} (p {_p_text(pair.p)})")
              for name, c in comparisons.items() for pair in c.pairs if pair.better]
    console.print(Text("significantly better (lower is better where marked ↓):", style="bold")
                  if better else "no pair of runs differs significantly", highlight=False)
    for line in better:
        console.print(Text("  ").append(line))
    skipped = [m for m in (metric or METRICS) if m not in comparisons]
    if skipped:
        _print_notes([f"not compared (undefined on all but one fold of some run): "
                      f"{', '.join(skipped)}"])
    _print_notes([f"{name}: {note}" for name, c in comparisons.items() for note in c.notes])
    if written:
        console.print(f"wrote {escape(str(written['json']))} and {len(written) - 1} box plots",
                      highlight=False)
